"""Arrays and symbols in either of MXNet's array modes: classic NDArray or NumPy mode.

MXNet 1.9 has two array types. After ``npx.set_np()`` (d2l.ai, MXNet 2-style
code) Gluon layers take and return ``mx.np.ndarray``; they refuse classic
``mx.nd`` arrays and symbols, and ``mx.np.ndarray`` has no ``asscalar``.
Everything the package makes itself goes through these helpers, so that it
works in both modes without changing the mode.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import mxnet as mx
from mxnet import gluon
from mxnet.gluon.block import _regroup
from mxnet.util import is_np_array

from .._compat import (
    cached_graph,
    children,
    compose,
    out_format,
    param_data,
    params_by_path,
    storage_type,
)

__all__ = ["symbol_input", "symbolic_call", "scalar", "concat", "as_array", "on_context",
           "split_to", "save_parameters"]


def symbol_input(name: str) -> mx.sym.Symbol:
    """A symbol variable a Gluon block accepts in the current mode (a NumPy symbol after
    ``npx.set_np()``)."""
    var = mx.sym.var(name)
    return var.as_np_ndarray() if is_np_array() else var


def symbolic_call(block: gluon.Block, *inputs: mx.sym.Symbol) -> Any:
    """``block(*inputs)`` on symbols (a trace: nothing computed, nothing changed).

    In NumPy mode MXNet 1.9.1's ``SymbolBlock``, called on symbols, composes them into
    a shallow copy of its own graph (a NumPy symbol's ``__deepcopy__`` shares the
    nodes), so its graph keeps the trace's inputs and every later forward fails;
    then it cannot return a single output. For the call, each ``SymbolBlock`` in
    ``block`` composes into a real copy of its graph instead.
    """
    if not is_np_array():
        return block(*inputs)
    imported = [b for b in _descendants(block) if isinstance(b, gluon.SymbolBlock)]
    for b in imported:
        # an instance attribute: Block.__call__ looks forward up on the instance
        b.__dict__["forward"] = _composing_forward(b)
    try:
        return block(*inputs)
    finally:
        for b in imported:
            b.__dict__.pop("forward", None)


def _descendants(block: gluon.Block) -> Iterator[gluon.Block]:
    yield block
    for child in children(block).values():
        yield from _descendants(child)


def _composing_forward(block: gluon.SymbolBlock):
    def forward(x, *args):
        if not isinstance(x, mx.sym.Symbol):  # arrays: the block's own forward
            return type(block).forward(block, x, *args)
        names, graph = cached_graph(block)
        own = mx.sym.load_json(graph.tojson()).as_np_ndarray()  # nodes of its own
        compose(own, **{n.name: v for n, v in zip(names, (x,) + args)})
        # as SymbolBlock.forward groups them (list() of a one-output NumPy symbol fails)
        return _regroup([own[i] for i in range(own.num_outputs)], out_format(block))
    return forward


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


def split_to(array, contexts: Sequence[mx.Context]) -> list:
    """``array`` split along its first axis, one part on each context, as
    ``gluon.utils.split_and_load`` (which calls ``as_in_context``: in NumPy mode a
    warning at every batch) does it."""
    if len(contexts) == 1:
        return [on_context(array, contexts[0])]
    parts = gluon.utils.split_data(array, len(contexts), even_split=False)
    return [on_context(part, ctx) for part, ctx in zip(parts, contexts)]


def save_parameters(net: gluon.Block, fname: str) -> None:
    """Write the file ``net.save_parameters(fname)`` writes, byte for byte, a few times
    faster where every parameter is one dense array on the CPU.

    Gluon copies each array before saving it (to average the copies of several devices):
    83 operator calls for a MobileNet, most of the cost of a checkpoint of a small
    network. One CPU array needs no copy (``nd.save`` waits for pending writes itself);
    anything else goes through Gluon's own method.
    """
    arrays = {}
    for path, param in params_by_path(net).items():
        data = param_data(param)
        if storage_type(param) != "default" or not data or len(data) != 1 \
                or data[0].context.device_type != "cpu":
            net.save_parameters(fname)
            return
        arrays[path] = data[0]
    (mx.npx.save if is_np_array() else mx.nd.save)(fname, arrays)
