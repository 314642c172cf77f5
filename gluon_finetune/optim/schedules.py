"""Schedules: copies per rule, names for tables, and the schedules MXNet lacks.

This module may be unpickled on a kvstore server (per-rule schedules travel
with the optimizer), so it imports only ``mxnet.lr_scheduler`` at the top.
"""
from __future__ import annotations

import copy
import math
import pickle
from typing import Any, Callable, Optional, Tuple

from mxnet.lr_scheduler import LRScheduler

from ..checks import (
    InvalidTypeError,
    InvalidValueError,
    check_int,
    check_real,
    held_schedulers,
    is_real,
)
from ..errors import UnsupportedError

__all__ = ["is_mx_scheduler", "private_copy", "rebased_copy", "rate_fields", "scheduled_rate",
           "describe_schedule", "fingerprint", "picklable", "Unsaved", "SlantedTriangular",
           "OneCycle"]


def is_mx_scheduler(schedule) -> bool:
    """An ``mx.lr_scheduler.LRScheduler`` (or look-alike) whose rates are relative to its
    ``base_lr``: it has one to set, and holds no other schedulers (GluonCV's
    ``LRSequential`` takes its rates from those; its own ``base_lr`` is unused)."""
    return callable(schedule) and hasattr(schedule, "base_lr") and \
        not held_schedulers(schedule)


def private_copy(schedule: Callable) -> Callable:
    """A deep copy of ``schedule`` (MXNet's schedulers keep state), or ``schedule``
    itself where it cannot be copied (such a callable is used as given)."""
    try:
        return copy.deepcopy(schedule)
    except Exception:
        return schedule


def rate_fields(schedule) -> Tuple[str, ...]:
    """The absolute learning rates an MXNet-style scheduler holds: its attributes named
    ``*_lr`` or ``*_lr_orig`` that are numbers.

    MXNet 1.9.1 names every one of them so (``lr_scheduler.py``): ``base_lr``,
    ``warmup_begin_lr``, ``warmup_final_lr`` (every scheduler),
    ``stop_factor_lr`` (FactorScheduler), ``base_lr_orig`` and ``final_lr``
    (Poly, Cosine); ours follow it. A scheduler of your own that keeps a rate
    under another name is not rebased there: name it ``*_lr``.

    Examples
    --------
    >>> from mxnet.lr_scheduler import PolyScheduler
    >>> sorted(rate_fields(PolyScheduler(10, final_lr=1e-4)))
    ['base_lr', 'base_lr_orig', 'final_lr', 'warmup_begin_lr', 'warmup_final_lr']
    """
    return tuple(name for name, value in vars(schedule).items()
                 if name.endswith(("_lr", "_lr_orig")) and is_real(value))


def rebased_copy(schedule: Callable, base_lr: float, rule: Optional[str] = None) -> Callable:
    """A private copy of ``schedule`` whose base rate is ``base_lr``, its shape kept.

    MXNet schedulers keep state (FactorScheduler decays ``base_lr`` in place),
    so each rule gets its own copy. Every absolute rate of the copy
    (:func:`rate_fields`: ``final_lr``, ``warmup_begin_lr``, ``stop_factor_lr``
    ...) is scaled by ``base_lr / schedule.base_lr``, so the copy's rate at
    every step is the original's times that ratio: a block at a tenth of the
    rate follows a tenth of the curve (MXNet's own ``Optimizer`` moves
    ``base_lr`` alone, which can make a schedule rise toward its ``final_lr``).
    A plain callable, or a scheduler holding schedulers, gives absolute rates and
    is copied as it is.

    Examples
    --------
    >>> from mxnet.lr_scheduler import PolyScheduler
    >>> copy_ = rebased_copy(PolyScheduler(10, base_lr=0.1, final_lr=0.01), 0.001)
    >>> round(copy_.final_lr, 12), round(copy_(10), 12)
    (0.0001, 0.0001)
    """
    fresh = private_copy(schedule)
    if not is_mx_scheduler(fresh):
        return fresh
    fields = rate_fields(fresh)
    old = _check_rebasable(fresh, fields, base_lr, rule)
    for name in fields:
        value = getattr(fresh, name)
        if value == old and name in _BASE_FIELDS:  # the base itself: exactly the new one
            setattr(fresh, name, base_lr)
        elif old != 0:
            setattr(fresh, name, value * (base_lr / old))
    return fresh


# where MXNet's schedulers keep the base rate itself (PolyScheduler and CosineScheduler
# cache it as base_lr_orig, every scheduler as warmup_final_lr)
_BASE_FIELDS = ("base_lr", "base_lr_orig", "warmup_final_lr")


def _check_rebasable(schedule, fields: Tuple[str, ...], base_lr: float,
                     rule: Optional[str]) -> float:
    """The schedule's declared base rate, once every rate of it is known to scale."""
    what = f"rule {rule!r}: its lr_scheduler" if rule is not None else "lr_scheduler"
    for name in fields:
        if not math.isfinite(getattr(schedule, name)):
            raise InvalidValueError(f"{what} has {name}={getattr(schedule, name)!r}; every "
                                    f"rate of a schedule must be a finite number")
    old = float(schedule.base_lr)
    others = [f"{name}={getattr(schedule, name)!r}" for name in fields
              if name not in _BASE_FIELDS and getattr(schedule, name) != 0]
    if old == 0 and others and base_lr != 0:
        raise InvalidValueError(
            f"{what} has base_lr=0, so its other rates ({', '.join(others)}) cannot be "
            f"scaled to the rule's rate {base_lr!r}; give the scheduler a nonzero base_lr "
            f"(its rates are taken relative to it)")
    return old


def scheduled_rate(rule: Optional[str], t: int, lr: Any) -> float:
    """``lr``, what rule ``rule``'s schedule (``None``: the trainer's) returned at step
    ``t``, as a finite float; anything else is an error naming the rule and the step (a
    ``None`` would otherwise fall back to the trainer's rate, a NaN or a string fail
    inside MXNet)."""
    if is_real(lr) and math.isfinite(lr):
        return float(lr)
    who = "the trainer's lr_scheduler" if rule is None else f"rule {rule!r}: its lr_scheduler"
    what = f"{who} returned {lr!r} ({type(lr).__name__}) at step {t}"
    advice = "a schedule must return a finite learning rate (a float) for every step"
    if is_real(lr):
        raise InvalidValueError(f"{what}; {advice}", argument="lr_scheduler")
    raise InvalidTypeError(f"{what}; {advice}", argument="lr_scheduler")


def describe_schedule(schedule) -> str:
    """A short human name for a schedule, for tables."""
    if schedule is None:
        return ""
    name = getattr(schedule, "__name__", None) or type(schedule).__name__
    if is_mx_scheduler(schedule):
        return f"{name}(base_lr={schedule.base_lr:g})"
    return name


def fingerprint(schedule: Callable) -> str:
    """A schedule as declared: a function's qualified name, or an object's class and
    settings (two trainers, or a trainer and a states file, compare schedules by it)."""
    if hasattr(schedule, "__code__") or not hasattr(schedule, "__dict__"):
        name = getattr(schedule, "__qualname__", None) or repr(schedule)
        return f"{getattr(schedule, '__module__', None)}.{name}"
    settings = ", ".join(f"{k}={v!r}" for k, v in sorted(vars(schedule).items()))
    return f"{type(schedule).__qualname__}({settings})"


def picklable(obj: Any) -> bool:
    """Whether ``obj`` pickles (a lambda or a local function does not)."""
    try:
        pickle.dumps(obj)
        return True
    except Exception:
        return False


class Unsaved:
    """Stands in, in a states file, for a schedule that could not be pickled: its rule and
    what it was (:func:`fingerprint`), for the messages of a trainer that loads the file."""

    def __init__(self, rule: Optional[str], schedule: Optional[str] = None):
        self.rule = rule
        self.schedule = schedule

    def __repr__(self) -> str:
        return f"Unsaved(rule={self.rule!r})"

    def describe(self) -> str:
        """What the schedule was (files written before 0.2 do not say)."""
        return getattr(self, "schedule", None) or "a schedule that could not be pickled"

    def __call__(self, step: int) -> float:
        raise UnsupportedError(f"the schedule of rule {self.rule!r} ({self.describe()}) was not "
                               "saved (it could not be pickled); load these states into a "
                               "trainer that has that rule")


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

    Parameters
    ----------
    max_update : int
        The update at which the fall ends (>= 1).
    cut_frac : float
        The fraction of ``max_update`` spent rising, in (0, 1).
    ratio : float
        How much smaller the lowest rate is than the peak (> 0).
    base_lr : float
        The peak; a rule that carries the schedule sets it to its own rate.

    Raises
    ------
    InvalidValueError
        A count or fraction out of range.

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, SlantedTriangular
    >>> schedule = SlantedTriangular(100, cut_frac=0.1, ratio=32, base_lr=0.32)
    >>> [round(schedule(t), 4) for t in (0, 5, 10, 55, 100)]
    [0.01, 0.165, 0.32, 0.165, 0.01]
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
    ...                            layers={-1: {"lr_scheduler": SlantedTriangular(100)}})
    >>> trainer.explain()["net_dense0_weight"]["schedule"]  # peaks at the rule's rate
    'SlantedTriangular(base_lr=0.1)'
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
    """Smith's one-cycle rate (cosine form): a warm-up to ``base_lr``, then a long fall.

    From ``base_lr / div`` up to ``base_lr`` over ``pct_start * max_update``
    updates, then down to ``base_lr / final_div`` at ``max_update`` (and stays
    there). ``base_lr`` is the peak, so a rule's rate becomes the peak of its copy;
    ``fine_tune`` gives each block one.

    Parameters
    ----------
    max_update : int
        The update at which the fall ends (>= 1).
    pct_start : float
        The fraction of ``max_update`` spent rising, in (0, 1).
    div : float
        The starting rate is ``base_lr / div`` (> 0).
    final_div : float
        The final rate is ``base_lr / final_div`` (> 0).
    base_lr : float
        The peak; a rule that carries the schedule sets it to its own rate.

    Raises
    ------
    InvalidValueError
        A count or fraction out of range.

    Examples
    --------
    >>> from gluon_finetune import OneCycle
    >>> schedule = OneCycle(100, pct_start=0.3, base_lr=0.1)
    >>> [round(schedule(t), 6) for t in (0, 30, 100)]
    [0.004, 0.1, 1e-05]
    """

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
