"""What ``LayerwiseTrainer``'s constructor accepts, checked once at the boundary.

``gluon.Trainer``'s own arguments (parameters, optimizer and its arguments,
kvstore settings) are checked here, before anything changes, with messages
that say what was expected and what was given; layer rules given in the
RFC's form (dicts inside ``optimizer_params``) are split from the real
optimizer arguments.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Dict, List, Optional, Tuple

from mxnet import gluon
from mxnet import optimizer as mx_optimizer
from mxnet.kvstore import KVStoreBase

from ..checks import InvalidTypeError, InvalidValueError, is_real
from ..errors import RuleError
from ..rules.keys import key_id
from ..rules.resolution import rule_items
from .horovod import check_not_horovod_optimizer

__all__ = ["net_and_params", "param_list", "split_rfc_rules", "merge_rules", "check_optimizer_args",
           "make_optimizer", "check_kvstore_args"]

# optimizer arguments whose value is a dict: never mistaken for an RFC-style layer rule
_DICT_ARGS = ("param_idx2name", "param_dict")


def net_and_params(params, net) -> Tuple[Optional[gluon.Block], List[gluon.Parameter]]:
    """(the network, the parameter list) from the trainer's ``params`` and ``net``."""
    if isinstance(params, gluon.Block):
        if net is not None and net is not params:
            raise InvalidValueError("params is a Block and net is another Block; pass one network")
        net, params = params, params.collect_params()
    if net is not None and not isinstance(net, gluon.Block):
        raise InvalidTypeError(f"net must be a gluon.Block, got {type(net).__name__}")
    return net, param_list(params)


def param_list(params) -> List[gluon.Parameter]:
    """As gluon.Trainer reads ``params``: a dict in sorted-key order, or a list."""
    if isinstance(params, (dict, gluon.ParameterDict)):
        params = [params[key] for key in sorted(params.keys())]
    if not isinstance(params, (list, tuple)):
        raise InvalidValueError("First argument must be a list or dict of Parameters, or a "
                                f"Block, got {type(params)}.")
    for p in params:
        if not isinstance(p, gluon.Parameter):
            raise InvalidValueError("First argument must be a list or dict of Parameters, got "
                                    f"list of {type(p)}.")
    return list(params)


def split_rfc_rules(optimizer_params):
    """Split the RFC form (per-layer dicts inside optimizer_params) from real arguments."""
    if optimizer_params is None:
        return {}, {}
    if not isinstance(optimizer_params, dict):
        raise InvalidTypeError("optimizer_params must be a dict, got "
                               f"{type(optimizer_params).__name__}: {optimizer_params!r}")
    plain = {k: v for k, v in optimizer_params.items()
             if not isinstance(v, dict) or k in _DICT_ARGS}
    rfc = {k: v for k, v in optimizer_params.items() if k not in plain}
    return plain, rfc


def merge_rules(layers, rfc: Dict) -> Any:
    if not rfc:
        return layers
    pairs = rule_items(layers)
    mine = {key_id(k): repr(k) for k in rfc}
    both = sorted(mine[i] for i in {key_id(k) for k, _ in pairs} & set(mine))
    if both:
        raise RuleError(f"layer(s) {', '.join(both)} given both in layers= and inside "
                        "optimizer_params; use one form per layer")
    return list(pairs) + list(rfc.items())


def _accepted_args(cls) -> set:
    names = set()
    for klass in cls.__mro__:
        if isinstance(klass, type) and issubclass(klass, mx_optimizer.Optimizer):
            sig = inspect.signature(klass.__init__)
            names |= {n for n, p in sig.parameters.items()
                      if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names


def check_optimizer_args(name: str, cls, args: Dict) -> None:
    """Known names, and finite numbers where a number goes (MXNet would take ``wd=nan``
    here and fail at the first ``step``)."""
    accepted = _accepted_args(cls)
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise InvalidValueError(f"unknown optimizer parameter(s) {unknown} for optimizer "
                                f"{name!r}; it accepts {sorted(accepted)}",
                                argument="optimizer_params")
    if "param_dict" in args:
        raise InvalidValueError("optimizer_params must not contain 'param_dict': the trainer "
                                "sets it", argument="optimizer_params")
    optional = ("learning_rate", "clip_gradient")  # None: the optimizer's default
    numeric = {n for k in cls.__mro__
               if isinstance(k, type) and issubclass(k, mx_optimizer.Optimizer)
               for n, p in inspect.signature(k.__init__).parameters.items() if is_real(p.default)}
    for key, value in args.items():  # ValueError for a wrong type too, as it always was
        wanted = key in numeric or key in optional
        if (wanted and not is_real(value) and not (value is None and key in optional)) or \
                (is_real(value) and not math.isfinite(value)):
            raise InvalidValueError(f"optimizer parameter {key} must be a finite number, got "
                                    f"{type(value).__name__} {value!r}", argument=key)
    _check_trainer_schedule(args.get("lr_scheduler"), args.get("learning_rate"))


def _check_trainer_schedule(sched, learning_rate) -> None:
    """The trainer's own ``lr_scheduler``: an instance; with ``learning_rate``, one that has
    a ``base_lr`` for it (MXNet sets it: a class or a plain function failed there with
    AttributeError, or at the first ``step`` inside MXNet)."""
    if sched is None:
        return
    if isinstance(sched, type):
        raise InvalidTypeError(f"lr_scheduler is the class {sched.__name__}, not a schedule; "
                               f"give an instance, e.g. {sched.__name__}(...) with its "
                               f"arguments", argument="lr_scheduler")
    if not callable(sched):
        raise InvalidTypeError(f"lr_scheduler must be an mx.lr_scheduler.LRScheduler, got "
                               f"{sched!r}", argument="lr_scheduler")
    if learning_rate is not None and not hasattr(sched, "base_lr"):
        raise InvalidTypeError(f"lr_scheduler: a plain callable gives absolute rates, and MXNet "
                               f"sets learning_rate={learning_rate!r} as a scheduler's base_lr, "
                               f"which {sched!r} has not; drop learning_rate (the function's "
                               f"rates are used), or give an mx.lr_scheduler.LRScheduler",
                               argument="lr_scheduler")


def _check_optimizer_numbers(optimizer: mx_optimizer.Optimizer) -> None:
    """An Optimizer instance's numbers (``SGD(wd=nan)``) must be finite too."""
    for key, value in sorted(vars(optimizer).items()):
        if is_real(value) and not math.isfinite(value):
            raise InvalidValueError(f"optimizer {type(optimizer).__name__}: {key} must be a "
                                    f"finite number, got {value!r}", argument=key)


def make_optimizer(optimizer, optimizer_params: Dict) -> mx_optimizer.Optimizer:
    """The optimizer object, not yet made layerwise (that waits until rules resolve)."""
    check_not_horovod_optimizer(optimizer)
    if isinstance(optimizer, mx_optimizer.Optimizer):
        if optimizer_params:
            raise InvalidValueError("optimizer_params must be empty when optimizer is an "
                                    f"Optimizer instance, got {sorted(optimizer_params)}")
        _check_optimizer_numbers(optimizer)
        return optimizer
    if not isinstance(optimizer, str):
        raise InvalidTypeError("optimizer must be a name such as 'sgd' or an "
                               f"mx.optimizer.Optimizer, got {type(optimizer).__name__}: "
                               f"{optimizer!r}")
    registry = mx_optimizer.Optimizer.opt_registry
    cls = registry.get(optimizer.lower())
    if cls is None:
        raise InvalidValueError(f"unknown optimizer {optimizer!r}; registered: {sorted(registry)}")
    check_optimizer_args(optimizer, cls, optimizer_params)
    return mx_optimizer.create(optimizer, **optimizer_params)


def check_kvstore_args(kvstore, compression_params, update_on_kvstore) -> None:
    if kvstore is not None and not isinstance(kvstore, (str, KVStoreBase)):
        raise InvalidTypeError("kvstore must be a KVStore, a str such as 'device' or None, got "
                               f"{type(kvstore).__name__}: {kvstore!r}")
    if update_on_kvstore not in (None, True, False):
        raise InvalidTypeError("update_on_kvstore must be None, True or False, got "
                               f"{update_on_kvstore!r}")
    if compression_params is not None and not isinstance(compression_params, dict):
        raise InvalidTypeError("compression_params must be a dict or None, got "
                               f"{compression_params!r}")


