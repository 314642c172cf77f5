"""What each ``gluon-finetune`` command does, once ``cli.py`` has read its settings.

Each command is ``command(settings, args, steps)``: the merged settings
(defaults < config < flags), argparse's namespace, and ``cli._Steps``, told
before each step which config keys feed it, so that an input error names
the config's line only when the config gave the value at fault.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional

from ..checks import InvalidValueError
from ..rules.resolution import rule_items

__all__ = ["COMMANDS"]

_MOMENTUM_OPTIMIZERS = ("sgd", "nag")
# what the fine_tune recipe decides itself (the trainable blocks, the schedules)
_NOT_WITH_RECIPE = ("unfreeze", "gradual", "gradual_unfreezing", "lr_scheduler")
_GRADUAL = {"schedule": ("gradual_unfreezing", "schedule"),
            "every": ("gradual_unfreezing", "every"),
            "restart": ("gradual_unfreezing", "restart")}


def _optimizer_params(settings: Dict[str, Any]) -> Dict[str, Any]:
    params = dict(settings.get("optimizer_params") or {})
    params["learning_rate"] = settings["learning_rate"]
    if settings.get("momentum") is not None:
        params["momentum"] = settings["momentum"]
    elif settings["optimizer"] in _MOMENTUM_OPTIMIZERS:
        params.setdefault("momentum", 0.9)
    if settings.get("wd") is not None:
        params["wd"] = settings["wd"]
    if settings.get("lr_scheduler") is not None:
        params["lr_scheduler"] = settings["lr_scheduler"]
    return params


def _check_rules(net, settings: Dict[str, Any]) -> None:
    """Resolve the rules on the network first, in the scope the trainer will use:
    resolution is pure and its only input here is the user's, so any error it raises is
    about the rules."""
    from ..rules.scope import rule_scope
    from ..structure.index import BlockIndex
    scope = rule_scope(list(net.collect_params().values()), BlockIndex(net),
                       granularity=net.finetune_granularity)
    try:
        scope.resolve(settings["layers"] or (), base_lr=settings["learning_rate"])
    except (ValueError, TypeError) as err:
        wrapped = InvalidValueError(str(err), argument="layers")
        wrapped.rule_keys = getattr(err, "rule_keys", None)  # which rules are at fault
        raise wrapped from err


def _build(settings: Dict[str, Any], steps, classes: Optional[int] = None,
           pretrained: bool = False, with_rules: bool = True):
    """(net, trainer) for the settings; ``with_rules=False``: the rules are checked on the
    network but left out of the trainer (the fine_tune recipe composes them itself)."""
    from ..models.zoo import get_model
    from ..trainer.layerwise import LayerwiseTrainer
    steps.now(name="model", classes="classes", unfreeze="unfreeze", pretrained="pretrained",
              root="root", granularity="granularity", bn="bn")
    net = get_model(settings["model"], classes=settings.get("classes", classes),
                    unfreeze=settings.get("unfreeze"), pretrained=pretrained,
                    root=settings.get("root"), granularity=settings["granularity"],
                    bn=settings["bn"])
    steps.now(layers="layers")
    if settings.get("no_weight_decay") and with_rules:
        from ..rules.presets import combine, no_weight_decay
        settings = dict(settings, layers=rule_items(combine(settings["layers"] or {},
                                                             no_weight_decay(net))))
    _check_rules(net, settings)
    steps.now(optimizer_params="optimizer_params", layers="layers")
    trainer = LayerwiseTrainer(net, settings["optimizer"], _optimizer_params(settings),
                               layers=settings["layers"] if with_rules else None,
                               bn=settings["bn"])
    if settings.get("unfreeze") is not None:  # a limit on top of the rules: "*" cannot thaw
        steps.now(unfreeze="unfreeze")
        trainer.set_trainable_blocks(settings["unfreeze"])
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

def _explain(settings: Dict[str, Any], args, steps) -> None:
    _, trainer = _build(settings, steps)
    print(trainer.explain())


def _plot(settings: Dict[str, Any], args, steps) -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    from ..reporting.plots import plot_schedules
    _check_writable(args.out, "--out")
    kind = os.path.splitext(args.out)[1][1:].lower()
    if kind and kind not in FigureCanvasBase.get_supported_filetypes():
        raise InvalidValueError(f"--out {args.out!r}: matplotlib cannot write .{kind} files; "
                                f"use .png (or .pdf, .svg)", argument="out")
    _, trainer = _build(settings, steps)
    steps.now()
    print(f"wrote {plot_schedules(trainer, args.steps, args.out)}")


def _unfreezer(trainer, settings: Dict[str, Any]):
    from ..recipes.unfreezing import GradualUnfreezing
    spec = dict(settings.get("gradual_unfreezing") or {})
    if settings.get("gradual") is not None:
        spec = {"every": settings["gradual"], "restart": spec.get("restart")}
    if not spec:
        return None
    return GradualUnfreezing(trainer, **spec).on_epoch


def _save(net, trainer, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    net.save_parameters(path)
    trainer.save_states(path + ".states")


def _check_recipe(settings: Dict[str, Any], steps) -> None:
    """``freeze_epochs`` needs the recipe; the recipe decides what some settings would."""
    steps.now(recipe="recipe", freeze_epochs="freeze_epochs",
              **{key: key for key in _NOT_WITH_RECIPE if key != "gradual"},
              gradual="gradual_unfreezing")
    if settings.get("recipe") is None:
        if settings.get("freeze_epochs") is not None:
            raise InvalidValueError("freeze_epochs is for recipe fine_tune: give --recipe "
                                    "fine_tune (or 'recipe: fine_tune' in the config)",
                                    argument="freeze_epochs")
        return
    for key in _NOT_WITH_RECIPE:
        if settings.get(key) is not None:
            raise InvalidValueError(f"{key} does not combine with recipe fine_tune: the recipe "
                                    f"trains the head, then every block, each on its own "
                                    f"one-cycle schedule", argument=key)


def _prepare(settings: Dict[str, Any], args, steps, with_rules: bool = True):
    """(data, net, trainer): the image folder's loaders and the model for the settings."""
    import mxnet as mx
    import numpy as np

    from ..models.input_size import check_input_size
    from ..recipes.data import image_folders
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    steps.now(image_size="image_size", batch_size="batch_size")
    data = image_folders(args.data, settings["image_size"], settings["batch_size"])
    steps.now(classes="classes")
    if settings.get("classes") not in (None, len(data.classes)):
        raise InvalidValueError(f"classes is {settings['classes']}, but {args.data!r} has "
                                f"{len(data.classes)} class folders: {data.classes}",
                                argument="classes")
    net, trainer = _build(settings, steps, classes=len(data.classes),
                          pretrained=settings.get("pretrained", True), with_rules=with_rules)
    steps.now(image_size="image_size")
    check_input_size(net, settings["image_size"], settings["model"])
    return data, net, trainer


def _fit(settings: Dict[str, Any], args, steps):
    """Train as the settings say; fit's per-epoch history."""
    recipe = settings.get("recipe") == "fine_tune"
    data, net, trainer = _prepare(settings, args, steps, with_rules=not recipe)
    if recipe:
        from ..recipes.fine_tuning import fine_tune
        steps.now(layers="layers", freeze_epochs="freeze_epochs")
        freeze = settings.get("freeze_epochs")
        history = fine_tune(net, data.train, settings["epochs"], base_lr=settings["learning_rate"],
                            freeze_epochs=1 if freeze is None else freeze, val_data=data.val,
                            layers=settings["layers"], trainer=trainer,
                            no_decay=settings.get("no_weight_decay") is not False,
                            progress=not args.no_progress)
        return net, trainer, history
    from ..recipes.training import fit
    steps.now(**_GRADUAL)
    on_epoch = _unfreezer(trainer, settings)
    steps.now()
    return net, trainer, fit(net, trainer, data.train, settings["epochs"], data.val,
                             on_epoch=on_epoch, progress=not args.no_progress)


def _train(settings: Dict[str, Any], args, steps) -> None:
    _check_recipe(settings, steps)
    if args.save:
        _check_writable(args.save, "--save")
    net, trainer, history = _fit(settings, args, steps)
    if args.save:
        _save(net, trainer, args.save)
    last = history[-1]
    val = f"  val_acc {last['val_acc']:.4f}" if "val_acc" in last else ""
    saved = f"  saved {args.save}" if args.save else ""
    print(f"final: epochs {len(history)}  train_loss {last['train_loss']:.4f}  "
          f"train_acc {last['train_acc']:.4f}{val}  seconds {last['seconds']:.1f}{saved}")


def _finish_init(net, loader) -> None:
    """Give deferred parameters their shapes with one recorded forward pass (an inference
    pass would leave convolution weights in oneDNN's layout; nothing updates here)."""
    import mxnet as mx
    if any(p._data is None for p in net.collect_params().values()):
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


def _lr_find(settings: Dict[str, Any], args, steps) -> None:
    """The range test on the training images; with recipe fine_tune, of its first phase
    (the head alone), so that the suggestion is a base rate for the recipe."""
    from ..recipes.lr_finder import lr_find
    _check_writable(args.out, "--out")
    if args.end_lr <= args.start_lr:
        raise InvalidValueError(f"--end-lr ({args.end_lr:g}) must be greater than --start-lr "
                                f"({args.start_lr:g})", argument="end_lr")
    data, net, trainer = _prepare(settings, args, steps)
    head_only = settings.get("recipe") == "fine_tune" and settings.get("unfreeze") is None
    if head_only:
        trainer.set_trainable_blocks(1)
    steps.now()
    _finish_init(net, data.train)
    result = lr_find(net, trainer, data.train, start_lr=args.start_lr, end_lr=args.end_lr,
                     num_iter=args.num_iter, progress=not args.no_progress)
    print(_summary(result, " (the head alone: recipe fine_tune's first phase)"
                   if head_only else ""))
    print(f"wrote {result.plot(args.out)}")


COMMANDS = {"train": _train, "lr-find": _lr_find, "explain": _explain, "plot": _plot}
