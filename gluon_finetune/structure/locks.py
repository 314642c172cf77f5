"""Locked parameters: trainable by nature, held fixed by an adapter method (LoRA).

A locked parameter is marked never-trainable the way MXNet marks BatchNorm's
running statistics (``differentiable=False``): MXNet itself then keeps its
``grad_req`` at ``'null'``, so no rule, ``unfreeze`` or plain
``grad_req = 'write'`` can thaw it, and every part of this package that asks
:func:`~gluon_finetune.structure.index.can_train` sees it as never trainable.
Unlike a running statistic it still counts for the block list: a block whose
weights are all locked stays a block, so indices mean the same blocks before
and after adapters are added. :func:`unlock` gives back what the parameter had.
"""
from __future__ import annotations

from typing import Tuple

from mxnet import gluon

__all__ = ["lock", "unlock", "is_locked"]

_SAVED = "_finetune_locked"  # on the Parameter: (differentiable, grad_req) before the lock


def is_locked(param: gluon.Parameter) -> bool:
    """Whether ``param`` is locked (see the module docstring)."""
    return _SAVED in param.__dict__


def lock(param: gluon.Parameter) -> bool:
    """Lock ``param``; False (and nothing changes) if it was locked already."""
    if is_locked(param):
        return False
    saved: Tuple[bool, str] = (param._differentiable, param.grad_req)
    param.__dict__[_SAVED] = saved
    param._differentiable = False
    param.grad_req = "null"  # MXNet drops the gradient buffer of a non-differentiable one
    return True


def unlock(param: gluon.Parameter) -> bool:
    """Give ``param`` back its own ``differentiable`` flag and ``grad_req``; False if it
    was not locked."""
    saved = param.__dict__.pop(_SAVED, None)
    if saved is None:
        return False
    param._differentiable = saved[0]
    param.grad_req = saved[1]
    return True
