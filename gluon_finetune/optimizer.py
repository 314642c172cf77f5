"""A picklable optimizer wrapper that gives each parameter its own rate.

``layerwise(opt)`` turns any MXNet optimizer into an instance of a subclass
(``LayerwiseSGD``, ``LayerwiseAdam``, ...) that overrides only ``_get_lrs``
and ``_get_wds``. Every MXNet update path (fused multi-tensor or per array,
on the workers or on a kvstore) asks those two methods, so one override
serves them all, bit for bit.

The per-index table lives in the optimizer's own ``__dict__``: MXNet drops
``param_dict`` when it pickles an optimizer (to a kvstore server or into
``save_states``), so ``Parameter.lr_mult`` alone would be lost there.

This module imports only ``mxnet.optimizer``: a kvstore server unpickles the
optimizer while ``import mxnet`` is still running, when ``mxnet.gluon``
cannot be imported yet.

On a kvstore server (``DMLC_ROLE=server``) each optimizer the workers send
replaces the server's updater, whose states (momentum) would start empty.
A re-sent optimizer (``_layerwise_resend``: the indices to start fresh) takes
over the previous one's update counts and states instead, so that
``set_learning_rate`` or ``set_layers`` mid-training keeps momentum on the
servers as it does locally.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, NamedTuple, Optional

from mxnet.optimizer import SGD, Optimizer
from mxnet.optimizer import optimizer as _mx_opt  # its operators, without mxnet.gluon

__all__ = ["Rate", "layerwise", "layerwise_class", "is_layerwise", "base_class"]


class Rate(NamedTuple):
    """What one parameter index gets from the optimizer.

    ``lr_scheduler`` (if any) gives the rate as a function of the parameter's
    own update count plus ``start`` (the step it joined the schedule at, when
    it thawed mid-training; 0 if it restarts the schedule). Else ``fixed_lr``
    (an absolute rate from the rule) holds while the trainer has no scheduler
    of its own, so that 0.001 stays
    exactly 0.001 rather than ``0.01 * (0.001 / 0.01)``. Else the rate is the
    trainer's rate times ``lr_mult``. Both were set when the trainer's rate
    was ``ref_lr``; ``set_learning_rate`` rescales them by ``lr / ref_lr``.
    """

    rule: Optional[str]
    lr_mult: float
    wd_mult: float
    lr_scheduler: Optional[Callable] = None
    ref_lr: Optional[float] = None
    start: int = 0
    frozen: bool = False
    fixed_lr: Optional[float] = None


class _LayerwiseMixin:
    """Per-index learning rates and weight decays from ``self._layerwise_rates``."""

    _layerwise_rates: Dict[int, Rate]

    def _trainer_lr(self) -> float:
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def _clock(self, index: int, rate: Rate) -> int:
        # The parameter's own update count, not num_update: MXNet raises num_update
        # chunk by chunk within a step, so a parameter updated before the one with the
        # highest count would see the previous step, depending on the order of names.
        return self._index_update_count.get(index, self.begin_num_update) + rate.start

    def _rescaled(self, lr: float, rate: Rate) -> float:
        if rate.ref_lr and self.lr is not None and self.lr != rate.ref_lr:
            return lr * (self.lr / rate.ref_lr)
        return lr

    def _get_lrs(self, indices):
        # The base class always runs: some optimizers keep state in it (LARS tracks its
        # last and current rate there) and it calls the trainer's scheduler as stock does.
        lrs = super()._get_lrs(indices)
        rates = self._layerwise_rates
        if not rates:
            return lrs
        trainer_lr = None
        for k, index in enumerate(indices):
            rate = rates.get(index)
            if rate is None:
                continue
            if rate.lr_scheduler is not None:
                lrs[k] = self._rescaled(rate.lr_scheduler(self._clock(index, rate)), rate)
            elif rate.fixed_lr is not None and self.lr_scheduler is None:
                lrs[k] = self._rescaled(rate.fixed_lr, rate)
            else:
                if trainer_lr is None:  # same num_update: MXNet schedulers give the same rate
                    trainer_lr = self._trainer_lr()
                lrs[k] = trainer_lr * rate.lr_mult
        return lrs

    def _get_wds(self, indices):
        wds = super()._get_wds(indices)
        rates = self._layerwise_rates
        for k, index in enumerate(indices):
            rate = rates.get(index)
            if rate is not None:
                wds[k] = self.wd * rate.wd_mult
        return wds

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
        raise TypeError(f"expected an mxnet Optimizer class, got {base!r}")
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
        raise TypeError(f"expected an mxnet Optimizer, got {type(optimizer).__name__}")
    if not is_layerwise(optimizer):
        optimizer.__class__ = layerwise_class(type(optimizer))
        optimizer._layerwise_rates = {}
    return optimizer


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
    ``_layerwise_resend`` (parameters frozen or thawed since: fresh state, as
    the trainer gives them locally).
    """
    previous, _SERVER["optimizer"] = _SERVER["optimizer"], optimizer
    fresh = optimizer.__dict__.pop("_layerwise_resend", None)
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
