"""Layer rules -> one ``Setting`` per parameter. Pure: no MXNet state.

A rule maps a *key* (which parameters) to a *value* (what they get). Keys:
a structural path (``"features.4"``), a parameter name, a glob (``"*_bias"``),
a regex (``"re:conv\\d_weight$"``), a block index (``3``, ``-1``), a block
range (``slice(2, 5)`` or ``"2:5"``), ``"*"`` for everything, or a tuple/list
of these. Values: a number (learning-rate multiplier; ``0`` freezes), ``None``
(frozen), or a dict with ``learning_rate``, ``lr_mult``, ``lr_scheduler``,
``wd_mult``, ``frozen``.

For each parameter the matching rule with the smallest matched set wins, so
rule order never matters; two equally specific rules that disagree are an
error, and so is a rule that matches nothing.
"""
from __future__ import annotations

import difflib
import fnmatch
import math
import numbers
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple

__all__ = ["Setting", "RuleError", "NoMatchError", "resolve", "rule_items", "VALUE_KEYS"]

VALUE_KEYS = ("learning_rate", "lr_mult", "lr_scheduler", "wd_mult", "frozen")
_SLICE_STRING = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?$")
_GLOB_CHARS = set("*?[")


class RuleError(ValueError):
    """A rule set that cannot be resolved (conflict, no match, bad index)."""


class NoMatchError(RuleError):
    """A rule that matches no parameter: an error, or a warning with strict=False."""


@dataclass(frozen=True)
class Setting:
    """What one parameter gets from the rules.

    ``None`` in ``lr_mult``/``wd_mult`` means "no rule said": the parameter
    keeps its own multiplier. ``rule`` is the winning rule's label, or None.
    """

    name: str
    rule: Optional[str] = None
    lr_mult: Optional[float] = None
    learning_rate: Optional[float] = None
    wd_mult: Optional[float] = None
    lr_scheduler: Optional[Callable] = None
    frozen: bool = False


@dataclass(frozen=True)
class _Value:
    lr_mult: Optional[float] = None
    learning_rate: Optional[float] = None
    wd_mult: Optional[float] = None
    lr_scheduler: Optional[Callable] = None
    frozen: bool = False

    def __eq__(self, other):  # schedulers compare by identity
        return (isinstance(other, _Value)
                and (self.lr_mult, self.learning_rate, self.wd_mult, self.frozen)
                == (other.lr_mult, other.learning_rate, other.wd_mult, other.frozen)
                and self.lr_scheduler is other.lr_scheduler)

    __hash__ = None


@dataclass(frozen=True)
class _Rule:
    label: str
    order: str          # canonical sort key: resolution never depends on input order
    matched: FrozenSet[str]
    value: _Value


# ----------------------------------------------------------------- inputs

def rule_items(rules: Any) -> Tuple[Tuple[Any, Any], ...]:
    """Normalise a rule dict or a sequence of ``(key, value)`` pairs to pairs."""
    if rules is None:
        return ()
    if isinstance(rules, Mapping):
        return tuple(rules.items())
    if isinstance(rules, (list, tuple)):
        pairs = []
        for item in rules:
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise TypeError(f"layers: expected a dict or (key, value) pairs, got item {item!r}")
            pairs.append((item[0], item[1]))
        return tuple(pairs)
    raise TypeError(f"layers: expected a dict of rules or a list of (key, value) pairs, "
                    f"got {type(rules).__name__}: {rules!r}")


def _canonical(key: Any) -> Any:
    """A key with ranges as slices (``"0:2"`` is ``slice(0, 2)``): one rule, one label."""
    if isinstance(key, (tuple, list)):
        return tuple(_canonical(k) for k in key)
    sliced = _SLICE_STRING.match(key) if isinstance(key, str) else None
    if sliced:
        return slice(*(int(g) if g is not None else None for g in sliced.groups()))
    return key


def _label(key: Any) -> str:
    """How a rule is named in tables and errors: ``l3``, ``block -1``, ``blocks 2:5``."""
    key = _canonical(key)
    if isinstance(key, slice):
        parts = ["" if v is None else str(v) for v in (key.start, key.stop)]
        step = f":{key.step}" if key.step is not None else ""
        return f"blocks {':'.join(parts)}{step}"
    if isinstance(key, (tuple, list)):
        return "(" + ", ".join(_label(k) for k in key) + ")"
    if _is_int(key):
        return f"block {key}"
    return key if isinstance(key, str) else repr(key)


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _real(rule: str, field: str, x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"rule {rule!r}: {field} must be a number, got "
                        f"{type(x).__name__} {x!r}")
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"rule {rule!r}: {field} must be a finite number, got {x!r}")
    return x


def _parse_value(rule: str, value: Any) -> _Value:
    if value is None:
        return _Value(frozen=True)
    if isinstance(value, Mapping):
        return _parse_dict_value(rule, value)
    mult = _real(rule, "the value (a learning-rate multiplier)", value)
    return _Value(frozen=True) if mult == 0 else _Value(lr_mult=mult)


def _parse_dict_value(rule: str, value: Mapping) -> _Value:
    unknown = sorted(str(k) for k in value if k not in VALUE_KEYS)
    if unknown:
        raise ValueError(f"rule {rule!r}: unknown key(s) {unknown} in its value; "
                         f"expected some of {list(VALUE_KEYS)}")
    if "learning_rate" in value and "lr_mult" in value:
        raise ValueError(f"rule {rule!r}: give learning_rate (absolute) or lr_mult "
                         f"(relative), not both")
    lr = _real(rule, "learning_rate", value["learning_rate"]) if "learning_rate" in value else None
    mult = _real(rule, "lr_mult", value["lr_mult"]) if "lr_mult" in value else None
    wd = _real(rule, "wd_mult", value["wd_mult"]) if "wd_mult" in value else None
    if wd is not None and wd < 0:
        raise ValueError(f"rule {rule!r}: wd_mult must be >= 0, got {wd!r}")
    sched = value.get("lr_scheduler")
    if sched is not None and not callable(sched):
        raise TypeError(f"rule {rule!r}: lr_scheduler must be an mx.lr_scheduler.LRScheduler "
                        f"or a callable step -> lr, got {type(sched).__name__} {sched!r}")
    frozen = value.get("frozen", False)
    if not isinstance(frozen, bool):
        raise TypeError(f"rule {rule!r}: frozen must be True or False, got {frozen!r}")
    _check_frozen_agrees(rule, value, frozen)
    if sched is not None and not hasattr(sched, "base_lr") and (lr is not None or mult is not None):
        raise ValueError(f"rule {rule!r}: a plain callable lr_scheduler returns absolute "
                         f"rates; put the rate inside it instead of learning_rate/lr_mult")
    if sched is None and (lr == 0.0 or mult == 0.0):
        frozen = True
    if frozen:
        return _Value(wd_mult=wd, frozen=True)
    return _Value(lr_mult=mult, learning_rate=lr, wd_mult=wd, lr_scheduler=sched)


def _check_frozen_agrees(rule: str, value: Mapping, frozen: bool) -> None:
    """``frozen`` must not contradict a rate or schedule given in the same rule."""
    for key in ("learning_rate", "lr_mult"):
        if key in value and frozen and value[key] != 0:
            raise ValueError(f"rule {rule!r}: frozen=True contradicts {key}={value[key]!r}")
        if key in value and "frozen" in value and not frozen and value[key] == 0 \
                and value.get("lr_scheduler") is None:
            raise ValueError(f"rule {rule!r}: frozen=False contradicts {key}=0 (a zero rate "
                             f"freezes)")
    if frozen and value.get("lr_scheduler") is not None:
        raise ValueError(f"rule {rule!r}: frozen=True contradicts "
                         f"lr_scheduler={value['lr_scheduler']!r}")


# ----------------------------------------------------------------- matching

class _Scope:
    """What keys are matched against: names, structural paths, the block list."""

    def __init__(self, names, paths, block_list):
        self.names = tuple(names)
        self.name_set = frozenset(self.names)
        self.paths = paths
        self.block_list = block_list

    def need_net(self, rule: str, what: str):
        if self.block_list is None:
            raise RuleError(f"rule {rule!r}: {what} need the network: pass net=<your Block>")

    def blocks_of(self, rule: str, positions: Iterable[int]) -> FrozenSet[str]:
        out = set()
        for i in positions:
            out |= self.block_list[i][1]
        return frozenset(out) & self.name_set

    def describe_blocks(self) -> str:
        return ", ".join(f"{i}:{p}" for i, (p, _) in enumerate(self.block_list))

    def suggest(self, word: str) -> str:
        candidates = list(self.paths or ()) + list(self.names)
        close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.5)
        return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _match_index(rule: str, index: Any, scope: _Scope) -> FrozenSet[str]:
    scope.need_net(rule, "block indices")
    n = len(scope.block_list)
    if not -n <= index < n:
        raise RuleError(f"rule {rule!r}: block index {index} is out of range: the network has "
                        f"{n} blocks ({scope.describe_blocks()})")
    return scope.blocks_of(rule, [index % n])


def _match_slice(rule: str, key: slice, scope: _Scope) -> FrozenSet[str]:
    for part in (key.start, key.stop, key.step):
        if part is not None and not _is_int(part):
            raise TypeError(f"rule {rule!r}: slice bounds must be integers, got {part!r}")
    if key.step == 0:
        raise ValueError(f"rule {rule!r}: slice step cannot be zero")
    scope.need_net(rule, "block ranges")
    positions = range(len(scope.block_list))[key]
    if not positions:
        raise RuleError(f"rule {rule!r}: block range selects no blocks: the network has "
                        f"{len(scope.block_list)} blocks ({scope.describe_blocks()})")
    return scope.blocks_of(rule, positions)


def _match_string(rule: str, key: str, scope: _Scope) -> FrozenSet[str]:
    if not key.strip():
        raise ValueError(f"rule {key!r}: an empty string names nothing")
    if key == "*":
        return scope.name_set
    if isinstance(_canonical(key), slice):
        return _match_slice(rule, _canonical(key), scope)
    if key.startswith("re:"):
        try:
            pattern = re.compile(key[3:])
        except re.error as err:
            raise ValueError(f"rule {rule!r}: invalid regular expression: {err}") from None
        return frozenset(n for n in scope.names if pattern.search(n))
    if _GLOB_CHARS & set(key):
        return frozenset(n for n in scope.names if fnmatch.fnmatchcase(n, key))
    if scope.paths is not None and key in scope.paths:
        return scope.paths[key] & scope.name_set
    if key in scope.name_set:
        return frozenset([key])
    hint = "" if scope.paths is not None else " (structural paths need net=<your Block>)"
    raise NoMatchError(f"rule {rule!r}: no block path or parameter is named {key!r}"
                    f"{hint}.{scope.suggest(key)}")


def _match_key(rule: str, key: Any, scope: _Scope, nested: bool = False) -> FrozenSet[str]:
    if isinstance(key, str):
        return _match_string(rule, key, scope)
    if _is_int(key):
        return _match_index(rule, int(key), scope)
    if isinstance(key, slice):
        return _match_slice(rule, key, scope)
    if isinstance(key, (tuple, list)) and not nested:
        if not key:
            raise ValueError(f"rule {rule!r}: an empty tuple names nothing")
        out = frozenset()
        for part in key:
            matched = _match_key(rule, part, scope, nested=True)
            if not matched:
                raise NoMatchError(f"rule {rule!r}: its part {_label(part)!r} matches "
                                    f"no parameter")
            out |= matched
        return out
    raise TypeError(f"rule key {key!r}: expected a block path or parameter name (str), a "
                    f"glob, 're:<regex>', '*', a block index (int), a slice or 'm:n', or a "
                    f"tuple of these; got {type(key).__name__}")


# ----------------------------------------------------------------- resolution

def _build_rules(items, scope: _Scope, strict: bool) -> Tuple[_Rule, ...]:
    # sorted (values too, for repeated keys): the first error found never depends on order
    ordered = sorted(items, key=lambda kv: (type(kv[0]).__name__, repr(kv[0]), repr(kv[1])))
    rules = {}
    for key, value in ordered:
        label = _label(key)
        parsed = _parse_value(label, value)
        canonical = _canonical(key)  # "0:2" and slice(0, 2) are the same rule
        order = f"{type(canonical).__name__}:{canonical!r}"
        try:
            matched = _match_key(label, key, scope)
            if not matched:
                raise NoMatchError(f"rule {label!r} matches no parameter")
        except NoMatchError as err:
            if strict:
                raise NoMatchError(f"{err} (pass strict=False to only warn)") from None
            warnings.warn(str(err), stacklevel=3)
            continue
        previous = rules.get(order)
        if previous is not None and previous.value != parsed:
            raise RuleError(f"rule {label!r} is given twice with different values")
        rules[order] = _Rule(label, order, matched, parsed)
    return tuple(rules.values())


def _winner(name: str, candidates: Sequence[_Rule]) -> _Rule:
    """The most specific rule; equally specific rules must agree."""
    minimal = [r for r in candidates
               if not any(o.matched < r.matched for o in candidates)]
    minimal.sort(key=lambda r: r.order)
    first = minimal[0]
    for other in minimal[1:]:
        if other.value != first.value:
            raise RuleError(
                f"rules {first.label!r} and {other.label!r} both match parameter {name!r} "
                f"with different values, and neither is more specific than the other; "
                f"make one of them narrower or give them the same value")
    return first


def _setting(name: str, rule: Optional[_Rule], base_lr: Optional[float]) -> Setting:
    if rule is None:
        return Setting(name)
    v = rule.value
    mult = v.lr_mult
    if v.learning_rate is not None:
        if base_lr is not None and base_lr == 0:
            raise RuleError(f"rule {rule.label!r}: learning_rate={v.learning_rate} cannot be "
                            f"turned into a multiplier of a base learning rate of 0")
        mult = v.learning_rate / base_lr if base_lr is not None else None
    if v.frozen:
        mult = 0.0
    elif mult is None and v.learning_rate is None:
        mult = 1.0
    return Setting(name, rule.label, mult, v.learning_rate, v.wd_mult, v.lr_scheduler, v.frozen)


def resolve(rules: Any, names: Sequence[str], *,
            paths: Optional[Mapping[str, FrozenSet[str]]] = None,
            block_list: Optional[Sequence[Tuple[str, FrozenSet[str]]]] = None,
            base_lr: Optional[float] = None, strict: bool = True) -> Tuple[Setting, ...]:
    """Resolve layer rules into one :class:`Setting` per parameter name.

    Parameters
    ----------
    rules : dict or sequence of (key, value) pairs
        The layer rules (see the module docstring for keys and values).
    names : sequence of str
        Parameter names, in the order the result should have.
    paths : mapping of str to frozenset of str, optional
        Structural path -> names of the parameters inside that block.
        Without it only name, glob, regex and ``"*"`` keys are allowed.
    block_list : sequence of (path, frozenset of names), optional
        The ordered block list that integer and slice keys index.
    base_lr : float, optional
        The trainer's base rate, to turn absolute ``learning_rate`` values
        into multipliers (left ``None`` when not given).
    strict : bool, default True
        A rule that matches no parameter raises; with False it only warns.

    Returns
    -------
    tuple of Setting
        One per name, in the order of ``names``.

    Examples
    --------
    >>> table = resolve({"*": 0.1, "fc_weight": 0}, ["conv_weight", "fc_weight"])
    >>> [(s.name, s.lr_mult, s.frozen) for s in table]
    [('conv_weight', 0.1, False), ('fc_weight', 0.0, True)]
    """
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    if base_lr is not None:
        base_lr = _real("<trainer>", "base learning rate", base_lr)
    scope = _Scope(names, paths, block_list)
    built = _build_rules(rule_items(rules), scope, strict)
    by_name: Dict[str, list] = {n: [] for n in scope.names}
    for rule in built:
        for name in rule.matched:
            by_name[name].append(rule)
    return tuple(_setting(n, _winner(n, by_name[n]) if by_name[n] else None, base_lr)
                 for n in scope.names)
