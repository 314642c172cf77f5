"""The learning-rate range test's arithmetic, pure: the rates swept, the smoothed losses, the
suggested rate (where the smoothed loss falls fastest)."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np

__all__ = ["geometric_rates", "smoothed_losses", "suggest_lr"]


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
