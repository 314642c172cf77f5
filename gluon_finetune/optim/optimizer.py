"""A picklable optimizer wrapper that gives each parameter its own rate.

``layerwise(opt)`` turns any MXNet optimizer into an instance of a subclass
(``LayerwiseSGD``, ``LayerwiseAdam``, ...) that overrides only ``_get_lrs``
and ``_get_wds``. Every MXNet update path (fused multi-tensor or per array,
on the workers or on a kvstore) asks those two methods, so one override
serves them all, bit for bit.

The per-index table lives in the optimizer's own ``__dict__`` (``layerwise``,
a ``rates.LayerwiseState``): MXNet drops ``param_dict`` when it pickles an
optimizer (to a kvstore server or into ``save_states``), so
``Parameter.lr_mult`` alone would be lost there.

This module imports only ``mxnet.optimizer``: a kvstore server unpickles the
optimizer while ``import mxnet`` is still running, when ``mxnet.gluon``
cannot be imported yet.

On a kvstore server (``DMLC_ROLE=server``) each optimizer the workers send
replaces the server's updater, whose states (momentum) would start empty.
A re-sent optimizer (``layerwise.resend``: the indices to start fresh) takes
over the previous one's update counts and states instead, so that
``set_learning_rate`` or ``set_layers`` mid-training keeps momentum on the
servers as it does locally.
"""
from __future__ import annotations

import copy
import os
from typing import Dict, List, Sequence

from mxnet.optimizer import SGD, Optimizer
from mxnet.optimizer import optimizer as _mx_opt  # its operators, without mxnet.gluon

from ..errors import InvalidTypeError
from .rates import LayerwiseState

__all__ = ["layerwise", "layerwise_class", "is_layerwise", "base_class", "preview_lrs",
           "fresh_layerwise"]


class _LayerwiseMixin:
    """Per-index learning rates and weight decays from ``self.layerwise``, the
    :class:`~gluon_finetune.rates.LayerwiseState` that owns them."""

    layerwise: LayerwiseState

    def _get_lrs(self, indices):
        # The base class always runs: some optimizers keep state in it (LARS tracks its
        # last and current rate there) and it calls the trainer's scheduler as stock does.
        return self.layerwise.lrs(self, indices, super()._get_lrs(indices))

    def _get_wds(self, indices):
        return self.layerwise.wds(self, indices, super()._get_wds(indices))

    def create_state_multi_precision(self, index, weight):
        if not _on_server():
            return super().create_state_multi_precision(index, weight)
        # A server builds a new updater (empty states) for every optimizer it receives;
        # the states live here instead, so that a re-sent optimizer finds them again.
        if index not in _SERVER["states"]:
            _SERVER["states"][index] = super().create_state_multi_precision(index, weight)
        return _SERVER["states"][index]

    def __reduce__(self):
        return _rebuild, (base_class(self), self.__getstate__())


class _PerArraySGDMixin:
    """SGD-with-momentum's per-array path through MXNet's per-array kernel.

    MXNet 1.9.1's ``SGD._update_impl`` sends even one dense array through the
    multi-tensor kernel (``multi_sgd_mom_update`` with ``num_weights=1``); the
    flat per-array kernel ``sgd_mom_update`` serves only sparse arrays. Both
    compute ``mom = momentum*mom - lr*wd*w - lr*rescale*grad; w = w + mom`` in
    the same order, so the weights are bit-identical, and the per-array kernel
    is 1.3-1.9x faster on CPU (bench/fused_sgd.py). Not so without momentum:
    ``sgd_update`` computes ``(1 - lr*wd)*w - ...``, which rounds differently,
    so that case, lists (the fused path), sparse arrays and multi-precision go
    to MXNet's own code.
    """

    def _update_impl(self, indices, weights, grads, states, multi_precision=False):
        if isinstance(indices, (tuple, list)) or multi_precision or states is None or \
                weights.stype != "default" or grads.stype != "default":
            return super()._update_impl(indices, weights, grads, states, multi_precision)
        self._update_count(indices)
        lr, wd = self._get_lrs([indices])[0], self._get_wds([indices])[0]
        kwargs = {"rescale_grad": self.rescale_grad, "momentum": self.momentum}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        _mx_opt.sgd_mom_update(weights, grads, states, out=weights, lr=lr, wd=wd, **kwargs)
        return None


_CLASSES: Dict[type, type] = {}


def layerwise_class(base: type) -> type:
    """The ``Layerwise<Base>`` subclass of an optimizer class (made once, cached)."""
    if not (isinstance(base, type) and issubclass(base, Optimizer)):
        raise InvalidTypeError(f"expected an mxnet Optimizer class, got {base!r}")
    if issubclass(base, _LayerwiseMixin):
        return base
    cls = _CLASSES.get(base)
    if cls is None:
        # Only where SGD's own update runs: a subclass with its own update keeps it.
        stock_sgd = issubclass(base, SGD) and base._update_impl is SGD._update_impl
        mixins = (_LayerwiseMixin, _PerArraySGDMixin) if stock_sgd else (_LayerwiseMixin,)
        cls = type(f"Layerwise{base.__name__}", (*mixins, base),
                   {"__module__": __name__, "__doc__": f"{base.__name__} with per-layer rates."})
        _CLASSES[base] = cls
    return cls


def base_class(optimizer: Optimizer) -> type:
    """The MXNet optimizer class behind a layerwise optimizer."""
    cls = type(optimizer)
    return next(c for c in cls.__mro__[1:] if issubclass(c, Optimizer)
                and not issubclass(c, _LayerwiseMixin)) \
        if issubclass(cls, _LayerwiseMixin) else cls


def is_layerwise(optimizer) -> bool:
    return isinstance(optimizer, _LayerwiseMixin)


def layerwise(optimizer: Optimizer) -> Optimizer:
    """Make ``optimizer`` layerwise in place (same object, same state) and return it.

    With an empty table it behaves exactly like the original class.
    """
    if not isinstance(optimizer, Optimizer):
        raise InvalidTypeError(f"expected an mxnet Optimizer, got {type(optimizer).__name__}")
    if not is_layerwise(optimizer):
        optimizer.__class__ = layerwise_class(type(optimizer))
        optimizer.layerwise = LayerwiseState()
    return optimizer


def preview_lrs(optimizer: Optimizer, count: int, updated: Sequence[int], steps: int
                ) -> List[List[float]]:
    """The rates of indices ``0..count-1`` at each of the next ``steps`` updates.

    A copy of ``optimizer`` (its schedules, clocks and update counts copied, so
    the original is untouched) is stepped as training steps it: the
    ``updated`` indices' counts rise by one per update, then every rate is
    asked for, through the same ``_get_lrs`` that training calls.
    """
    sim = copy.copy(optimizer)  # MXNet's pickle path: param_dict dropped, the rest shared
    sim.param_dict = optimizer.param_dict
    sim.lr_scheduler = copy.deepcopy(optimizer.lr_scheduler)
    if is_layerwise(optimizer):
        sim.layerwise = copy.deepcopy(optimizer.layerwise)
    sim._all_index_update_counts = {}
    for device, counts in optimizer._all_index_update_counts.items():
        sim._all_index_update_counts[device] = dict(counts)
        if counts is optimizer._index_update_count:
            sim._index_update_count = sim._all_index_update_counts[device]
    if sim._index_update_count is optimizer._index_update_count:
        sim._index_update_count = dict(optimizer._index_update_count)
    indices = list(range(count))
    out = []
    for _ in range(steps):
        sim._update_count(list(updated))
        out.append(list(sim._get_lrs(indices)))
    return out


def fresh_layerwise(optimizer: Optimizer) -> Optimizer:
    """A new layerwise optimizer of ``optimizer``'s class with its hyperparameters.

    Nothing that training accumulates comes along: no states, no update counts,
    no schedule, an empty rate table and no ``param_dict``. ``optimizer`` is
    left as it is. ``lr_find`` sweeps the rate with it.

    Examples
    --------
    >>> import mxnet as mx
    >>> opt = mx.optimizer.SGD(learning_rate=0.1, momentum=0.9)
    >>> fresh = fresh_layerwise(opt)
    >>> type(fresh).__name__, fresh.momentum, fresh.num_update, fresh is opt
    ('LayerwiseSGD', 0.9, 0, False)
    """
    if not isinstance(optimizer, Optimizer):
        raise InvalidTypeError(f"expected an mxnet Optimizer, got {type(optimizer).__name__}")
    cls = layerwise_class(base_class(optimizer))
    fresh = cls.__new__(cls)
    skip = ("param_dict", "layerwise", "lr_scheduler", "_index_update_count",
            "_all_index_update_counts")
    fresh.__dict__.update(copy.deepcopy({k: v for k, v in optimizer.__dict__.items()
                                         if k not in skip}))
    fresh.param_dict, fresh.lr_scheduler, fresh.layerwise = {}, None, LayerwiseState()
    fresh.num_update = fresh.begin_num_update = 0
    fresh._index_update_count = {}
    fresh._all_index_update_counts = {0: fresh._index_update_count}
    return fresh


def _rebuild(base: type, state: dict) -> Optimizer:
    """Unpickling entry point (module level so that pickle can find it by name)."""
    optimizer = layerwise_class(base).__new__(layerwise_class(base))
    optimizer.__setstate__(state)
    if _on_server():
        _take_over(optimizer)
    return optimizer


# On a kvstore server: the optimizer in use and the updater states it made.
_SERVER: Dict[str, object] = {"optimizer": None, "states": {}}


def _on_server() -> bool:
    return os.environ.get("DMLC_ROLE") == "server"


def _take_over(optimizer: Optimizer) -> None:
    """Let ``optimizer`` (just received by this server) continue the previous one.

    A trainer's first optimizer starts from nothing. A re-sent one keeps the
    update counts (schedule clocks) and states, except for the indices in
    ``layerwise.resend`` (parameters frozen or thawed since: fresh state, as
    the trainer gives them locally).
    """
    previous, _SERVER["optimizer"] = _SERVER["optimizer"], optimizer
    fresh, optimizer.layerwise.resend = optimizer.layerwise.resend, None
    states = _SERVER["states"]
    if previous is None or fresh is None:
        states.clear()
        return
    for index in fresh:
        states.pop(index, None)
    optimizer._all_index_update_counts = {
        device: {i: n for i, n in counts.items() if i not in fresh}
        for device, counts in previous._all_index_update_counts.items()}
    optimizer._index_update_count = optimizer._all_index_update_counts.setdefault(0, {})
    optimizer.num_update = max(optimizer.num_update, previous.num_update)
