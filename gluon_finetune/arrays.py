"""Arrays and symbols in either of MXNet's array modes: classic NDArray or NumPy mode.

MXNet 1.9 has two array types. After ``npx.set_np()`` (d2l.ai, MXNet 2-style
code) Gluon layers take and return ``mx.np.ndarray``; they refuse classic
``mx.nd`` arrays and symbols, and ``mx.np.ndarray`` has no ``asscalar``.
Everything the package makes itself goes through these helpers, so that it
works in both modes without changing the mode.
"""
from __future__ import annotations

from typing import Sequence

import mxnet as mx
from mxnet.util import is_np_array

__all__ = ["symbol_input", "scalar", "concat", "as_array", "on_context"]


def symbol_input(name: str) -> mx.sym.Symbol:
    """A symbol variable a Gluon block accepts in the current mode (a NumPy symbol after
    ``npx.set_np()``)."""
    var = mx.sym.var(name)
    return var.as_np_ndarray() if is_np_array() else var


def scalar(array) -> float:
    """The one value of a size-1 array of either kind (``mx.np.ndarray`` has no
    ``asscalar``), as a Python float."""
    return float(array.asnumpy().reshape(-1)[0])


def concat(arrays: Sequence, axis: int = 0):
    """Arrays of one kind joined along ``axis``, as an array of that kind."""
    if isinstance(arrays[0], mx.np.ndarray):
        return mx.np.concatenate(list(arrays), axis=axis)
    return mx.nd.concat(*arrays, dim=axis)


def as_array(value):
    """``value`` as an array of the current mode (arrays of either kind are converted,
    anything else goes through the mode's ``array``)."""
    if is_np_array():
        if isinstance(value, mx.np.ndarray):
            return value
        return value.as_np_ndarray() if isinstance(value, mx.nd.NDArray) else mx.np.array(value)
    if isinstance(value, mx.np.ndarray):
        return value.as_nd_ndarray()
    return value if isinstance(value, mx.nd.NDArray) else mx.nd.array(value)


def on_context(array, ctx):
    """``array`` on ``ctx`` (NumPy arrays renamed ``as_in_context`` to ``as_in_ctx`` and warn
    on every call of the old name; classic arrays have only the old one)."""
    return array.as_in_ctx(ctx) if isinstance(array, mx.np.ndarray) else array.as_in_context(ctx)
