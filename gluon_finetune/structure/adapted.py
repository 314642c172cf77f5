"""What adapters (LoRA) change in a network's structure: locked parameters, and adapter
parameters that belong to the weight they adapt.

A locked parameter is trainable by nature but held fixed by an adapter method.
It is marked never-trainable the way MXNet marks BatchNorm's running statistics
(``differentiable=False``): MXNet itself then keeps its ``grad_req`` at
``'null'``, so no rule, ``unfreeze`` or plain ``grad_req = 'write'`` can thaw it,
and every part of this package that asks
:func:`~gluon_finetune.structure.index.can_train` sees it as never trainable.
Unlike a running statistic it still counts for the block list: a block whose
weights are all locked stays a block, so indices mean the same blocks before
and after adapters are added. :func:`unlock` gives back what the parameter had.

An adapter parameter belongs to its weight (:func:`belong`): wherever a block
list or a rule names the weight by itself (a parameter a block owns, such as
BERT's ``encoder.position_weight``), its adapters come along.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from mxnet import gluon

from .._compat import is_differentiable, set_differentiable

__all__ = ["lock", "unlock", "is_locked", "belong", "part", "weight_of", "adapters_of"]

_SAVED = "_finetune_locked"  # on the Parameter: (differentiable, grad_req) before the lock
_WEIGHT = "_finetune_adapts"  # on an adapter: the weight it adapts
_ADAPTERS = "_finetune_adapters"  # on an adapted weight: its adapters


def is_locked(param: gluon.Parameter) -> bool:
    """Whether ``param`` is locked (see the module docstring)."""
    return _SAVED in param.__dict__


def lock(param: gluon.Parameter) -> bool:
    """Lock ``param``; False (and nothing changes) if it was locked already."""
    if is_locked(param):
        return False
    saved: Tuple[bool, str] = (is_differentiable(param), param.grad_req)
    param.__dict__[_SAVED] = saved
    set_differentiable(param, False)
    param.grad_req = "null"  # MXNet drops the gradient buffer of a non-differentiable one
    return True


def unlock(param: gluon.Parameter) -> bool:
    """Give ``param`` back its own ``differentiable`` flag and ``grad_req``; False if it
    was not locked."""
    saved = param.__dict__.pop(_SAVED, None)
    if saved is None:
        return False
    set_differentiable(param, saved[0])
    param.grad_req = saved[1]
    return True


def belong(adapters: Sequence[gluon.Parameter], weight: gluon.Parameter) -> None:
    """Record that ``adapters`` belong to ``weight``."""
    for adapter in adapters:
        adapter.__dict__[_WEIGHT] = weight
    weight.__dict__[_ADAPTERS] = tuple(adapters)


def part(weight: gluon.Parameter) -> None:
    """Undo :func:`belong` for ``weight``'s adapters."""
    for adapter in weight.__dict__.pop(_ADAPTERS, ()):
        adapter.__dict__.pop(_WEIGHT, None)


def weight_of(param: gluon.Parameter) -> Optional[gluon.Parameter]:
    """The weight ``param`` adapts (None: it is no adapter)."""
    return param.__dict__.get(_WEIGHT)


def adapters_of(weight: gluon.Parameter) -> Tuple[gluon.Parameter, ...]:
    """The adapters that belong to ``weight`` (empty: none)."""
    return weight.__dict__.get(_ADAPTERS, ())
