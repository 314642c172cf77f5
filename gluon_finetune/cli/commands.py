"""What each ``gluon-finetune`` command does, once ``main.py`` has merged its settings.

Each command is ``command(settings)``, with the ``schema.Settings`` of the
run (defaults < config < flags, checked together). A call that takes
settings runs inside ``feeding(argument="setting", ...)``: an input error it
raises about one of those arguments is then about that setting, and
``main`` names the config's line for it when the config gave the value.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

from .._compat import is_initialized
from ..checks import require
from ..errors import FinetuneError, InvalidValueError, MissingFileError
from ..rules.resolution import rule_items
from .run_commands import RUN_COMMANDS
from .schema import Settings, refuse

__all__ = ["COMMANDS", "feeding"]


@contextmanager
def feeding(**arguments: str) -> Iterator[None]:
    """Inside, an input error about argument ``A`` is about the setting ``arguments[A]``
    (a key path such as ``"gradual_unfreezing.schedule"``): ``err.setting``."""
    try:
        yield
    except FinetuneError as err:
        if getattr(err, "setting", None) is None and err.argument in arguments:
            err.setting = arguments[err.argument]
        raise


def _optimizer_params(settings: Settings) -> Dict[str, Any]:
    """optimizer_params, with --momentum/--wd on top, the momentum default, the rate and
    the trainer's schedule."""
    from ..recipes.fine_tuning import with_default_momentum
    params = dict(settings.optimizer_params or {})
    for name in ("momentum", "wd", "lr_scheduler"):
        if getattr(settings, name) is not None:
            params[name] = getattr(settings, name)
    params = with_default_momentum(settings.optimizer, params)
    params["learning_rate"] = settings.learning_rate
    return params


def _check_rules(net, layers, base_lr: float) -> None:
    """Resolve the rules on the network before anything else (the fine_tune recipe gives
    them to its trainer only later), in the scope the trainer will use."""
    from ..rules.scope import rule_scope
    from ..structure.index import BlockIndex
    scope = rule_scope(list(net.collect_params().values()), BlockIndex(net),
                       granularity=net.finetune_granularity)
    scope.resolve(layers or (), base_lr=base_lr)


def _vocabulary(settings: Settings, kind):
    """``--vocab FILE`` read as ``kind`` (GluonNLP's BERTVocab or Vocab), or a vocabulary of
    ``--vocab-size`` tokens: the model's special tokens and placeholders."""
    if settings.vocab is None:
        special = len(kind())
        if settings.vocab_size < special:
            raise refuse("vocab_size", f"vocab_size must be at least {special} (the "
                         f"special tokens of {settings.model}), got {settings.vocab_size}")
        return kind({f"<token{i}>": 1 for i in range(settings.vocab_size - special)})
    try:
        with open(settings.vocab, encoding="utf-8") as f:
            return kind.from_json(f.read())
    except OSError as err:
        raise MissingFileError(f"--vocab {settings.vocab!r}: cannot read it: {err.strerror}",
                               argument="vocab") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # the file is not one
        raise refuse("vocab", f"--vocab {settings.vocab!r} is not a GluonNLP vocabulary "
                     f"(JSON from vocab.to_json()): {type(err).__name__}: {err}") from None


def _model_arguments(settings: Settings) -> Dict[str, Any]:
    """What ``get_model`` needs beyond the zoo's arguments: a GluonNLP model's vocabulary
    (nothing for the vision models); checked before the model is built."""
    from ..models.nlp import NLP_MODELS, is_nlp_model
    lora = {} if settings.lora is None else {
        "lora": settings.lora, "lora_targets": _targets(settings.lora_targets),
        "lora_alpha": 16.0 if settings.lora_alpha is None else settings.lora_alpha}
    if not is_nlp_model(settings.model):
        given = [name for name in ("vocab", "vocab_size") if getattr(settings, name) is not None]
        if given:  # it would do nothing: say so
            flag = "--" + given[0].replace("_", "-")
            raise refuse(given[0], f"{flag} is for GluonNLP models (bert_*, roberta_*); "
                         f"{settings.model} has no vocabulary: leave it out")
        return lora
    name = settings.model.lower()
    if settings.classes is None:
        raise refuse("classes", f"{name} is an encoder without a head: give --classes N")
    if settings.vocab is None and settings.vocab_size is None:
        raise refuse("vocab", f"{name} needs its vocabulary: give --vocab FILE (GluonNLP's, "
                     f"as JSON: vocab.to_json()) or --vocab-size N (placeholder tokens: "
                     f"enough to preview the rules)")
    gluonnlp = require("gluonnlp", needed_for=f"the vocabulary of {name}")
    kind = gluonnlp.vocab.BERTVocab if NLP_MODELS[name] == "bert" else gluonnlp.vocab.Vocab
    return {"vocab": _vocabulary(settings, kind), **lora}


def _targets(keys):
    """``--lora-targets`` as ``add_lora`` takes it: None, one key, or a tuple of keys."""
    if not keys:
        return None
    return keys[0] if len(keys) == 1 else tuple(keys)


def _build(settings: Settings, classes: Optional[int] = None, pretrained: bool = False,
           with_rules: bool = True):
    """(net, trainer) for the settings; ``with_rules=False``: the rules are checked on the
    network but left out of the trainer (the fine_tune recipe composes them itself)."""
    from ..models.zoo import get_model
    from ..trainer.layerwise import LayerwiseTrainer
    extra = _model_arguments(settings)
    with feeding(name="model", classes="classes", unfreeze="unfreeze", pretrained="pretrained",
                 root="root", granularity="granularity", bn="bn", lora="lora",
                 lora_alpha="lora_alpha", targets="lora_targets", train="unfreeze"):
        net = get_model(settings.model, classes=classes if settings.classes is None else
                        settings.classes, unfreeze=settings.unfreeze, pretrained=pretrained,
                        root=settings.root, granularity=settings.granularity, bn=settings.bn,
                        **extra)
    layers = settings.layers
    if settings.no_weight_decay and with_rules:
        from ..rules.presets import combine, no_weight_decay
        layers = rule_items(combine(layers or {}, no_weight_decay(net)))
    with feeding(layers="layers", optimizer_params="optimizer_params"):
        _check_rules(net, layers, settings.learning_rate)
        trainer = LayerwiseTrainer(net, settings.optimizer, _optimizer_params(settings),
                                   layers=layers if with_rules else None, bn=settings.bn,
                                   kvstore=settings.kvstore)
    # a limit on top of the rules, so that "*" cannot thaw; with LoRA, --unfreeze is what
    # trains besides the adapters, and the lock already keeps the rest from any rule
    if settings.unfreeze is not None and settings.lora is None:
        with feeding(unfreeze="unfreeze"):
            trainer.set_trainable_blocks(settings.unfreeze)
    return net, trainer


def _check_writable(path: str, flag: str) -> None:
    """Refuse an output file that cannot be written, before the work that fills it."""
    if os.path.isdir(path):
        raise InvalidValueError(f"{flag} {path!r} is a folder; give a file name", argument=flag)
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # missing folders are made when writing
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise InvalidValueError(f"{flag} {path!r} cannot be written: {folder!r} is a file, "
                                f"not a folder", argument=flag)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidValueError(f"{flag} {path!r} cannot be written: no permission to write "
                                f"in {folder!r}", argument=flag)


# ----------------------------------------------------------------- commands

def _explain(settings: Settings) -> None:
    _, trainer = _build(settings)
    print(trainer.explain())


def _image_out(settings: Settings) -> str:
    """Where the command's image goes (``.png`` added to a name without extension),
    checked before any work: a format matplotlib can write, a file that can be."""
    from ..reporting.plots import image_path
    _check_writable(settings.out, "--out")  # a folder is refused as given, not as folder.png
    path = image_path(settings.out, "--out")
    if path != settings.out:
        _check_writable(path, "--out")
    return path


def _plot(settings: Settings) -> None:
    from ..reporting.plots import plot_schedules
    out = _image_out(settings)
    _, trainer = _build(settings)
    print(f"wrote {plot_schedules(trainer, settings.steps, out)}")


def _unfreezer(trainer, settings: Settings):
    from ..recipes.unfreezing import GradualUnfreezing
    spec = dict(settings.gradual_unfreezing or {})
    if settings.gradual is not None:
        spec = {"every": settings.gradual, "restart": spec.get("restart")}
    if not spec:
        return None
    with feeding(schedule="gradual_unfreezing.schedule", every="gradual_unfreezing.every",
                 restart="gradual_unfreezing.restart"):
        return GradualUnfreezing(trainer, **spec).on_epoch


def _save(net, trainer, path: str, writer: bool) -> None:
    """``--save``: rank 0 writes (every rank calls ``save_states``: it waits for all)."""
    if writer:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        net.save_parameters(path)
    trainer.save_states(path + ".states")


def _prepare(settings: Settings, with_rules: bool = True):
    """(data, net, trainer): the image folder's seeded loaders and the model."""
    import mxnet as mx
    import numpy as np

    from ..models.input_size import check_input_size
    from ..recipes.data import epoch_data
    mx.random.seed(settings.seed)
    np.random.seed(settings.seed)
    with feeding(image_size="image_size", batch_size="batch_size", root="data",
                 augment="augment"):
        data = epoch_data(settings.data, settings.image_size, settings.batch_size,
                          augment=settings.augment, seed=settings.seed)
    if settings.classes not in (None, len(data.classes)):
        raise refuse("classes", f"classes is {settings.classes}, but {settings.data!r} has "
                     f"{len(data.classes)} class folders: {data.classes}")
    net, trainer = _build(settings, classes=len(data.classes), pretrained=settings.pretrained,
                          with_rules=with_rules)
    from ..runs.workers import Workers
    Workers.of(trainer).shard(data)  # before fine_tune plans its schedules by batch count
    with feeding(image_size="image_size"):
        check_input_size(net, settings.image_size, settings.model)
    return data, net, trainer


def _epoch_hook(settings: Settings, net, trainer, data):
    """(epochs in all, the hook that runs before each): fine_tune's phases, gradual
    unfreezing, or nothing."""
    if settings.recipe != "fine_tune":
        return settings.epochs, _unfreezer(trainer, settings)
    from ..recipes.fine_tuning import FineTuneSchedule, plan_phases
    with feeding(layers="layers", freeze_epochs="freeze_epochs"):
        schedule = FineTuneSchedule(trainer, plan_phases(
            net, len(data.train), settings.epochs, settings.freeze_epochs, trainer=trainer,
            base_lr=settings.learning_rate, layers=settings.layers,
            no_decay=settings.no_weight_decay is not False))
    return schedule.epochs, schedule.on_epoch


def _fit(settings: Settings):
    """Train as the settings say (into the run folder ``--out``, or resuming ``--resume``);
    the network, the trainer and ``runs.train_run``'s result."""
    from ..runs import train_run
    data, net, trainer = _prepare(settings, with_rules=settings.recipe != "fine_tune")
    epochs, on_epoch = _epoch_hook(settings, net, trainer, data)
    with feeding(out="out", run="resume", ema="ema", patience="patience"):
        result = train_run(net, trainer, data, epochs, settings.out or settings.resume,
                           resume=settings.resume is not None, ema=settings.ema,
                           patience=settings.patience, on_epoch=on_epoch, model=settings.model,
                           settings=settings.given, progress=not settings.no_progress,
                           desc=settings.recipe or "train")
    return net, trainer, result


# what horovodrun (Gloo), Open MPI's mpirun and PMI launchers tell each process
_LAUNCHER_SIZES = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _check_launcher(settings: Settings) -> None:
    """Under horovodrun every process runs this command: without ``--kvstore horovod``
    each would train on every image alone and write the same files."""
    sizes = [os.environ.get(name, "1") for name in _LAUNCHER_SIZES]
    workers = max(int(size) if size.isdigit() else 1 for size in sizes)
    if workers > 1 and settings.kvstore != "horovod":
        raise refuse("kvstore", f"this is one of {workers} processes started by horovodrun "
                     f"(or mpirun), but kvstore is {settings.kvstore!r}: each would train on "
                     f"every image alone and write the same files; give --kvstore horovod")


def _train(settings: Settings) -> None:
    from ..runs import RunFolder
    from ..runs.workers import Workers
    _check_launcher(settings)
    if settings.save:
        _check_writable(settings.save, "--save")
    if settings.out is not None:
        RunFolder.check_new(settings.out)
    net, trainer, result = _fit(settings)
    writer = Workers.of(trainer).writer  # under horovodrun: rank 0 writes and prints
    if settings.save:
        _save(net, trainer, settings.save, writer)
    if writer:
        _report(settings, result)


def _report(settings: Settings, result) -> None:
    """train's last lines: the final epoch's numbers, the run folder's best epoch."""
    last = result.history[-1]
    val = f"  val_acc {last['val_acc']:.4f}" if "val_acc" in last else ""
    saved = f"  saved {settings.save}" if settings.save else ""
    stopped = "  (stopped early: patience)" if result.stopped_early else ""
    seconds = sum(e["seconds"] for e in result.history)
    print(f"final: epochs {len(result.history)}  train_loss {last['train_loss']:.4f}  "
          f"train_acc {last['train_acc']:.4f}{val}  seconds {seconds:.1f}{saved}{stopped}")
    if result.folder is not None:
        best = result.folder.record["best"]
        score = f" (val_acc {best['val_acc']:.4f})" if "val_acc" in best else ""
        print(f"run folder {result.folder.path}: best.params from epoch {best['epoch']}"
              f"{score}")


def _finish_init(net, loader) -> None:
    """Give deferred parameters their shapes with one recorded forward pass (an inference
    pass would leave convolution weights in oneDNN's layout; nothing updates here)."""
    import mxnet as mx
    if any(not is_initialized(p) for p in net.collect_params().values()):
        with mx.autograd.record():
            net(next(iter(loader))[0])
        mx.nd.waitall()


def _summary(result, what: str) -> str:
    """lr-find's report: what it swept, the suggestion."""
    finite = [k for k, loss in enumerate(result.losses) if math.isfinite(loss)]
    stop = " (stopped early: the loss diverged)" if result.diverged else ""
    lowest = min(finite, key=lambda k: result.losses[k]) if finite else None
    low = f"; lowest smoothed loss {result.losses[lowest]:.4f} at {result.lrs[lowest]:.3g}" \
        if lowest is not None else "; no finite loss"
    if result.suggestion is None:
        advice = ("suggested learning rate: none (the smoothed loss never fell: try a "
                  "larger --end-lr or more --num-iter)")
    else:
        advice = (f"suggested learning rate: {result.suggestion:.3g} (steepest descent of "
                  f"the smoothed loss)")
    return (f"lr-find{what}: {len(result.lrs)} rates from {result.lrs[0]:.3g} to "
            f"{result.lrs[-1]:.3g}{stop}{low}\n{advice}")


def _lr_find(settings: Settings) -> None:
    """The range test on the training images; with recipe fine_tune, of its first phase
    (the head alone), so that the suggestion is a base rate for the recipe."""
    from ..recipes.lr_finder import lr_find
    out = _image_out(settings)
    data, net, trainer = _prepare(settings)
    head_only = settings.recipe == "fine_tune" and settings.unfreeze is None
    if head_only:
        trainer.set_trainable_blocks(1)
    _finish_init(net, data.train)
    result = lr_find(net, trainer, data.train, start_lr=settings.start_lr,
                     end_lr=settings.end_lr, num_iter=settings.num_iter,
                     progress=not settings.no_progress)
    print(_summary(result, " (the head alone: recipe fine_tune's first phase)"
                   if head_only else ""))
    print(f"wrote {result.plot(out)}")


COMMANDS = {"train": _train, "lr-find": _lr_find, "explain": _explain, "plot": _plot,
            **RUN_COMMANDS}
