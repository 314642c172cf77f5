"""``lr_find``: the learning-rate range test (Smith, 2017; fastai's ``lr_find``), with no trace.

The test trains for a few iterations while the base rate grows geometrically
and records the loss; the loss falls fastest somewhere below the rate where
training diverges, and that is a good rate to train at.

It must leave everything as it was, so the user's trainer is never stepped:
a second trainer over the same parameters (same optimizer class and
hyperparameters, same contexts, kvstore kind and ``update_on_kvstore``)
runs the sweep, each parameter at the user's trainer's rate for its next
update scaled by ``swept base rate / the trainer's base rate`` (so
multipliers, absolute rates and schedules keep their relation to the base,
and frozen parameters stay frozen). The network's arrays are saved before
and restored after (``snapshots.Snapshot``), whatever happens in between.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from mxnet import autograd, gluon, nd
from tqdm.auto import tqdm

from ..arrays import as_array, scalar
from ..checks import InvalidTypeError, InvalidValueError, check_bool, check_int, check_real
from ..optim import fresh_layerwise, preview_lrs
from .snapshots import Snapshot, unique_params

__all__ = ["lr_find", "LRFinderResult", "relative_rates", "geometric_rates",
           "smoothed_losses", "suggest_lr"]


@dataclass(frozen=True)
class LRFinderResult:
    """What a range test measured.

    ``lrs`` are the base rates tried (one per iteration), ``losses`` the
    smoothed losses at those rates, ``raw_losses`` each batch's mean loss;
    ``suggestion`` is :func:`suggest_lr` of the two (None when the loss never
    fell); ``diverged`` says whether the sweep stopped early because the loss
    exploded.
    """

    lrs: Tuple[float, ...]
    losses: Tuple[float, ...]
    raw_losses: Tuple[float, ...]
    suggestion: Optional[float]
    diverged: bool

    def plot(self, path: str, title: str = "learning-rate range test") -> str:
        """Write the loss against the base rate (log axis), the suggestion marked; returns
        the file written (``.png`` added where ``path`` has no extension)."""
        from ..reporting.plots import plot_lr_find
        return plot_lr_find(self, path, title)


# ----------------------------------------------------------------- pure parts

def geometric_rates(start_lr: float, end_lr: float, num_iter: int) -> List[float]:
    """``num_iter`` rates from ``start_lr`` to ``end_lr``, evenly spaced on a log scale.

    Examples
    --------
    >>> geometric_rates(1e-3, 1e-1, 3)
    [0.001, 0.01, 0.1]
    """
    ratio = end_lr / start_lr
    rates = [start_lr * ratio ** (k / (num_iter - 1)) for k in range(num_iter)]
    rates[-1] = end_lr
    return [float(f"{r:.12g}") for r in rates]


def smoothed_losses(raw: Sequence[float], smooth: float) -> List[float]:
    """Exponential moving average of ``raw`` with weight ``smooth`` on each new value,
    bias-corrected (the first values are not pulled towards 0).

    Examples
    --------
    >>> smoothed_losses([2.0, 2.0, 4.0], 0.5)
    [2.0, 2.0, 3.142857142857143]
    """
    out, avg = [], 0.0
    for k, loss in enumerate(raw):
        avg = (1 - smooth) * avg + smooth * loss
        out.append(avg / (1 - (1 - smooth) ** (k + 1)))
    return out


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """The least-squares slope of ``y`` against ``x``."""
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def suggest_lr(lrs: Sequence[float], losses: Sequence[float]) -> Optional[float]:
    """The rate where the smoothed loss falls fastest (steepest descent against log(lr)).

    The slope is a least-squares line through a window of a tenth of the
    points (at least 3), so that one noisy batch cannot make a descent; the
    suggestion is the middle of the steepest window. Windows end at the
    lowest loss at the latest (after it the loss rises towards divergence),
    and the first tenth of the points is skipped (the moving average is still
    settling there; fastai skips it too). None when the loss never fell below
    its first value there.

    Examples
    --------
    >>> suggest_lr([1e-4, 1e-3, 1e-2, 1e-1, 1.0], [2.3, 2.2, 1.5, 1.2, 9.0])
    0.01
    """
    start = end = len(losses) // 10
    while end < len(losses) and math.isfinite(losses[end]):
        end += 1
    values = np.asarray(losses[start:end], dtype=float)
    if len(values) < 2 or values.min() >= values[0]:
        return None
    span = int(np.argmin(values)) + 1  # the points up to the lowest loss
    width = min(max(3, round(len(losses) / 10)), span)
    x = np.log(np.asarray(lrs[start:start + span], dtype=float))
    slopes = [_slope(x[k:k + width], values[k:k + width]) for k in range(span - width + 1)]
    return float(lrs[start + int(np.argmin(slopes)) + width // 2])


# ----------------------------------------------------------------- the trainer side

def _kvstore_kind(trainer: gluon.Trainer) -> Optional[str]:
    store = trainer._kvstore if trainer._kv_initialized else trainer._kvstore_params["kvstore"]
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
    outside = [p.name for p in trainer._params if id(p) not in in_net]
    if outside:
        raise InvalidValueError(
            f"the trainer has parameters that are not in net: {outside[:5]}"
            f"{' ...' if len(outside) > 5 else ''}; pass the network they belong to",
            argument="trainer")
    for p in unique_params(net.collect_params().values()):
        if p._data is None:
            raise InvalidValueError(
                f"parameter {p.name!r} is not initialized yet (deferred shape or no "
                f"initialize()); run one forward pass before lr_find", argument="net")
        if p._stype != "default":
            raise InvalidValueError(f"parameter {p.name!r} has storage type {p._stype!r}; "
                                    f"lr_find supports dense weights only", argument="net")


def relative_rates(trainer: gluon.Trainer) -> Tuple[float, List[float]]:
    """``(base, [rate_i / base])``: each parameter's rate at the trainer's next update and
    the trainer's base rate at that update (its scheduler's value, else its rate).

    Computed on copies: the trainer, its schedules and its clocks are untouched.
    A frozen parameter's entry is 0.
    """
    opt = trainer.optimizer
    params = trainer._params
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
    params = trainer._params
    for param, mult in zip(params, multipliers):
        param.lr_mult = mult
    for param in params:  # gluon.Trainer refuses to take over a sparse parameter's pointer
        param._trainer = None
    kvstore = trainer._kvstore_params["kvstore"]
    if not (kvstore is None or isinstance(kvstore, str)):
        kvstore = kvstore.type  # never the user's store: it holds their weights
    update_on_kvstore = trainer._update_on_kvstore if trainer._kv_initialized \
        else trainer._kvstore_params["update_on_kvstore"]
    return LayerwiseTrainer(list(params), _sweep_optimizer(trainer.optimizer, trainer._scale),
                            kvstore=kvstore, compression_params=trainer._compression_params,
                            update_on_kvstore=update_on_kvstore)


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
    xs = gluon.utils.split_and_load(x, contexts, even_split=False)
    ys = gluon.utils.split_and_load(y, contexts, even_split=False)
    with autograd.record():
        losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
    autograd.backward(losses)
    trainer.step(x.shape[0])
    return sum(scalar(loss.mean()) * part.shape[0]
               for loss, part in zip(losses, xs)) / x.shape[0]


def _sweep(net, trainer, data, loss_fn, lrs, smooth, diverge, bar):
    contexts = trainer._contexts
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
    loss. Every parameter keeps its relation to the base: its rate is the
    trainer's rate for it at its next update times ``lr / base``, where
    ``base`` is the trainer's base rate then (``relative_rates``); so
    multipliers scale, absolute and scheduled rules scale from their value at
    the current step, and frozen parameters stay frozen. The sweep stops once
    the smoothed loss exceeds ``diverge`` times its minimum (or is not finite).

    The trainer is never stepped: a temporary trainer over the same parameters
    (same optimizer and hyperparameters, starting with fresh optimizer state,
    same contexts, kvstore kind and ``update_on_kvstore``) does the sweep. The
    network's arrays on every context (weights, BatchNorm running statistics,
    gradients), each parameter's settings and NumPy's and Python's random
    states are saved before and restored after, also when the sweep fails.
    So training after ``lr_find`` equals training without it, bit for bit.
    MXNet's own random state (Dropout, ``mx.random`` augmentation) cannot be
    saved in MXNet 1.9.1: with those, later training is the same only in
    distribution. Gradients of ``grad_req='add'`` parameters are zeroed
    before each sweep iteration. The saved copy costs one copy of the
    network's arrays in memory.

    Parameters
    ----------
    net : Block
        The network ``trainer`` trains (its forward pass is what is measured).
    trainer : gluon.Trainer
        A ``LayerwiseTrainer`` or a plain ``gluon.Trainer``, on one or several
        contexts; not on a distributed kvstore (``ValueError``).
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

    Examples
    --------
    >>> import mxnet as mx
    >>> from gluon_finetune import LayerwiseTrainer
    >>> net = mx.gluon.nn.Dense(2, in_units=4, prefix="dense_")
    >>> net.initialize()
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    >>> x, y = mx.nd.random.normal(shape=(32, 4)), mx.nd.array([0, 1] * 16)
    >>> data = mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(x, y), batch_size=8)
    >>> result = lr_find(net, trainer, data, num_iter=20, progress=False)
    >>> len(result.lrs) <= 20 and result.lrs[0] == 1e-7
    True
    """
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss() if loss_fn is None else loss_fn
    _check_args(net, trainer, data, loss_fn, start_lr, end_lr, num_iter, smooth, diverge,
                progress)
    _check_trainer(net, trainer)
    _, multipliers = relative_rates(trainer)
    lrs = geometric_rates(float(start_lr), float(end_lr), int(num_iter))
    snapshot = Snapshot(net, trainer._params)
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
