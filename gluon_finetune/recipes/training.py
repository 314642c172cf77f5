"""A plain Gluon training loop with progress bars, shared by the demo, the CLI and examples.

It is the loop users already write (record, backward, ``trainer.step``);
nothing in it is specific to ``LayerwiseTrainer`` except the optional
``on_epoch`` hook (where ``GradualUnfreezing.on_epoch`` goes) and
``on_step`` (where a rate recorder goes).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm.auto import tqdm

from ..checks import InvalidTypeError, InvalidValueError, check_bool, check_positive_int
from ..structure.arrays import on_context, scalar

__all__ = ["fit", "evaluate", "train_epoch", "validate", "check_loader", "check_net_and_trainer",
           "show_phase", "EpochResult"]

EpochResult = Dict[str, float]


def check_loader(name: str, data) -> None:
    """``data`` must be a ``DataLoader`` that gives at least one batch."""
    if not isinstance(data, gluon.data.DataLoader):
        raise InvalidTypeError(f"{name} must be a gluon.data.DataLoader, got "
                               f"{type(data).__name__}", argument=name)
    if len(data) == 0:
        raise InvalidValueError(f"{name} is empty: its DataLoader gives no batches (an empty "
                                f"dataset, or fewer items than batch_size with "
                                f"last_batch='discard')", argument=name)


def check_net_and_trainer(net, trainer) -> None:
    """``net`` must be a ``gluon.Block`` and ``trainer`` a ``gluon.Trainer``."""
    if not isinstance(net, gluon.Block):
        raise InvalidTypeError(f"net must be a gluon.Block, got {type(net).__name__}",
                               argument="net")
    if not isinstance(trainer, gluon.Trainer):
        raise InvalidTypeError(f"trainer must be a gluon.Trainer, got "
                               f"{type(trainer).__name__}", argument="trainer")


def _check_fit_args(net, trainer, train_data, epochs, val_data, progress) -> int:
    """``epochs`` as an int, after checking every argument (before anything trains)."""
    check_net_and_trainer(net, trainer)
    check_loader("train_data", train_data)
    if val_data is not None:
        check_loader("val_data", val_data)
    check_bool("progress", progress)
    return check_positive_int("epochs", epochs)


def _hits(out, y):
    """How many rows of ``out`` score their label highest, as an array (not read yet).
    Compared as integers: in NumPy mode ``argmax`` gives int64, which MXNet does not
    compare with float labels."""
    return (out.argmax(axis=1).astype("int64") == y.astype("int64")).sum()


def _correct(out, y) -> int:
    return int(scalar(_hits(out, y)))


def evaluate(net: gluon.Block, data: gluon.data.DataLoader, ctx: Optional[mx.Context] = None
             ) -> float:
    """Top-1 accuracy of ``net`` on a loader of ``(x, label)`` batches.

    Parameters
    ----------
    net : Block
        The network (called as it is, outside ``autograd.record``).
    data : DataLoader
        Batches of ``(x, label)``.
    ctx : Context, optional
        Where the batches go; default ``mx.cpu()``.

    Returns
    -------
    float
        The fraction of examples whose highest output is their label.

    Raises
    ------
    InvalidValueError
        ``data`` gives no batch.

    Examples
    --------
    >>> from gluon_finetune import evaluate
    >>> 0.0 <= evaluate(net, val_loader) <= 1.0
    True
    """
    ctx = ctx or mx.cpu()
    correct = total = 0
    for x, y in data:
        correct += _correct(net(on_context(x, ctx)), on_context(y, ctx))
        total += x.shape[0]
    if total == 0:
        raise InvalidValueError("evaluate got an empty data loader", argument="data")
    return correct / total


def train_epoch(net: gluon.Block, trainer: gluon.Trainer, data: gluon.data.DataLoader,
                loss_fn: Optional[gluon.loss.Loss] = None, ctx: Optional[mx.Context] = None,
                on_step: Optional[Callable[[gluon.Trainer], object]] = None,
                bar: Optional[tqdm] = None) -> Dict[str, float]:
    """One pass over ``data``: record, backward, ``trainer.step`` per batch.

    Returns the mean batch loss (``train_loss``) and the accuracy
    (``train_acc``). ``on_step(trainer)`` runs after each step; ``bar`` (a
    tqdm bar) advances by one per batch.
    """
    loss_fn = loss_fn or gluon.loss.SoftmaxCrossEntropyLoss()
    ctx = ctx or mx.cpu()
    losses, hits, total = [], [], 0
    for x, y in data:
        x, y = on_context(x, ctx), on_context(y, ctx)
        with autograd.record():
            out = net(x)
            loss = loss_fn(out, y)
        loss.backward()
        trainer.step(x.shape[0])
        if on_step is not None:
            on_step(trainer)
        # kept as arrays and read at the end: reading one waits for the batch, and the next
        # batch's images would then be prepared only after it, not while it runs
        losses.append(loss.mean())
        hits.append(_hits(out, y))
        total += x.shape[0]
        if bar is not None:
            bar.update(1)
            if not bar.disable and len(losses) > 1:  # the batch before: done by now
                bar.set_postfix(loss=f"{scalar(losses[-2]):.3f}", refresh=False)
    return {"train_loss": float(np.mean([scalar(v) for v in losses])),
            "train_acc": sum(int(scalar(h)) for h in hits) / total}


def validate(net: gluon.Block, data: gluon.data.DataLoader,
             loss_fn: Optional[gluon.loss.Loss] = None, ctx: Optional[mx.Context] = None
             ) -> Dict[str, float]:
    """Mean loss per image (``val_loss``) and top-1 accuracy (``val_acc``) on ``data``."""
    loss_fn = loss_fn or gluon.loss.SoftmaxCrossEntropyLoss()
    ctx = ctx or mx.cpu()
    loss_sum, correct, total = 0.0, 0, 0
    for x, y in data:
        x, y = on_context(x, ctx), on_context(y, ctx)
        out = net(x)
        loss_sum += scalar(loss_fn(out, y).sum())
        correct += _correct(out, y)
        total += x.shape[0]
    if total == 0:
        raise InvalidValueError("validate got an empty data loader", argument="data")
    return {"val_loss": loss_sum / total, "val_acc": correct / total}


def show_phase(bar: tqdm, desc: str, phase: object) -> None:
    """A phase named by an epoch hook (``FineTuneSchedule``'s ``"head"``) goes in the bar's
    description: ``fine_tune (head)``."""
    if isinstance(phase, str):
        bar.set_description(f"{desc} ({phase})")  # shown now: an epoch may end before a refresh


def fit(net: gluon.Block, trainer: gluon.Trainer, train_data: gluon.data.DataLoader,
        epochs: int, val_data: Optional[gluon.data.DataLoader] = None, *,
        loss: Optional[gluon.loss.Loss] = None, ctx: Optional[mx.Context] = None,
        on_epoch: Optional[Callable[[int], object]] = None,
        on_step: Optional[Callable[[gluon.Trainer], object]] = None,
        progress: bool = True, desc: str = "train") -> List[EpochResult]:
    """Train ``net`` for ``epochs`` epochs; one result dict per epoch.

    Parameters
    ----------
    net : Block
        The network.
    trainer : gluon.Trainer
        Its trainer, layerwise or plain.
    train_data : DataLoader
        Batches of ``(x, label)``.
    epochs : int
        Number of passes over ``train_data``.
    val_data : DataLoader, optional
        With it, each epoch ends with a validation accuracy (``val_acc``).
    loss : gluon.loss.Loss, optional
        Default: softmax cross-entropy.
    ctx : Context, optional
        Where the batches go; default ``mx.cpu()`` (one context).
    on_epoch : callable, optional
        Called with the epoch number before each epoch, e.g.
        ``GradualUnfreezing(trainer, every=1).on_epoch``; a string it returns
        (a phase) is shown in the progress bar.
    on_step : callable, optional
        Called with the trainer after each ``trainer.step``.
    progress : bool
        Show a tqdm progress bar (on stderr).
    desc : str
        The progress bar's label.

    Returns
    -------
    list of dict
        ``epoch``, ``train_loss``, ``train_acc``, ``val_acc`` (if ``val_data``),
        ``seconds`` (cumulative wall time).

    Raises
    ------
    InvalidTypeError
        ``net`` is not a Block or ``trainer`` not a Trainer.
    InvalidValueError
        ``epochs`` is not a positive integer, or a loader gives no batches (an empty
        data set, or fewer items than the batch size with
        ``last_batch="discard"``): before the first epoch.

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, fit
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"features": 0.1})
    >>> history = fit(net, trainer, train_loader, epochs=2, val_data=val_loader, progress=False)
    >>> [sorted(h) for h in history][0]
    ['epoch', 'seconds', 'train_acc', 'train_loss', 'val_acc']
    """
    epochs = _check_fit_args(net, trainer, train_data, epochs, val_data, progress)
    loss_fn = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    ctx = ctx or mx.cpu()
    history: List[EpochResult] = []
    start = time.perf_counter()
    with tqdm(total=epochs * len(train_data), desc=desc, disable=not progress,
              leave=False, dynamic_ncols=True) as bar:
        for epoch in range(epochs):
            if on_epoch is not None:
                show_phase(bar, desc, on_epoch(epoch))
            result = {"epoch": epoch, **train_epoch(net, trainer, train_data, loss_fn, ctx,
                                                    on_step, bar)}
            if val_data is not None:
                result["val_acc"] = evaluate(net, val_data, ctx)
                bar.set_postfix(val_acc=f"{result['val_acc']:.3f}", refresh=False)
            result["seconds"] = time.perf_counter() - start
            history.append(result)
    return history
