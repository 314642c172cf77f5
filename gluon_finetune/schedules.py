"""Schedule helpers shared by the trainer and the reports."""
from __future__ import annotations

import copy
from typing import Callable

__all__ = ["is_mx_scheduler", "rebased_copy", "describe_schedule"]


def is_mx_scheduler(schedule) -> bool:
    """An ``mx.lr_scheduler.LRScheduler`` (or look-alike): it has a ``base_lr`` to set."""
    return callable(schedule) and hasattr(schedule, "base_lr")


def rebased_copy(schedule: Callable, base_lr: float) -> Callable:
    """A private copy of ``schedule`` whose peak rate is ``base_lr``.

    MXNet schedulers keep state (FactorScheduler decays ``base_lr`` in place),
    so each rule gets its own copy. Besides ``base_lr``, PolyScheduler and
    CosineScheduler cache ``base_lr_orig`` and every scheduler caches
    ``warmup_final_lr`` at construction; they are moved along, otherwise the
    warm-up would end at the old rate. A plain callable gives absolute rates
    and is copied as it is.
    """
    try:
        fresh = copy.deepcopy(schedule)
    except Exception:  # an uncopyable callable: it is used as given
        fresh = schedule
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
