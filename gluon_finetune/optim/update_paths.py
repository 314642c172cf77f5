"""Which of MXNet's two update paths a trainer takes: the rule, kept pure.

MXNet applies an optimizer either per array (one operator call per
parameter) or fused (``multi_sgd_mom_update`` and kin: one call per chunk of
``MXNET_OPTIMIZER_AGGREGATION_SIZE`` arrays, 4 by default). Rule: per array
for SGD with momentum when every device is a CPU and the arrays are not tiny,
MXNet's default otherwise.

Why (bench/README.md): on CPU the fused kernel is 1.3-1.9x slower per
element than the per-array ``sgd_mom_update`` kernel. It walks every element
index once and, for each, loops over the arrays of the chunk, reading rates
and pointers from a parameter struct; the per-array kernel is a flat loop.
Fusing saves only Python dispatch, which matters for tiny arrays alone:
about 9 us an array against about 1 ns an element (mobilenet0.25, whose 83
arrays hold 2,600 elements on average, steps faster fused; mobilenet1.0, at
39,000, and resnet18_v1 take 35-40% less time per array). Break-even is near
9,000 elements an array; per array is taken from ``PER_ARRAY_MIN_MEAN_SIZE``
on, where it clearly wins.
MXNet's own SGD never reaches the per-array kernel for dense arrays (it
sends a single array through the fused kernel with ``num_weights=1``), so our
optimizer calls it itself (``optimizer._PerArraySGDMixin``): same formula,
same order of operations, bit-identical weights. Without momentum the
per-array kernel (``sgd_update``) rounds differently, so there is nothing
faster to take and MXNet's default stays. On a GPU the fused path saves
kernel launches; MXNet's default stays.

LARS and LAMB have only a fused path that works the same: LARS' per-array
path fails in MXNet 1.9.1 and LAMB's differs from its fused one in the last
bit, so 'per_array' is refused for them rather than silently changing results.
"""
from __future__ import annotations

import math
import os
from typing import List, Mapping, Optional, Sequence

from mxnet import optimizer as mx_optimizer

from ..errors import InvalidValueError

__all__ = ["UPDATE_PATHS", "check_update_path", "choose_update_path", "apply_update_path",
           "known_sizes"]

UPDATE_PATHS = ("auto", "fused", "per_array")
ENV = "MXNET_OPTIMIZER_AGGREGATION_SIZE"
_BIT_IDENTICAL = (mx_optimizer.SGD,)  # both paths, same weights (tests/test_trainer_rates.py)
_FUSED_ONLY = (mx_optimizer.LARS, mx_optimizer.LAMB)
PER_ARRAY_MIN_MEAN_SIZE = 16384  # elements an array, on average (measured break-even ~9,000)


def check_update_path(requested: str, optimizer) -> None:
    """Raise ValueError when ``requested`` is not a path ``optimizer`` can take unchanged."""
    if requested not in UPDATE_PATHS:
        raise InvalidValueError(f"update_path must be one of {UPDATE_PATHS}, got {requested!r}")
    name = type(optimizer).__name__
    if requested == "fused" and not isinstance(optimizer, _BIT_IDENTICAL + _FUSED_ONLY):
        raise InvalidValueError(f"update_path='fused': {name} has no fused multi-tensor update in "
                                "MXNet (only SGD, LARS and LAMB do)")
    if requested == "per_array" and isinstance(optimizer, _FUSED_ONLY):
        raise InvalidValueError(f"update_path='per_array': {name}'s per-array update in MXNet "
                                "1.9.1 fails (LARS) or differs from its fused one (LAMB); use "
                                "'auto'")


def choose_update_path(optimizer, device_types: Sequence[str], requested: str = "auto",
                       array_sizes: Optional[Sequence[int]] = None,
                       environ: Optional[Mapping[str, str]] = None) -> str:
    """The path the rule gives: ``'fused'`` or ``'per_array'``.

    ``'auto'``: per array for SGD-family optimizers with momentum when every
    device is a CPU and the arrays (``array_sizes``: elements of each, those
    whose shapes are known) hold on average at least
    ``PER_ARRAY_MIN_MEAN_SIZE`` elements, unless
    ``MXNET_OPTIMIZER_AGGREGATION_SIZE`` is set in ``environ`` (an explicit
    choice is respected); otherwise what MXNet does (``'fused'`` when
    ``optimizer.aggregate_num > 0``). No sizes known: per array.

    Examples
    --------
    >>> choose_update_path(mx_optimizer.SGD(momentum=0.9), ["cpu"], environ={})
    'per_array'
    >>> choose_update_path(mx_optimizer.SGD(momentum=0.9), ["gpu"], environ={})
    'fused'
    >>> choose_update_path(mx_optimizer.SGD(), ["cpu"], environ={})  # no faster kernel
    'fused'
    >>> choose_update_path(mx_optimizer.SGD(momentum=0.9), ["cpu"],
    ...                    array_sizes=[128, 2048, 9216], environ={})  # tiny: dispatch wins
    'fused'
    """
    check_update_path(requested, optimizer)
    if requested != "auto":
        return requested
    environ = os.environ if environ is None else environ
    on_cpu = bool(device_types) and all(d == "cpu" for d in device_types)
    faster = isinstance(optimizer, _BIT_IDENTICAL) and optimizer.momentum > 0 and \
        (not array_sizes or sum(array_sizes) >= PER_ARRAY_MIN_MEAN_SIZE * len(array_sizes))
    if on_cpu and faster and ENV not in environ:
        return "per_array"
    return "fused" if optimizer.aggregate_num > 0 else "per_array"


def known_sizes(params) -> List[int]:
    """Elements of each parameter whose shape is known (deferred ones are left out)."""
    return [math.prod(p.shape) for p in params if p.shape and min(p.shape) > 0]


def apply_update_path(optimizer, path: str, updaters=()) -> None:
    """Set ``optimizer.aggregate_num`` (and the updaters' flag) for ``path``."""
    if path == "per_array":
        optimizer.aggregate_num = 0
    elif optimizer.aggregate_num == 0:
        optimizer.aggregate_num = int(os.environ.get(ENV, "4"))
    for updater in updaters:  # gluon.Trainer made them before the choice
        updater.aggregate_updates = optimizer.aggregate_num > 0
