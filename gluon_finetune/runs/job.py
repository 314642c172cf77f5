"""``train_run``: the training loop of a run folder, with exact resume, EMA and early stopping.

Every epoch starts with ``data.start_epoch(epoch)`` (order and augmentation
from the seed and the epoch), then the epoch hook (gradual unfreezing,
``fine_tune``'s phases), then one pass of ``recipes.train_epoch``; the
validation pass uses the EMA weights where there are some. With a run folder
each epoch ends with its checkpoint (``folder.py``): ``last.params`` and
``last.states`` (the network and the trainer after the epoch), ``ema.params``
(the averages), ``best.params`` (the weights validated best so far, EMA ones
with EMA; every epoch without a validation split) and the record last.

A resumed run loads ``last.params``, ``last.states`` and ``ema.params`` (or
``start.params`` before the first epoch ended) into a network and trainer
built as the first time, and repeats nothing but the unfinished epoch: its
weights end bit for bit as an uninterrupted run's.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from functools import partial
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon.parameter import DeferredInitializationError
from tqdm.auto import tqdm

from ..checks import InvalidTypeError, InvalidValueError, check_bool, check_int, check_real
from ..recipes.data import EpochData
from ..recipes.ema import ModelEMA
from ..recipes.training import check_net_and_trainer, show_phase, train_epoch, validate
from ..structure.arrays import save_parameters
from ..trainer import LayerwiseTrainer
from .folder import RunFolder
from .workers import Workers

__all__ = ["RunResult", "train_run", "data_record"]


class RunResult(NamedTuple):
    """What ``train_run`` did: the whole history (resumed epochs included), the best epoch
    (by validation accuracy; the last without validation), whether patience ran out."""

    history: List[Dict[str, Any]]
    best_epoch: Optional[int]
    stopped_early: bool
    folder: Optional[RunFolder]


def data_record(data: EpochData) -> Dict[str, Any]:
    """The data a run was trained on: its folder, image counts and a digest of every image's
    relative path, label and size (a resumed run must read the same)."""
    digest = hashlib.sha256(json.dumps(data.items, sort_keys=True).encode()).hexdigest()
    return {"root": os.path.abspath(data.root), "train_images": len(data.items["train"]),
            "val_images": len(data.items.get("val", ())), "sha256": digest}


def _record(data: EpochData, epochs: int, model, settings, ema, patience) -> Dict[str, Any]:
    record = {"model": model, "classes": data.classes,
              "preprocessing": data.preprocessing.to_dict(), "augment": data.augment,
              "seed": data.seed, "epochs": epochs, "ema": ema, "patience": patience,
              "workers": data.workers, "data": data_record(data), "settings": settings or {},
              "history": [], "best": None, "stopped_early": False, "finished": False}
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidValueError(f"settings must be plain data (numbers, strings, lists, "
                                f"mappings) to go into run.json: {err}",
                                argument="settings") from None
    return record


def _check_same(folder: RunFolder, fresh: Dict[str, Any]) -> None:
    """A resumed run must have the record's data, classes, preprocessing and settings."""
    saved = folder.record
    trained_by = saved.get("workers", 1)  # records before Horovod runs: one process
    if trained_by != fresh["workers"]:  # each worker's shard depends on it
        raise InvalidValueError(
            f"run {folder.path!r} was trained by {trained_by} worker(s) and would resume "
            f"with {fresh['workers']}: each worker's share of the images depends on their "
            f"number, so resume under horovodrun -np {trained_by} (or without Horovod for 1)",
            argument="run")
    for key, what in (("classes", "classes"), ("data", "data"), ("preprocessing",
                      "preprocessing"), ("augment", "augmentation"), ("seed", "seed"),
                      ("epochs", "epochs"), ("ema", "EMA decay"), ("patience", "patience")):
        theirs, ours = saved.get(key), fresh[key]
        if key == "data":  # the folder may have moved: the images must be the same
            theirs = {k: v for k, v in (theirs or {}).items() if k != "root"}
            ours = {k: v for k, v in ours.items() if k != "root"}
        if theirs != ours:
            raise InvalidValueError(
                f"run {folder.path!r} does not match what it would resume with: its {what} "
                f"{_shown(theirs)}, now {_shown(ours)}; resume with the run's own data and "
                f"settings, or start a new run with another --out", argument="run")


def _shown(value: Any) -> str:
    if isinstance(value, dict) and "sha256" in value:
        return (f"{value['train_images']} training and {value['val_images']} validation "
                f"images (digest {value['sha256'][:12]})")
    return repr(value)


def _checked(net, trainer, data, epochs, ema, patience, on_epoch, progress) -> int:
    check_net_and_trainer(net, trainer)
    if not isinstance(data, EpochData):
        raise InvalidTypeError(f"data must be an EpochData (recipes.data.epoch_data), got "
                               f"{type(data).__name__}", argument="data")
    if ema is not None and not 0 < check_real("ema", ema) < 1:
        raise InvalidValueError(f"ema must be a decay in (0, 1), got {ema!r}", argument="ema")
    if patience is not None:
        check_int("patience", patience, minimum=1)
        if data.val is None:
            raise InvalidValueError("patience (early stopping) needs a validation split: "
                                    "DATA/train/<class>/... and DATA/val/<class>/...",
                                    argument="patience")
    if on_epoch is not None and not callable(on_epoch):
        raise InvalidTypeError(f"on_epoch must be callable, got {on_epoch!r}",
                               argument="on_epoch")
    check_bool("progress", progress)
    return check_int("epochs", epochs, minimum=1)


def _open(out, resume: bool, record: Dict[str, Any], net, workers: Workers) -> RunFolder:
    """The run folder: rank 0's on disk; the other workers' in memory only (never
    written), read after rank 0 has repaired what an interrupted epoch left."""
    if not resume:
        RunFolder.check_new(out)  # every worker the same answer, before rank 0 makes it
        workers.barrier()
        if not workers.writer:
            return RunFolder(out, record)
        return RunFolder.create(out, record, {"start.params": partial(save_parameters, net)})
    folder = RunFolder.open(out, repair=True) if workers.writer else None
    workers.barrier()
    folder = folder or RunFolder.open(out)
    _check_same(folder, record)
    return folder


def _initialize(net, data: EpochData, ctx) -> None:
    """Give deferred parameters their shapes with one recorded forward pass of zeros (an
    inference pass would leave convolution weights in oneDNN's layout; nothing updates)."""
    try:
        for param in net.collect_params().values():
            param.data()
        return
    except DeferredInitializationError:
        pass
    size = data.preprocessing.image_size
    with autograd.record():
        net(nd.zeros((1, 3, size, size), ctx=ctx or mx.cpu()))
    nd.waitall()


def _restore(folder: RunFolder, net, trainer) -> None:
    """The network and trainer as the record's last epoch left them."""
    if not folder.history:
        net.load_parameters(folder.file("start.params"))
        return
    net.load_parameters(folder.file("last.params"))
    trainer.load_states(folder.file("last.states"))


def _plain(value: Any) -> Any:
    """A history value as JSON takes it (a diverged loss is null)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class _Loop:
    """One run's state across epochs: the history, the best epoch, the averages, the folder."""

    def __init__(self, net, trainer, data, folder, averager, patience, loss, ctx, desc,
                 workers: Workers):
        self.net, self.trainer, self.data, self.folder = net, trainer, data, folder
        self.desc, self.workers = desc, workers
        self.averager, self.patience, self.loss, self.ctx = averager, patience, loss, ctx
        self.history: List[Dict[str, Any]] = list(folder.history) if folder else []
        self.best = _best(self.history)
        self.stopped = bool(folder and folder.record.get("stopped_early"))

    def epoch(self, epoch: int, on_epoch: Optional[Callable], bar) -> bool:
        """Train and validate ``epoch``, save its checkpoint; whether to stop early."""
        start = time.perf_counter()
        self.data.start_epoch(epoch)
        phase = on_epoch(epoch) if on_epoch is not None else None
        show_phase(bar, self.desc, phase)
        step = (lambda trainer: self.averager.update()) if self.averager else None
        trained = train_epoch(self.net, self.trainer, self.data.train, self.loss, self.ctx,
                              step, bar)
        result = {"epoch": epoch, **self.workers.average(trained, f"train.{epoch}")}
        if isinstance(phase, str):
            result["phase"] = phase
        with self.averager.average() if self.averager else contextlib.nullcontext():
            if self.data.val is not None and self.workers.writer:  # rank 0's network decides
                result.update(validate(self.net, self.data.val, self.loss, self.ctx))
                bar.set_postfix(val_acc=f"{result['val_acc']:.3f}", refresh=False)
            result = self.workers.share(result, f"epoch.{epoch}")
            improved = self.best is None or "val_acc" not in result or \
                result["val_acc"] > self.history[self.best]["val_acc"]
            if improved and self.averager is not None and self.folder is not None \
                    and self.workers.writer:
                save_parameters(self.net, self.folder.staged(epoch, "best.params"))
        result["seconds"] = time.perf_counter() - start
        self.history.append({k: _plain(v) for k, v in result.items()})
        self.best = epoch if improved else self.best
        self.stopped = stop = self.patience is not None and epoch - self.best >= self.patience
        if self.folder is not None:
            self._commit(epoch, stop)
        return stop

    def _commit(self, epoch: int, stop: bool) -> None:
        best = self.history[self.best]
        record = self.folder.record
        record.update(history=self.history, stopped_early=stop,
                      finished=stop or epoch + 1 == record["epochs"],
                      best={"epoch": self.best, **{k: best[k] for k in ("val_acc", "val_loss")
                                                   if k in best}})
        if not self.workers.writer:  # rank 0 writes; the trainer's save waits for every rank
            if isinstance(self.trainer, LayerwiseTrainer):
                self.trainer.save_states(self.folder.staged(epoch, "last.states"))
            return
        writers = {"last.params": partial(save_parameters, self.net),
                   "last.states": self.trainer.save_states}
        if self.best == epoch and self.averager is None:  # the same weights: the same file
            writers["best.params"] = lambda path: _same_file(self.folder.staged(
                epoch, "last.params"), path)
        if self.averager is not None:
            writers["ema.params"] = self.averager.save
        self.folder.commit(epoch, writers)


def _same_file(source: str, path: str) -> None:
    """``path`` is ``source`` too: a hard link (files are replaced, never changed in
    place), or a copy where links cannot be made."""
    try:
        os.link(source, path)
    except OSError:
        shutil.copyfile(source, path)


def _best(history: List[Dict[str, Any]]) -> Optional[int]:
    """The best epoch of a history: the first with the highest val_acc (else the last)."""
    if not history:
        return None
    if "val_acc" not in history[-1]:
        return history[-1]["epoch"]
    best = None
    for entry in history:
        if best is None or entry["val_acc"] > history[best]["val_acc"]:
            best = entry["epoch"]
    return best


def train_run(net: gluon.Block, trainer: gluon.Trainer, data: EpochData, epochs: int,
              out: Optional[str] = None, *, resume: bool = False, ema: Optional[float] = None,
              patience: Optional[int] = None, on_epoch: Optional[Callable[[int], Any]] = None,
              model: Optional[str] = None, settings: Optional[Dict[str, Any]] = None,
              loss: Optional[gluon.loss.Loss] = None, ctx=None, progress: bool = True,
              desc: str = "train") -> RunResult:
    """Train ``net`` for ``epochs`` epochs into the run folder ``out``, or resume it there.

    Parameters
    ----------
    net, trainer
        The network and its trainer (``LayerwiseTrainer`` or ``gluon.Trainer``).
        To resume, build both exactly as for the first run (same model, rules,
        seed): ``train_run`` loads the weights and the trainer's states.
    data : EpochData
        From ``recipes.epoch_data`` (seeded order and augmentation). Under
        Horovod (``trainer`` built with ``kvstore="horovod"``, one process per
        worker) each worker trains on its share of every epoch
        (``runs.workers.Workers.of(trainer).shard(data)``: do it yourself first
        if a schedule counts ``len(data.train)``), rank 0 alone writes ``out``
        and shows progress, and rank 0's validation decides the best epoch and
        early stopping on every worker.
    epochs : int
        Epochs in all (a resumed run keeps its own number).
    out : str, optional
        The run folder (``RunFolder``: after each epoch ``last.params``,
        ``last.states``, ``best.params``, ``ema.params`` with EMA, and
        ``run.json``); None trains without one.
    resume : bool
        Continue the run in ``out`` after its last finished epoch. Its data
        (the same images), classes, preprocessing, seed, epochs, ``ema`` and
        ``patience`` must be the record's; a finished run returns at once.
    ema : float, optional
        Keep an exponential moving average of the trainable weights with this
        decay (``recipes.ModelEMA``); validation and ``best.params`` use it.
    patience : int, optional
        Stop when validation accuracy has not improved for this many epochs.
    on_epoch : callable, optional
        Called with each epoch number before it trains (``GradualUnfreezing``'s
        ``on_epoch``, ``FineTuneSchedule.on_epoch``; a string it returns is
        recorded as the epoch's ``phase``).
    model, settings
        Recorded in ``run.json``: the model's zoo name (to rebuild the network
        for evaluate, predict and export) and the settings that built the run
        (plain data).
    loss, ctx, progress, desc
        Loss (softmax cross-entropy), context (CPU), tqdm progress bar and its
        label.

    Returns
    -------
    RunResult
        ``history`` (one dict an epoch, resumed epochs included: ``epoch``,
        ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``seconds``,
        ``phase``), ``best_epoch`` (by validation accuracy; the last without
        validation), ``stopped_early`` and ``folder`` (None without ``out``).

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.Block``, ``trainer`` not a
        ``gluon.Trainer``, ``data`` not an ``EpochData``, ``on_epoch`` not
        callable, ``resume`` or ``progress`` not a bool, or ``out`` not a
        folder name.
    InvalidValueError
        If ``epochs`` < 1, ``ema`` is not in (0, 1), ``patience`` < 1 or given
        without a validation split, ``settings`` is not plain data, ``resume``
        has no ``out``; a new run's ``out`` is a file or holds a run already; a
        resumed run's record differs (data, classes, preprocessing, seed,
        epochs, ``ema``, ``patience``) or is no run record.
    MissingFileError
        If ``resume`` and ``out`` does not exist. All of these are raised
        before anything trains.

    Examples
    --------
    >>> from gluon_finetune import epoch_data
    >>> data = epoch_data(data_dir, image_size=16, batch_size=4, seed=0)
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> result = train_run(net, trainer, data, 2, "run", ema=0.9, progress=False)
    >>> [sorted(entry) for entry in result.history][-1]
    ['epoch', 'seconds', 'train_acc', 'train_loss', 'val_acc', 'val_loss']
    >>> sorted(os.listdir("run"))
    ['best.params', 'ema.params', 'last.params', 'last.states', 'run.json', 'start.params']
    >>> again = train_run(net, trainer, data, 2, "run", resume=True, ema=0.9,
    ...                   progress=False)     # finished: returns at once
    >>> again.history == result.history, again.best_epoch == result.best_epoch
    (True, True)
    """
    epochs = _checked(net, trainer, data, epochs, ema, patience, on_epoch, progress)
    check_bool("resume", resume)
    if resume and out is None:
        raise InvalidValueError("resume needs the run folder: give out=", argument="out")
    workers = Workers.of(trainer)
    _initialize(net, data, ctx)
    workers.shard(data)
    folder = None if out is None else _open(out, resume, _record(
        data, epochs, model, settings, ema, patience), net, workers)
    if folder is not None and resume:
        _restore(folder, net, trainer)
    averager = None if ema is None else ModelEMA(net, ema)
    if averager is not None and folder is not None and folder.history:
        averager.load(folder.file("ema.params"))
    loop = _Loop(net, trainer, data, folder, averager, patience, loss, ctx, desc, workers)
    done = folder is not None and folder.record.get("finished")
    first = len(loop.history)
    with tqdm(total=0 if done else (epochs - first) * len(data.train), desc=desc,
              disable=not (progress and workers.writer), leave=False,
              dynamic_ncols=True) as bar:
        for epoch in range(first, 0 if done else epochs):
            if loop.epoch(epoch, on_epoch, bar):
                break
    return RunResult(loop.history, loop.best, loop.stopped, folder)
