"""The settings that are structures: rules, schedules, gradual unfreezing, optimizer
arguments. Each is read from a config's data (``load_*(value, at)``, errors at the
key's file and line); rules are also read from ``--layer-lr`` text.
"""
from __future__ import annotations

import argparse
import inspect
import math
import re
from typing import Any, Dict, Tuple

from ..checks import did_you_mean, is_int, is_real
from ..errors import InvalidValueError
from ..rules.values import VALUE_KEYS
from .config_text import Where

__all__ = ["SCHEDULERS", "rule_key", "check_optimizer", "parse_layer_rule", "load_rules",
           "load_scheduler", "load_unfreezing", "load_optimizer_params", "check_number"]

SCHEDULERS = ("factor", "multifactor", "poly", "cosine", "slanted_triangular", "one_cycle")
_INDEX = re.compile(r"^\s*-?\d+\s*$")
_UNFREEZING_KEYS = ("every", "schedule", "restart")
_RATE_FIELDS = ("learning_rate", "lr_mult", "wd_mult")


def rule_key(key: Any) -> Any:
    """A rule key read from text: an integer-looking string is a block index."""
    return int(key) if isinstance(key, str) and _INDEX.match(key) else key


def check_optimizer(name: str) -> str:
    """``name`` if MXNet has an optimizer of that name (any case).

    Raises
    ------
    InvalidValueError
        Naming a close match and every registered optimizer.

    Examples
    --------
    >>> check_optimizer("SGD")
    'SGD'
    """
    from mxnet.optimizer import Optimizer
    registry = sorted(Optimizer.opt_registry)
    if isinstance(name, str) and name.lower() in registry:
        return name
    hint = did_you_mean(str(name).lower(), registry, n=1, cutoff=0.6)
    hint = f"{hint} " if hint else ""
    raise InvalidValueError(f"unknown optimizer {name!r}. {hint}MXNet has: "
                            f"{', '.join(registry)}", argument="optimizer")


def parse_layer_rule(text: str) -> Tuple[object, Any]:
    """``KEY=VALUE`` -> a rule. An integer KEY is a block index; VALUE is a
    multiplier, ``0`` or ``frozen`` freezes (None)."""
    key, sep, value = text.rpartition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=MULTIPLIER (e.g. output=10 or "
                                         f"-1=10), got {text!r}")
    if key.startswith("re:"):
        try:
            re.compile(key[3:])
        except re.error as err:
            raise argparse.ArgumentTypeError(f"invalid regular expression in {text!r}: "
                                             f"{err}") from None
    if value.strip().lower() == "frozen":
        return rule_key(key), None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(
            f"the multiplier in {text!r} must be a finite number or 'frozen', got {value!r}")
    return rule_key(key), number


def check_number(value: Any, at: Where) -> Any:
    if not is_real(value) or not math.isfinite(value):
        raise at.fail(f"expected a finite number, got {value!r}")
    return value


def _schedulers() -> Dict[str, type]:
    import mxnet as mx

    from ..optim.schedules import OneCycle, SlantedTriangular
    return {"factor": mx.lr_scheduler.FactorScheduler,
            "multifactor": mx.lr_scheduler.MultiFactorScheduler,
            "poly": mx.lr_scheduler.PolyScheduler, "cosine": mx.lr_scheduler.CosineScheduler,
            "slanted_triangular": SlantedTriangular, "one_cycle": OneCycle}


def load_scheduler(spec: Any, at: Where) -> Any:
    """``{type: factor, step: 100, ...}`` -> the scheduler object."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise at.fail(f"expected a mapping with 'type' (one of {', '.join(SCHEDULERS)}) and "
                      f"its arguments, got {spec!r}")
    kind, args = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    classes = _schedulers()
    if kind not in classes:
        raise (at / "type").fail(f"unknown scheduler {kind!r}; expected one of "
                                 f"{', '.join(SCHEDULERS)}")
    accepted = [n for n in inspect.signature(classes[kind]).parameters if n != "self"]
    for name in args:
        if name not in accepted:
            raise (at / name).fail(f"{kind} scheduler has no argument {name!r}; it takes "
                                   f"{', '.join(accepted)}")
    try:
        return classes[kind](**args)
    except (TypeError, ValueError, AssertionError) as err:
        raise at.fail(f"cannot build a {kind} scheduler from {args}: "
                      f"{err or type(err).__name__}") from None


def _rule_fields(value: dict, at: Where) -> dict:
    out = dict(value)
    for field, item in value.items():
        if field not in VALUE_KEYS:
            hint = did_you_mean(field, VALUE_KEYS, n=1, cutoff=0.6)
            hint = f"{hint} " if hint else ""
            raise (at / field).fail(f"unknown key. {hint}A rule's mapping takes "
                                    f"{', '.join(VALUE_KEYS)}")
        if field in _RATE_FIELDS:
            check_number(item, at / field)
        if field == "frozen" and not isinstance(item, bool):
            raise (at / field).fail(f"expected true or false, got {item!r}")
    if "lr_scheduler" in out:
        out["lr_scheduler"] = load_scheduler(out["lr_scheduler"], at / "lr_scheduler")
    return out


def _rule_value(value: Any, at: Where) -> Any:
    """A rule value as data -> as the rule engine takes it (schedulers built)."""
    if value is None:
        return value
    if isinstance(value, bool):
        raise at.fail(f"{str(value).lower()} is not a rule value; use a multiplier, 0 or "
                      f"null (frozen), or a mapping")
    if is_real(value):
        return check_number(value, at)
    if isinstance(value, dict):
        return _rule_fields(value, at)
    raise at.fail(f"expected a multiplier, null (frozen) or a mapping with "
                  f"{'/'.join(VALUE_KEYS)}, got {value!r}")


def load_rules(rules: dict, at: Where) -> dict:
    """The ``layers`` mapping, checked, schedulers built."""
    for key in rules:
        if not (isinstance(key, str) or is_int(key)):
            raise (at / key).fail(f"a rule key is a block path, a parameter name or glob, "
                                  f"'re:<regex>', '*', a block index or a range 'm:n'; got "
                                  f"{key!r}")
    # JSON keys are always strings: there a digit-only key is a block index.
    as_key = rule_key if at.path.lower().endswith(".json") else (lambda key: key)
    return {as_key(key): _rule_value(value, at / key) for key, value in rules.items()}


def load_optimizer_params(params: dict, at: Where) -> dict:
    for name, value in params.items():
        if isinstance(value, dict):
            raise (at / name).fail("expected a number, true/false or a string; rules go "
                                   "under 'layers:'")
        if is_real(value):
            check_number(value, at / name)
        elif value is not None and not isinstance(value, (bool, str)):
            raise (at / name).fail(f"expected a number, true/false or a string, got {value!r}")
    return params


def _count(value: Any, at: Where, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise at.fail(f"expected an int >= {minimum}, got {value!r}")
    return int(value)


def _unfreezing_schedule(schedule: Any, at: Where) -> Dict[int, int]:
    if not isinstance(schedule, dict):
        raise at.fail(f"expected a mapping epoch: trainable blocks, got {schedule!r}")
    out: Dict[int, int] = {}
    for epoch, blocks in schedule.items():
        number = _count(rule_key(epoch), at / epoch, 0)  # JSON keys are strings: "2" is 2
        if number in out:
            raise (at / epoch).fail(f"epoch {number} is given twice")
        out[number] = _count(blocks, at / epoch, 0)
    if 0 not in out:
        raise at.fail(f"must say how many blocks train at epoch 0, got epochs {sorted(out)}")
    return out


def load_unfreezing(spec: dict, at: Where) -> dict:
    """The ``gradual_unfreezing`` mapping, checked, as ``GradualUnfreezing`` takes it."""
    for key in spec:
        if key not in _UNFREEZING_KEYS:
            raise (at / key).fail(f"unknown key; expected one of {', '.join(_UNFREEZING_KEYS)}")
    out = dict(spec)
    if spec and ("every" in spec) == ("schedule" in spec):
        raise at.fail("give exactly one of every (epochs per newly thawed block) and schedule "
                      "(epoch: trainable blocks)")
    if "every" in spec:
        out["every"] = _count(spec["every"], at / "every", 1)
    if "schedule" in spec:
        out["schedule"] = _unfreezing_schedule(spec["schedule"], at / "schedule")
    if spec.get("restart") not in (None, "schedule"):
        raise (at / "restart").fail(f"expected schedule or null, got {spec['restart']!r}")
    return out
