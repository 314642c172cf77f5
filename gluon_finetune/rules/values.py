"""Rule values: what a value sets, parsed into groups of fields.

A value is a number (a learning-rate multiplier; ``0`` freezes), ``None``
(frozen), or a dict with some of ``VALUE_KEYS``. It sets one or more
*groups* of fields (``GROUPS``): the rate and the weight decay. ``rules.py``
resolves each group on its own, so a value that sets only ``wd_mult`` leaves
the rate to other rules. Pure: no MXNet.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

from ..checks import check_real
from ..errors import InvalidTypeError, InvalidValueError, RuleError, RuleTypeError

__all__ = ["GROUPS", "DEFAULTS", "VALUE_KEYS", "Parsed", "parse_value", "real"]

VALUE_KEYS = ("learning_rate", "lr_mult", "lr_scheduler", "wd_mult", "frozen")

# The groups of fields a rule value can set. Each group is resolved on its own: a rule
# that sets only the weight decay leaves the rate to the rules that set one.
GROUPS: Dict[str, Tuple[str, ...]] = {
    "rate": ("lr_mult", "learning_rate", "lr_scheduler", "frozen"),
    "weight decay": ("wd_mult",),
}
DEFAULTS = {"lr_mult": None, "learning_rate": None, "lr_scheduler": None, "frozen": False,
             "wd_mult": None}

# A parsed rule value: group -> the values of that group's fields (in GROUPS order).
# Schedulers compare by identity (MXNet's LRScheduler has no __eq__).
Parsed = Dict[str, Tuple[Any, ...]]



def real(rule: str, field: str, x: Any) -> float:
    """``x`` as a finite float, or a ``RuleError`` naming the rule and the field."""
    try:
        return check_real(f"rule {rule!r}: {field}", x)
    except InvalidTypeError as err:  # a rule's error, so that `except RuleError` sees it
        raise RuleTypeError(str(err)) from None
    except InvalidValueError as err:
        raise RuleError(str(err)) from None


def parse_value(rule: str, value: Any) -> Parsed:
    """A rule value -> the groups it sets, each with all of its fields."""
    if value is None:
        return {"rate": _rate_part(frozen=True)}
    if isinstance(value, Mapping):
        return _parse_dict_value(rule, value)
    mult = real(rule, "the value (a learning-rate multiplier)", value)
    return {"rate": _rate_part(frozen=True) if mult == 0 else _rate_part(lr_mult=mult)}


def _rate_part(**fields: Any) -> Tuple[Any, ...]:
    return tuple(fields.get(f, DEFAULTS[f]) for f in GROUPS["rate"])


def _parse_dict_value(rule: str, value: Mapping) -> Parsed:
    unknown = sorted(str(k) for k in value if k not in VALUE_KEYS)
    if unknown:
        raise RuleError(f"rule {rule!r}: unknown key(s) {unknown} in its value; expected some of "
                        f"{list(VALUE_KEYS)}")
    if "learning_rate" in value and "lr_mult" in value:
        raise RuleError(f"rule {rule!r}: give learning_rate (absolute) or lr_mult (relative), not "
                        "both")
    lr = real(rule, "learning_rate", value["learning_rate"]) if "learning_rate" in value else None
    mult = real(rule, "lr_mult", value["lr_mult"]) if "lr_mult" in value else None
    wd = real(rule, "wd_mult", value["wd_mult"]) if "wd_mult" in value else None
    if wd is not None and wd < 0:
        raise RuleError(f"rule {rule!r}: wd_mult must be >= 0, got {wd!r}")
    sched = value.get("lr_scheduler")
    if isinstance(sched, type):  # callable, but calling it makes a scheduler, not a rate
        raise RuleTypeError(f"rule {rule!r}: lr_scheduler is the class {sched.__name__}, "
                            f"not a schedule; give an instance, e.g. "
                            f"{sched.__name__}(...) with its arguments", argument="lr_scheduler")
    if sched is not None and not callable(sched):
        raise RuleTypeError(f"rule {rule!r}: lr_scheduler must be an mx.lr_scheduler.LRScheduler "
                            f"or a callable step -> lr, got {type(sched).__name__} {sched!r}")
    frozen = value.get("frozen", False)
    if not isinstance(frozen, bool):
        raise RuleTypeError(f"rule {rule!r}: frozen must be True or False, got {frozen!r}")
    _check_frozen_agrees(rule, value, frozen)
    if sched is not None and not hasattr(sched, "base_lr") and (lr is not None or mult is not None):
        raise RuleError(f"rule {rule!r}: a plain callable lr_scheduler returns absolute rates; "
                        "put the rate inside it instead of learning_rate/lr_mult")
    parsed: Parsed = {}
    if any(field in value for field in GROUPS["rate"]):
        frozen = frozen or (sched is None and (lr == 0.0 or mult == 0.0))
        parsed["rate"] = _rate_part(frozen=True) if frozen else \
            _rate_part(lr_mult=mult, learning_rate=lr, lr_scheduler=sched)
    if wd is not None:
        parsed["weight decay"] = (wd,)
    if not parsed:
        raise RuleError(f"rule {rule!r}: an empty value sets nothing; give a multiplier, 0 or "
                        f"None (frozen), or some of {list(VALUE_KEYS)}")
    return parsed


def _check_frozen_agrees(rule: str, value: Mapping, frozen: bool) -> None:
    """``frozen`` must not contradict a rate or schedule given in the same rule."""
    for key in ("learning_rate", "lr_mult"):
        if key in value and frozen and value[key] != 0:
            raise RuleError(f"rule {rule!r}: frozen=True contradicts {key}={value[key]!r}")
        if key in value and "frozen" in value and not frozen and value[key] == 0 \
                and value.get("lr_scheduler") is None:
            raise RuleError(f"rule {rule!r}: frozen=False contradicts {key}=0 (a zero rate "
                            "freezes)")
    if frozen and value.get("lr_scheduler") is not None:
        raise RuleError(f"rule {rule!r}: frozen=True contradicts "
                        f"lr_scheduler={value['lr_scheduler']!r}")


