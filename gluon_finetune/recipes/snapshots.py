"""Everything a trial run can change in a network, captured and put back bit for bit.

``lr_find`` trains on the user's network (its forward pass is the thing being
measured), so what that training touches is saved first and restored after,
even when the run fails: every parameter's arrays on every context (weights,
BatchNorm running statistics, gradient buffers and their "fresh" flags),
each ``Parameter``'s ``lr_mult``/``wd_mult``/``grad_req`` and its trainer
back-pointer (``gluon.Trainer`` sets it when it is built), the BatchNorm
modes (of layers, and of BatchNorm nodes inside SymbolBlocks), and NumPy's
and Python's random states (a shuffling ``DataLoader`` draws from NumPy).
MXNet's own random generator (Dropout, ``mx.random`` augmentation) cannot be
read back in MXNet 1.9.1, so it is not restored.
"""
from __future__ import annotations

import random
from typing import Iterable, List

import numpy as np
from mxnet import gluon

from ..trainer import bn_state, restore_bn_state

__all__ = ["Snapshot", "unique_params"]


def unique_params(*groups: Iterable[gluon.Parameter]) -> List[gluon.Parameter]:
    """The parameters of all groups, each once (shared parameters are one object)."""
    seen, out = set(), []
    for group in groups:
        for param in group:
            if id(param) not in seen:
                seen.add(id(param))
                out.append(param)
    return out


class _ParamState:
    """One parameter: its settings and a copy of each of its arrays."""

    def __init__(self, param: gluon.Parameter):
        self.param = param
        self.settings = (param.lr_mult, param.wd_mult, param.grad_req)
        self.trainer = param._trainer
        self.data = [array.copy() for array in param.list_data()]
        trains = param.grad_req != "null"  # only then has an array a gradient (and a flag)
        self.fresh = [array._fresh_grad for array in param.list_data()] if trains else []
        self.grad = [array.copy() for array in param.list_grad()] if trains else []

    def restore(self) -> None:
        param = self.param
        lr_mult, wd_mult, grad_req = self.settings
        if param.grad_req != grad_req:  # never changed by lr_find; set back all the same
            param.grad_req = grad_req
        param.lr_mult, param.wd_mult = lr_mult, wd_mult
        param._trainer = self.trainer
        for saved, array in zip(self.data, param.list_data()):
            saved.copyto(array)
        if self.grad:
            for saved, array in zip(self.grad, param.list_grad()):
                saved.copyto(array)
            for array, fresh in zip(param.list_data(), self.fresh):
                array._fresh_grad = fresh


class Snapshot:
    """A restorable copy of what training can change in ``net`` and ``params``.

    Parameters
    ----------
    net : Block
        The network (all its parameters, and its BatchNorm layers' modes).
    params : iterable of Parameter, optional
        More parameters to include (e.g. a trainer's that are not in ``net``).

    Examples
    --------
    >>> import mxnet as mx
    >>> net = mx.gluon.nn.Dense(2, in_units=3, prefix="dense_")
    >>> net.initialize()
    >>> before = net.weight.data().asnumpy()
    >>> snap = Snapshot(net)
    >>> net.weight.set_data(mx.nd.zeros((2, 3)))
    >>> snap.restore()
    >>> bool((net.weight.data().asnumpy() == before).all())
    True
    """

    def __init__(self, net: gluon.Block, params: Iterable[gluon.Parameter] = ()):
        self._params = [_ParamState(p) for p in
                        unique_params(net.collect_params().values(), params)]
        self._net = net
        self._bn = bn_state(net)
        self._numpy = np.random.get_state()
        self._python = random.getstate()

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken."""
        for state in self._params:
            state.restore()
        restore_bn_state(self._net, self._bn)
        np.random.set_state(self._numpy)
        random.setstate(self._python)
