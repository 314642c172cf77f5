"""Layer rules -> one ``Setting`` per parameter. Pure: no MXNet state.

A rule maps a *key* (which parameters) to a *value* (what they get). Keys:
a structural path (``"features.4"``), a parameter name, a glob (``"*_bias"``),
a regex (``"re:conv\\d_weight$"``), a block index (``3``, ``-1``), a block
range (``slice(2, 5)`` or ``"2:5"``), ``"*"`` for everything, or a tuple/list
of these; a string key with the prefix ``"trainable:"`` keeps only the
parameters that are trainable already (``"trainable:*"`` never thaws).
Values (``values.py``): a number (learning-rate multiplier; ``0`` freezes),
``None`` (frozen), or a dict with ``learning_rate``, ``lr_mult``,
``lr_scheduler``, ``wd_mult``, ``frozen``.

Each group of fields (the rate, the weight decay) of each parameter is
resolved on its own: among the matching rules that set the group, the one
whose matched set is a strict subset of the others' wins, so rule order never
matters; two rules that set it differently, neither more specific, are an
error, and so is a rule that matches nothing.
"""
from __future__ import annotations

import fnmatch
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple

from ..checks import check_real, did_you_mean
from ..checks import is_int as _is_int
from ..errors import InvalidTypeError, NoMatchError, RuleError, RuleTypeError
from .keys import TRAINABLE, canonical_key, key_id
from .keys import label as _label
from .values import DEFAULTS, GROUPS, VALUE_KEYS, Parsed, parse_value

__all__ = ["Setting", "RuleError", "NoMatchError", "resolve", "rule_items", "VALUE_KEYS",
           "GROUPS"]

_GLOB_CHARS = set("*?[")
_INDEX_STRING = re.compile(r"^\s*-?\d+\s*$")


@dataclass(frozen=True)
class Setting:
    """What one parameter gets from the rules.

    ``None`` in ``lr_mult``/``wd_mult`` means "no rule said": the parameter
    keeps its own multiplier. ``rule`` names the rule that gave the rate,
    ``wd_rule`` the one that gave the weight decay (None: no rule did).
    """

    name: str
    rule: Optional[str] = None
    lr_mult: Optional[float] = None
    learning_rate: Optional[float] = None
    wd_mult: Optional[float] = None
    lr_scheduler: Optional[Callable] = None
    frozen: bool = False
    wd_rule: Optional[str] = None


@dataclass(frozen=True)
class _Rule:
    label: str
    order: str          # canonical sort key: resolution never depends on input order
    matched: FrozenSet[str]
    value: Parsed
    key: Any = None


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
                raise RuleTypeError("layers: expected a dict or (key, value) pairs, got item "
                                    f"{item!r}")
            pairs.append((item[0], item[1]))
        return tuple(pairs)
    raise RuleTypeError("layers: expected a dict of rules or a list of (key, value) pairs, got "
                        f"{type(rules).__name__}: {rules!r}")


# ----------------------------------------------------------------- matching

class _Scope:
    """What keys are matched against: names, structural paths, the block list."""

    def __init__(self, names, paths, block_list, trainable=None):
        self.names = tuple(names)
        self.name_set = frozenset(self.names)
        self.paths = paths
        self.block_list = block_list
        self.trainable = self.name_set if trainable is None else frozenset(trainable)

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

    def suggest(self, word: str, trainable: bool) -> str:
        """What to write instead of ``word``, a string that names nothing (after
        ``"trainable:"`` when ``trainable``)."""
        if _INDEX_STRING.match(word):  # an index as text: no path looks like it ("-1" ~ "1")
            index = int(word)
            if trainable:
                span = f"{index}:" if index == -1 else f"{index}:{index + 1}"
                return (f" A block index after {TRAINABLE!r} is written as a range: "
                        f"{TRAINABLE + span!r} is block {index}.")
            return f" A block index is an int key: {index}, not the string {word!r}."
        hint = did_you_mean(word, list(self.paths or ()) + list(self.names))
        return f" {hint}" if hint else ""


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
            raise RuleTypeError(f"rule {rule!r}: slice bounds must be integers, got {part!r}")
    if key.step == 0:
        raise RuleError(f"rule {rule!r}: slice step cannot be zero")
    scope.need_net(rule, "block ranges")
    positions = range(len(scope.block_list))[key]
    if not positions:
        raise RuleError(f"rule {rule!r}: block range selects no blocks: the network has "
                        f"{len(scope.block_list)} blocks ({scope.describe_blocks()})")
    return scope.blocks_of(rule, positions)


def _match_string(rule: str, key: str, scope: _Scope, trainable: bool = False
                  ) -> FrozenSet[str]:
    if not key.strip():
        raise RuleError(f"rule {key!r}: an empty string names nothing")
    if key.startswith(TRAINABLE):  # only what is trainable already: never thaws
        return _match_string(rule, key[len(TRAINABLE):], scope, True) & scope.trainable
    if key == "*":
        return scope.name_set
    if isinstance(canonical_key(key), slice):
        return _match_slice(rule, canonical_key(key), scope)
    if key.startswith("re:"):
        try:
            pattern = re.compile(key[3:])
        except re.error as err:
            raise RuleError(f"rule {rule!r}: invalid regular expression: {err}") from None
        return frozenset(n for n in scope.names if pattern.search(n))
    if _GLOB_CHARS & set(key):
        return frozenset(n for n in scope.names if fnmatch.fnmatchcase(n, key))
    if scope.paths is not None and key in scope.paths:
        return scope.paths[key] & scope.name_set
    if key in scope.name_set:
        return frozenset([key])
    hint = "" if scope.paths is not None else " (structural paths need net=<your Block>)"
    raise NoMatchError(f"rule {rule!r}: no block path or parameter is named {key!r}"
                    f"{hint}.{scope.suggest(key, trainable)}")


def _match_key(rule: str, key: Any, scope: _Scope, nested: bool = False) -> FrozenSet[str]:
    if isinstance(key, str):
        return _match_string(rule, key, scope)
    if _is_int(key):
        return _match_index(rule, int(key), scope)
    if isinstance(key, slice):
        return _match_slice(rule, key, scope)
    if isinstance(key, (tuple, list)) and not nested:
        if not key:
            raise RuleError(f"rule {rule!r}: an empty tuple names nothing")
        out = frozenset()
        for part in key:
            matched = _match_key(rule, part, scope, nested=True)
            if not matched:
                raise NoMatchError(f"rule {rule!r}: its part {_label(part)!r} matches "
                                    f"no parameter")
            out |= matched
        return out
    raise RuleTypeError(f"rule key {key!r}: expected a block path or parameter name (str), a "
                        "glob, 're:<regex>', '*', a block index (int), a slice or 'm:n', or a "
                        f"tuple of these; got {type(key).__name__}")


# ----------------------------------------------------------------- resolution

def _build_rules(items, scope: _Scope, strict: bool) -> Tuple[_Rule, ...]:
    # sorted (values too, for repeated keys): the first error found never depends on order
    ordered = sorted(items, key=lambda kv: (type(kv[0]).__name__, repr(kv[0]), repr(kv[1])))
    rules: Dict[str, _Rule] = {}
    for key, value in ordered:
        try:
            rule = _build_rule(key, value, scope, strict)
        except (TypeError, ValueError) as err:
            _blame(err, key)
            raise
        if rule is None:
            continue
        previous = rules.get(rule.order)
        if previous is not None and previous.value != rule.value:
            raise _blame(RuleError(f"rule {rule.label!r} is given twice with different "
                                   f"values"), key)
        rules[rule.order] = rule
    return tuple(rules.values())


def _build_rule(key: Any, value: Any, scope: _Scope, strict: bool) -> Optional[_Rule]:
    """One rule, or None for a rule that matches nothing under ``strict=False``."""
    label = _label(key)
    parsed = parse_value(label, value)
    try:
        matched = _match_key(label, key, scope)
        if not matched:
            raise NoMatchError(f"rule {label!r} matches no parameter")
    except NoMatchError as err:
        if strict:
            raise NoMatchError(f"{err} (pass strict=False to only warn)") from None
        warnings.warn(str(err), stacklevel=4)
        return None
    return _Rule(label, key_id(key), matched, parsed, key)  # "0:2" is slice(0, 2), one rule


def _blame(err: Exception, *keys: Any) -> Exception:
    """Record on ``err`` which rules are at fault (``err.rule_keys``), once."""
    if getattr(err, "rule_keys", None) is None:
        err.rule_keys = keys
    return err


def _winner(name: str, group: str, candidates: Sequence[_Rule]) -> Optional[_Rule]:
    """The most specific rule setting ``group`` of ``name``; equally specific ones must agree."""
    setting = [r for r in candidates if group in r.value]
    minimal = sorted((r for r in setting if not any(o.matched < r.matched for o in setting)),
                     key=lambda r: r.order)
    if not minimal:
        return None
    first = minimal[0]
    for other in minimal[1:]:
        if other.value[group] != first.value[group]:
            raise _blame(RuleError(
                f"rules {first.label!r} and {other.label!r} both match parameter {name!r} and "
                f"set its {group} to different values, and neither is more specific than the other "
                f"(neither matches a strict subset of the other's parameters); make one of "
                f"them narrower, add a rule just for the overlap, or give them the same "
                f"value"), first.key, other.key)
    return first


def _setting(name: str, winners: Mapping[str, Optional[_Rule]],
             base_lr: Optional[float]) -> Setting:
    fields = dict(DEFAULTS)
    for group, rule in winners.items():
        if rule is not None:
            fields.update(zip(GROUPS[group], rule.value[group]))
    rate, wd = winners["rate"], winners["weight decay"]
    return Setting(name, rate.label if rate else None, _multiplier(rate, fields, base_lr),
                   fields["learning_rate"], fields["wd_mult"], fields["lr_scheduler"],
                   fields["frozen"], wd.label if wd else None)


def _multiplier(rule: Optional[_Rule], fields: Mapping[str, Any],
                base_lr: Optional[float]) -> Optional[float]:
    """The rate group's lr_mult: absolute rates divided by the base, 0 when frozen."""
    if rule is None:
        return None
    if fields["frozen"]:
        return 0.0
    lr = fields["learning_rate"]
    if lr is None:
        return 1.0 if fields["lr_mult"] is None else fields["lr_mult"]
    if base_lr is not None and base_lr == 0:
        raise _blame(RuleError(f"rule {rule.label!r}: learning_rate={lr} cannot be turned "
                               f"into a multiplier of a base learning rate of 0"), rule.key)
    return lr / base_lr if base_lr is not None else None


def resolve(rules: Any, names: Sequence[str], *,
            paths: Optional[Mapping[str, FrozenSet[str]]] = None,
            block_list: Optional[Sequence[Tuple[str, FrozenSet[str]]]] = None,
            base_lr: Optional[float] = None, strict: bool = True,
            trainable: Optional[Iterable[str]] = None) -> Tuple[Setting, ...]:
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
    trainable : iterable of str, optional
        The parameters that are trainable before the rules apply (default:
        all): a key ``"trainable:<key>"`` matches only those among ``<key>``'s.

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
        raise InvalidTypeError(f"strict must be True or False, got {strict!r}")
    if base_lr is not None:
        base_lr = check_real("rule '<trainer>': base learning rate", base_lr)  # not a rule's
    scope = _Scope(names, paths, block_list, trainable)
    built = _build_rules(rule_items(rules), scope, strict)
    by_name: Dict[str, list] = {n: [] for n in scope.names}
    for rule in built:
        for name in rule.matched:
            by_name[name].append(rule)
    return tuple(_setting(n, {g: _winner(n, g, by_name[n]) for g in GROUPS}, base_lr)
                 for n in scope.names)
