"""One adapted weight: its adapters, the forward that adds their update, and the merge.

A weight ``W`` of shape ``(fan_out, ...)`` gets two parameters in the block
that owns it: ``NAME_lora_a`` of shape ``(rank, fan_in)`` (``fan_in`` = the
product of ``W``'s other dimensions) and ``NAME_lora_b`` of shape
``(fan_out, rank)``, zeros at first. The block's ``hybrid_forward`` is given
``W + (B · A).reshape(W.shape) * (alpha / rank)`` in place of ``W``, by
whatever path Gluon calls it (imperative, hybridized, traced), so layers that
own their weights and use them inside ``hybrid_forward`` (GluonNLP's attention
cells concatenate ``query_weight``, ``key_weight`` and ``value_weight``) are
adapted as plainly as a ``Dense``. ``B = 0`` makes the update exactly zero, so
the outputs are bit-identical until the adapters train.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import mxnet as mx
from mxnet import gluon
from mxnet.util import is_np_array

from ..structure.adapted import belong, part
from ._blocks import contexts, has_data, register, unregister

__all__ = ["Adapter", "LoraForward", "adapters_of", "attach", "detach", "merged_weight",
           "shape_known"]

_RECORD = "_finetune_lora"  # on an adapted block: {weight attribute: Adapter}
# PEFT's A initialisation (kaiming_uniform with a=sqrt(5)): uniform in +-1/sqrt(fan_in)
_A_INIT = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1)


@dataclass(frozen=True)
class Adapter:
    """The adapters of one weight: ``weight`` is used as ``weight + scale * b @ a``."""

    attr: str                 # the weight's attribute in its block ("weight", "query_weight")
    weight: gluon.Parameter
    a: gluon.Parameter        # (rank, fan_in)
    b: gluon.Parameter        # (fan_out, rank), zeros at first
    rank: int
    alpha: float

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def a_attr(self) -> str:
        return f"{self.attr}_lora_a"

    @property
    def b_attr(self) -> str:
        return f"{self.attr}_lora_b"


def adapters_of(block: gluon.Block) -> Dict[str, Adapter]:
    """The block's adapters by weight attribute (empty when it has none)."""
    return block.__dict__.get(_RECORD, {})


def shape_known(param: gluon.Parameter) -> bool:
    shape = param.shape
    return shape is not None and len(shape) > 0 and all(d > 0 for d in shape)


def _fan_in(shape: Tuple[int, ...]) -> int:
    """The product of the dimensions after the first; 0 while one is unknown."""
    out = 1
    for d in shape[1:]:
        out *= max(int(d), 0)
    return out


def _target_shape(adapter: Adapter) -> Tuple[int, ...]:
    """The weight's shape for the graph, its one unknown dimension (if any) as -1."""
    return tuple(int(d) if d > 0 else -1 for d in adapter.weight.shape)


def adapted(F, w, a, b, adapter: Adapter, forward: Optional[LoraForward] = None):  # noqa: N803
    """``w + reshape(b @ a) * scale`` in ``F`` (``mx.nd`` or ``mx.sym``), for classic arrays
    and symbols or, after ``npx.set_np()``, NumPy ones (computed on classic views)."""
    if is_np_array():
        w, a, b = (v.as_nd_ndarray() for v in (w, a, b))
        return _adapted(F, w, a, b, adapter, forward).as_np_ndarray()
    return _adapted(F, w, a, b, adapter, forward)


def _adapted(F, w, a, b, adapter: Adapter, forward: Optional[LoraForward]):  # noqa: N803
    F = mx.sym if isinstance(w, mx.sym.Symbol) else mx.nd  # noqa: N806 (classic operators)
    if forward is not None and isinstance(w, mx.sym.Symbol) and not shape_known(adapter.a):
        # Deferred shapes: a's fan-in must come from w's, and dot infers no input from its
        # output. An elementwise sum infers both sides, so a gets 0 * (rank rows shaped
        # like w's first): values and gradients unchanged (operators that need whole
        # shapes, such as FullyConnected, fail on w's partial one). The graph is rebuilt
        # without it once the shapes are known (network.py's forward hook).
        row = F.slice_axis(F.reshape(w, shape=(0, -1)), axis=0, begin=0, end=1)
        a = a + F.repeat(row, repeats=adapter.rank, axis=0) * 0
        forward.provisional = True
    update = F.dot(b, a)
    if len(adapter.weight.shape) != 2:
        shape = w.shape if isinstance(w, mx.nd.NDArray) else _target_shape(adapter)
        update = F.reshape(update, shape=shape)
    return w + update * adapter.scale


class LoraForward:
    """An adapted block's ``hybrid_forward``: the class's own, given adapted weights.

    An object (not a closure) so that ``copy.deepcopy`` of a network binds the
    copy to the copied block; its signature is the class's, so tracing counts
    the same inputs.
    """

    def __init__(self, block: gluon.HybridBlock):
        self.block = block
        self.provisional = False  # the cached graph holds the deferred-shape probe

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(type(self.block).hybrid_forward.__get__(self.block))

    def __call__(self, F, *args, **kwargs):  # noqa: N803 (Gluon's name)
        for attr, adapter in adapters_of(self.block).items():
            a, b = kwargs.pop(adapter.a_attr), kwargs.pop(adapter.b_attr)
            kwargs[attr] = adapted(F, kwargs[attr], a, b, adapter, self)
        return type(self.block).hybrid_forward(self.block, F, *args, **kwargs)


def _new_params(weight: gluon.Parameter, rank: int) -> Tuple[gluon.Parameter, gluon.Parameter]:
    shape = tuple(int(d) for d in weight.shape)
    a = gluon.Parameter(f"{weight.name}_lora_a", shape=(rank, _fan_in(shape)),
                        dtype=weight.dtype, init=_A_INIT, allow_deferred_init=True)
    b = gluon.Parameter(f"{weight.name}_lora_b", shape=(shape[0], rank), dtype=weight.dtype,
                        init=mx.init.Zero(), allow_deferred_init=True)
    where = contexts(weight)
    if where is not None:  # else net.initialize() initialises them with the weight
        a.initialize(ctx=where)
        b.initialize(ctx=where)
    return a, b


def attach(blocks, attr: str, weight: gluon.Parameter, rank: int, alpha: float) -> Adapter:
    """Give ``weight`` (registered as ``attr`` in each of ``blocks``) its adapters."""
    a, b = _new_params(weight, rank)
    belong((a, b), weight)
    adapter = Adapter(attr, weight, a, b, rank, float(alpha))
    for block in blocks:
        register(block, adapter.a_attr, a, after=weight.name)
        register(block, adapter.b_attr, b, after=a.name)
        if _RECORD not in block.__dict__:
            object.__setattr__(block, _RECORD, {})
            object.__setattr__(block, "hybrid_forward", LoraForward(block))
        block.__dict__[_RECORD][attr] = adapter
    return adapter


def detach(block: gluon.Block, attr: str) -> None:
    """Remove the adapters of ``block``'s weight ``attr``; the last one restores the
    class's ``hybrid_forward``."""
    adapter = block.__dict__[_RECORD].pop(attr)
    part(adapter.weight)
    unregister(block, adapter.a_attr)
    unregister(block, adapter.b_attr)
    if not block.__dict__[_RECORD]:
        del block.__dict__[_RECORD]
        del block.__dict__["hybrid_forward"]


def merged_weight(adapter: Adapter) -> Optional[mx.nd.NDArray]:
    """``W + reshape(B @ A) * scale`` computed as the adapted forward computes it (so the
    merged network reproduces it); None while the weight has no data yet."""
    if not (has_data(adapter.weight) and has_data(adapter.a)):
        return None
    ctx = adapter.weight.list_ctx()[0]
    return adapted(mx.nd, adapter.weight.data(ctx), adapter.a.data(ctx), adapter.b.data(ctx),
                   adapter)
