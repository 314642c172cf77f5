"""Schedules: copies per rule, names for tables, and the schedules MXNet lacks.

This module may be unpickled on a kvstore server (per-rule schedules travel
with the optimizer), so it imports only ``mxnet.lr_scheduler`` at the top.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

from mxnet.lr_scheduler import LRScheduler

from ..checks import InvalidValueError, check_int, check_real

__all__ = ["is_mx_scheduler", "private_copy", "rebased_copy", "describe_schedule",
           "SlantedTriangular", "OneCycle"]


def is_mx_scheduler(schedule) -> bool:
    """An ``mx.lr_scheduler.LRScheduler`` (or look-alike): it has a ``base_lr`` to set."""
    return callable(schedule) and hasattr(schedule, "base_lr")


def private_copy(schedule: Callable) -> Callable:
    """A deep copy of ``schedule`` (MXNet's schedulers keep state), or ``schedule``
    itself where it cannot be copied (such a callable is used as given)."""
    try:
        return copy.deepcopy(schedule)
    except Exception:
        return schedule


def rebased_copy(schedule: Callable, base_lr: float) -> Callable:
    """A private copy of ``schedule`` whose peak rate is ``base_lr``.

    MXNet schedulers keep state (FactorScheduler decays ``base_lr`` in place),
    so each rule gets its own copy. Besides ``base_lr``, PolyScheduler and
    CosineScheduler cache ``base_lr_orig`` and every scheduler caches
    ``warmup_final_lr`` at construction; they are moved along, otherwise the
    warm-up would end at the old rate. A plain callable gives absolute rates
    and is copied as it is.
    """
    fresh = private_copy(schedule)
    if not is_mx_scheduler(fresh):
        return fresh
    old = fresh.base_lr
    fresh.base_lr = base_lr
    if getattr(fresh, "warmup_final_lr", None) == old:
        fresh.warmup_final_lr = base_lr
    if hasattr(fresh, "base_lr_orig"):
        fresh.base_lr_orig = base_lr
    return fresh


def describe_schedule(schedule) -> str:
    """A short human name for a schedule, for tables."""
    if schedule is None:
        return ""
    name = getattr(schedule, "__name__", None) or type(schedule).__name__
    if is_mx_scheduler(schedule):
        return f"{name}(base_lr={schedule.base_lr:g})"
    return name


# ----------------------------------------------------------------- checks

def _positive(name: str, value) -> float:
    return check_real(name, value, positive=True)


def _fraction(name: str, value) -> float:
    value = check_real(name, value)
    if not 0 < value < 1:
        raise InvalidValueError(f"{name} must be in (0, 1), got {value!r}", argument=name)
    return value


# ----------------------------------------------------------------- schedules MXNet lacks

class SlantedTriangular(LRScheduler):
    """ULMFiT's slanted triangular rate: a short linear rise, a long linear fall.

    Rises from ``base_lr / ratio`` to ``base_lr`` over the first
    ``cut_frac * max_update`` updates, then falls back to ``base_lr / ratio``
    at ``max_update`` (and stays there). ``base_lr`` is the peak, so a rule's
    rate becomes the peak of its copy.
    """

    def __init__(self, max_update: int, cut_frac: float = 0.1, ratio: float = 32.0,
                 base_lr: float = 0.01):
        super().__init__(base_lr)
        self.max_update = check_int("max_update", max_update, minimum=1)
        self.cut_frac, self.ratio = _fraction("cut_frac", cut_frac), _positive("ratio", ratio)

    def __call__(self, num_update: int) -> float:
        t = min(num_update, self.max_update)
        cut = max(1, int(self.max_update * self.cut_frac))
        p = t / cut if t < cut else 1 - (t - cut) / max(1, self.max_update - cut)
        return self.base_lr * (1 + p * (self.ratio - 1)) / self.ratio


class OneCycle(LRScheduler):
    """Smith's one-cycle rate (cosine form): ``base_lr / div`` up to ``base_lr`` over
    ``pct_start * max_update`` updates, then down to ``base_lr / final_div``."""

    def __init__(self, max_update: int, pct_start: float = 0.3, div: float = 25.0,
                 final_div: float = 1e4, base_lr: float = 0.01):
        super().__init__(base_lr)
        self.max_update = check_int("max_update", max_update, minimum=1)
        self.pct_start = _fraction("pct_start", pct_start)
        self.div, self.final_div = _positive("div", div), _positive("final_div", final_div)

    @staticmethod
    def _cosine(start: float, end: float, fraction: float) -> float:
        return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2

    def __call__(self, num_update: int) -> float:
        t = min(num_update, self.max_update)
        rise = max(1, int(self.max_update * self.pct_start))
        if t <= rise:
            return self._cosine(self.base_lr / self.div, self.base_lr, t / rise)
        fall = max(1, self.max_update - rise)
        return self._cosine(self.base_lr, self.base_lr / self.final_div, (t - rise) / fall)
