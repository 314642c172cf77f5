"""``lr_find``: the learning-rate range test (Smith, 2017; fastai's ``lr_find``), with no trace.

The test trains for a few iterations while the base rate grows geometrically
and records the loss; the loss falls fastest somewhere below the rate where
training diverges, and that is a good rate to train at.

It must leave everything as it was, so the user's trainer is never stepped:
a second trainer over the same parameters (same optimizer, contexts and
kvstore kind) runs the sweep, each parameter at the user's trainer's rate
scaled by ``swept base rate / the trainer's base rate``; the network's arrays
are saved before and restored after (``snapshots.Snapshot``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from mxnet import autograd, gluon, nd
from tqdm.auto import tqdm

from .._compat import (
    compression_params,
    grad_scale,
    is_initialized,
    kvstore_in_use,
    requested_kvstore,
    set_param_trainer,
    storage_type,
    trainer_contexts,
    trainer_params,
    updates_on_kvstore,
)
from ..checks import InvalidTypeError, InvalidValueError, check_bool, check_int, check_real
from ..optim import fresh_layerwise, preview_lrs
from ..structure.arrays import as_array, scalar, split_to
from .lr_curve import geometric_rates, smoothed_losses, suggest_lr
from .snapshots import Snapshot, unique_params

__all__ = ["lr_find", "LRFinderResult", "relative_rates", "geometric_rates",
           "smoothed_losses", "suggest_lr"]


@dataclass(frozen=True)
class LRFinderResult:
    """What a range test measured; ``lr_find`` returns it.

    Parameters
    ----------
    lrs : tuple of float
        The base rates tried, one per iteration.
    losses : tuple of float
        The smoothed losses at those rates.
    raw_losses : tuple of float
        Each batch's mean loss.
    suggestion : float or None
        The rate to train at (None when the loss never fell).
    diverged : bool
        Whether the sweep stopped early because the loss exploded.

    Examples
    --------
    >>> from gluon_finetune import LRFinderResult
    >>> result = LRFinderResult((1e-3, 1e-2, 1e-1), (1.0, 0.8, 2.0), (1.0, 0.7, 2.5), 1e-2, True)
    >>> result.plot("lr_find")
    'lr_find.png'
    """

    lrs: Tuple[float, ...]
    losses: Tuple[float, ...]
    raw_losses: Tuple[float, ...]
    suggestion: Optional[float]
    diverged: bool

    def plot(self, path: str, title: str = "learning-rate range test") -> str:
        """Draw the loss against the base rate (log axis), the suggestion marked; returns
        the file written (needs the ``plot`` extra).

        Parameters
        ----------
        path : str
            The file; ``.png`` is added where it has no extension.
        title : str
            The plot's title.
        """
        from ..reporting.plots import plot_lr_find
        return plot_lr_find(self, path, title)


# ----------------------------------------------------------------- pure parts

def _kvstore_kind(trainer: gluon.Trainer) -> Optional[str]:
    store = kvstore_in_use(trainer)
    if store is None or isinstance(store, str):
        return store
    return store.type


def _check_trainer(net: gluon.Block, trainer: gluon.Trainer) -> None:
    kind = _kvstore_kind(trainer)
    if kind is not None and ("dist" in kind or kind in ("horovod", "byteps")):
        raise InvalidValueError(
            f"lr_find runs in one process, but the trainer's kvstore is {kind!r}; run the "
            f"range test in a single-process job (one or several contexts, kvstore 'device' "
            f"or 'local') and give its rate to the distributed job", argument="trainer")
    in_net = {id(p) for p in net.collect_params().values()}
    outside = [p.name for p in trainer_params(trainer) if id(p) not in in_net]
    if outside:
        raise InvalidValueError(
            f"the trainer has parameters that are not in net: {outside[:5]}"
            f"{' ...' if len(outside) > 5 else ''}; pass the network they belong to",
            argument="trainer")
    for p in unique_params(net.collect_params().values()):
        if not is_initialized(p):
            raise InvalidValueError(
                f"parameter {p.name!r} is not initialized yet (deferred shape or no "
                f"initialize()); run one forward pass before lr_find", argument="net")
        if storage_type(p) != "default":
            raise InvalidValueError(f"parameter {p.name!r} has storage type {storage_type(p)!r}; "
                                    f"lr_find supports dense weights only", argument="net")


def relative_rates(trainer: gluon.Trainer) -> Tuple[float, List[float]]:
    """``(base, [rate_i / base])``: each parameter's rate at the trainer's next update and
    the trainer's base rate at that update (its scheduler's value, else its rate).

    Computed on copies: the trainer, its schedules and its clocks are untouched.
    A frozen parameter's entry is 0.
    """
    opt = trainer.optimizer
    params = trainer_params(trainer)
    updated = [i for i, p in enumerate(params) if p.grad_req != "null"]
    rates = preview_lrs(opt, len(params), updated, 1)[0]
    base = opt.lr if opt.lr_scheduler is None else \
        copy.deepcopy(opt.lr_scheduler)(opt.num_update + 1)
    if base is None or not math.isfinite(base) or base == 0:
        raise InvalidValueError(f"lr_find scales every rate by (swept rate / the trainer's "
                                f"base rate), but the trainer's base rate at its next update "
                                f"is {base!r}", argument="trainer")
    return float(base), [0.0 if params[i].grad_req == "null" else float(r) / base
                         for i, r in enumerate(rates)]


def _sweep_optimizer(opt, scale: float):
    """A fresh optimizer of ``opt``'s class with its hyperparameters: no state, no
    counts, no schedule (the sweep sets the rate at each step)."""
    fresh = fresh_layerwise(opt)
    fresh.rescale_grad = scale  # the trainer's step(batch_size) divides this by the batch
    return fresh


def _sweep_trainer(trainer: gluon.Trainer, multipliers: Sequence[float]):
    from ..trainer import LayerwiseTrainer
    params = trainer_params(trainer)
    for param, mult in zip(params, multipliers):
        param.lr_mult = mult
    for param in params:  # gluon.Trainer refuses to take over a sparse parameter's pointer
        set_param_trainer(param, None)
    kvstore = requested_kvstore(trainer)
    if not (kvstore is None or isinstance(kvstore, str)):
        kvstore = kvstore.type  # never the user's store: it holds their weights
    return LayerwiseTrainer(list(params), _sweep_optimizer(trainer.optimizer, grad_scale(trainer)),
                            kvstore=kvstore, compression_params=compression_params(trainer),
                            update_on_kvstore=updates_on_kvstore(trainer))


# ----------------------------------------------------------------- the sweep

def _cycle(data: Iterable) -> Iterator:
    """The batches of ``data`` again and again (a one-pass iterator ends when spent)."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            return


def _step(net, trainer, loss_fn, batch, contexts, accumulating) -> float:
    """One training iteration of the sweep; the batch's mean loss."""
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        length = f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else ""
        raise InvalidTypeError(f"lr_find: data must yield (x, label) batches, got "
                               f"{type(batch).__name__}{length}", argument="data")
    x, y = (as_array(b) for b in batch)
    for param in accumulating:  # grad_req 'add': one batch's gradient per step
        param.zero_grad()
    xs, ys = split_to(x, contexts), split_to(y, contexts)
    with autograd.record():
        losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
    autograd.backward(losses)
    trainer.step(x.shape[0])
    return sum(scalar(loss.mean()) * part.shape[0]
               for loss, part in zip(losses, xs)) / x.shape[0]


def _sweep(net, trainer, data, loss_fn, lrs, smooth, diverge, bar):
    contexts = trainer_contexts(trainer)
    accumulating = [p for p in net.collect_params().values() if p.grad_req == "add"]
    batches = _cycle(data)
    raw: List[float] = []
    best, average = math.inf, 0.0
    for k, lr in enumerate(lrs):
        batch = next(batches, None)
        if batch is None:
            break
        trainer.set_learning_rate(lr)
        raw.append(_step(net, trainer, loss_fn, batch, contexts, accumulating))
        average = (1 - smooth) * average + smooth * raw[-1]  # as smoothed_losses
        loss = average / (1 - (1 - smooth) ** (k + 1))
        best = min(best, loss)
        bar.update(1)
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{loss:.4f}", refresh=False)
        if not math.isfinite(loss) or (best > 0 and loss > diverge * best):
            return raw, True
    return raw, False


def _check_args(net, trainer, data, loss_fn, start_lr, end_lr, num_iter, smooth, diverge,
                progress) -> None:
    for name, value, kind, expected in (
            ("net", net, gluon.Block, "a gluon.Block"),
            ("trainer", trainer, gluon.Trainer, "a gluon.Trainer")):
        if not isinstance(value, kind):
            raise InvalidTypeError(f"{name} must be {expected}, got {type(value).__name__}",
                                   argument=name)
    if not hasattr(data, "__iter__"):
        raise InvalidTypeError(f"data must be an iterable of (x, label) batches such as a "
                               f"DataLoader, got {type(data).__name__}", argument="data")
    if not callable(loss_fn):
        raise InvalidTypeError(f"loss_fn must be a callable (a gluon.loss.Loss), got "
                               f"{type(loss_fn).__name__}", argument="loss_fn")
    start_lr = check_real("start_lr", start_lr, positive=True)
    if check_real("end_lr", end_lr, positive=True) <= start_lr:
        raise InvalidValueError(f"end_lr must be greater than start_lr, got start_lr="
                                f"{start_lr!r}, end_lr={end_lr!r}", argument="end_lr")
    check_int("num_iter", num_iter, minimum=2)
    if not 0 < check_real("smooth", smooth) <= 1:
        raise InvalidValueError(f"smooth must be in (0, 1] (the weight of each new loss; 1: "
                                f"no smoothing), got {smooth!r}", argument="smooth")
    if check_real("diverge", diverge) <= 1:
        raise InvalidValueError(f"diverge must be > 1 (stop once the smoothed loss exceeds "
                                f"diverge times its minimum), got {diverge!r}",
                                argument="diverge")
    check_bool("progress", progress)


def lr_find(net: gluon.Block, trainer: gluon.Trainer, data: Iterable,
            loss_fn: Optional[Callable] = None, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_iter: int = 100, smooth: float = 0.05, diverge: float = 4.0, *,
            progress: bool = True) -> LRFinderResult:
    """Learning-rate range test; afterwards ``net`` and ``trainer`` are as before, bit for bit.

    Trains ``num_iter`` iterations on batches of ``data`` (cycled), the base
    rate growing geometrically from ``start_lr`` to ``end_lr``, and records the
    loss; it stops once the smoothed loss exceeds ``diverge`` times its minimum.
    Every parameter keeps its relation to the base (multipliers scale, absolute
    and scheduled rules scale from their value now, frozen stays frozen). A
    temporary trainer with fresh optimizer state does the sweep, and the
    network's arrays, settings and NumPy's and Python's random states are
    restored after, also when it fails: training after ``lr_find`` equals
    training without it, bit for bit (MXNet's own random state, for Dropout,
    cannot be saved in MXNet 1.9.1: then only in distribution).

    Parameters
    ----------
    net : Block
        The network ``trainer`` trains (its forward pass is what is measured).
    trainer : gluon.Trainer
        A ``LayerwiseTrainer`` or a plain ``gluon.Trainer``, on one or several
        contexts; not on a distributed kvstore.
    data : iterable of (x, label)
        Training batches, e.g. a ``DataLoader``; split across the contexts.
    loss_fn : callable, optional
        ``loss_fn(output, label)``; default softmax cross-entropy.
    start_lr, end_lr : float
        The first and last base rate (``0 < start_lr < end_lr``).
    num_iter : int
        Iterations (rates tried), at least 2.
    smooth : float
        Weight of each new loss in the moving average, in (0, 1] (1: none).
    diverge : float
        Stop once the smoothed loss exceeds ``diverge`` times its minimum.
    progress : bool
        Show a tqdm progress bar (on stderr).

    Returns
    -------
    LRFinderResult
        ``lrs``, ``losses`` (smoothed), ``raw_losses``, ``suggestion`` and
        ``plot(path)``. The suggestion is the base rate at which the smoothed
        loss falls fastest against log(lr): the middle of the steepest
        least-squares line through a tenth of the points, before the loss's
        minimum (``suggest_lr``); None if the loss never fell. Train at about
        that rate; the minimum's rate is where training is about to diverge.

    Raises
    ------
    InvalidValueError
        A distributed kvstore (``dist_*``, Horovod), parameters without shapes
        or not dense, rates or counts out of range, ``data`` without batches:
        before anything changes.
    InvalidTypeError
        ``net``, ``trainer``, ``data`` or ``loss_fn`` of the wrong kind.

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, lr_find
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    >>> before = net.features[0].weight.data().copy()
    >>> result = lr_find(net, trainer, train_loader, loss_fn, num_iter=20, progress=False)
    >>> len(result.lrs) <= 20, result.lrs[0], trainer.optimizer.num_update
    (True, 1e-07, 0)
    >>> bool((net.features[0].weight.data() == before).min())  # left as it was
    True
    """
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss() if loss_fn is None else loss_fn
    _check_args(net, trainer, data, loss_fn, start_lr, end_lr, num_iter, smooth, diverge,
                progress)
    _check_trainer(net, trainer)
    _, multipliers = relative_rates(trainer)
    lrs = geometric_rates(float(start_lr), float(end_lr), int(num_iter))
    snapshot = Snapshot(net, trainer_params(trainer))
    try:
        sweeper = _sweep_trainer(trainer, multipliers)
        with tqdm(total=len(lrs), desc="lr_find", disable=not progress, leave=False,
                  dynamic_ncols=True) as bar:
            raw, diverged = _sweep(net, sweeper, data, loss_fn, lrs, float(smooth),
                                   float(diverge), bar)
    finally:
        snapshot.restore()
        nd.waitall()
    if not raw:
        raise InvalidValueError("lr_find: data yielded no batches", argument="data")
    losses = smoothed_losses(raw, float(smooth))
    used = lrs[:len(raw)]
    return LRFinderResult(tuple(used), tuple(losses), tuple(raw), suggest_lr(used, losses),
                          diverged)
