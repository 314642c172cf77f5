"""Layer rules -> one ``Setting`` per parameter. Pure: no MXNet state.

A rule maps a *key* (which parameters; ``matching.py``) to a *value* (what
they get; ``values.py``): a number (learning-rate multiplier; ``0``
freezes), ``None`` (frozen), or a dict with ``learning_rate``, ``lr_mult``,
``lr_scheduler``, ``wd_mult``, ``frozen``. Keys are matched in a
:class:`RuleScope`: the names, paths and block list of what a trainer (or a
preview) holds, and one definition of what is trainable.

Each group of fields (the rate, the weight decay) of each parameter is
resolved on its own: among the matching rules that set the group, the one
whose matched set is a strict subset of the others' wins, so rule order never
matters; two rules that set it differently, neither more specific, are an
error, and so is a rule that matches nothing.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple

from ..checks import check_real, did_you_mean
from ..errors import InvalidTypeError, NoMatchError, RuleError
from .keys import TRAINABLE, key_id
from .keys import label as _label
from .matching import match_key, rule_items
from .values import DEFAULTS, GROUPS, VALUE_KEYS, Parsed, parse_value

_INDEX_STRING = re.compile(r"^\s*-?\d+\s*$")

__all__ = ["Setting", "RuleScope", "RuleError", "NoMatchError", "resolve", "rule_items",
           "VALUE_KEYS", "GROUPS", "TRAINABLE"]


@dataclass(frozen=True)
class Setting:
    """What one parameter gets from the rules: one row of the resolved table.

    ``resolve`` returns one per parameter; the trainer, ``explain`` and states files
    read them. Frozen (immutable): compare and hash them freely.

    Parameters
    ----------
    name : str
        The parameter's name.
    rule : str, optional
        The rule that gave the rate (None: no rule did).
    lr_mult : float, optional
        The learning-rate multiplier; ``None`` means no rule said, and the
        parameter keeps its own ``Parameter.lr_mult``.
    learning_rate : float, optional
        The rule's absolute rate, when it gave one.
    wd_mult : float, optional
        The weight-decay multiplier; ``None``: the parameter keeps its own.
    lr_scheduler : callable, optional
        The rule's own schedule.
    frozen : bool
        Whether the rules freeze it (``grad_req='null'``).
    wd_rule : str, optional
        The rule that gave the weight decay (None: no rule did).

    Examples
    --------
    >>> from gluon_finetune import resolve
    >>> setting = resolve({"*_bias": {"wd_mult": 0}}, ["dense0_bias"])[0]
    >>> setting.name, setting.rule, setting.lr_mult, setting.wd_rule, setting.wd_mult
    ('dense0_bias', None, None, '*_bias', 0.0)
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
class RuleScope:
    """What rules are matched against, with the one definition of "trainable".

    ``names``: the parameters, in the order a resolved table has.
    ``paths``: structural path -> names inside it, and ``block_list``:
    ``(label, names)`` per block, which indices count (both None without a
    network: then only name keys work). ``frozen``: parameters that can train
    but were frozen before the rules (``grad_req='null'``): a ``"trainable:"``
    key leaves them out, a rule that gives them a rate thaws them.
    ``fixed``: parameters that can never train (constants, running
    statistics): a rule may match them, but every table shows them frozen.
    ``rules.scope.rule_scope`` builds one from a network.

    Examples
    --------
    >>> scope = RuleScope(("a_weight", "b_weight"), frozen=frozenset({"a_weight"}))
    >>> [s.lr_mult for s in scope.resolve({"trainable:*": 0.5})]
    [None, 0.5]
    """

    names: Tuple[str, ...]
    paths: Optional[Mapping[str, FrozenSet[str]]] = None
    block_list: Optional[Tuple[Tuple[str, FrozenSet[str]], ...]] = None
    frozen: FrozenSet[str] = field(default_factory=frozenset)
    fixed: FrozenSet[str] = field(default_factory=frozenset)

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))
        if self.block_list is not None:
            object.__setattr__(self, "block_list", tuple(self.block_list))
        object.__setattr__(self, "frozen", frozenset(self.frozen))
        object.__setattr__(self, "fixed", frozenset(self.fixed))

    @cached_property
    def name_set(self) -> FrozenSet[str]:
        return frozenset(self.names)

    @cached_property
    def trainable(self) -> FrozenSet[str]:
        """What ``"trainable:"`` keys select: every name not frozen before the rules."""
        return self.name_set - self.frozen

    def resolve(self, rules: Any, *, base_lr: Optional[float] = None,
                strict: bool = True) -> Tuple[Setting, ...]:
        """One :class:`Setting` per name (see :func:`resolve`, the engine's one entry)."""
        return resolve(rules, scope=self, base_lr=base_lr, strict=strict)

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

    def suggest(self, word: str, trainable: bool = False) -> str:
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


@dataclass(frozen=True)
class _Rule:
    label: str
    order: str          # canonical sort key: resolution never depends on input order
    matched: FrozenSet[str]
    value: Parsed
    key: Any = None


# ----------------------------------------------------------------- inputs

# ----------------------------------------------------------------- resolution

def _build_rules(items, scope: RuleScope, strict: bool) -> Tuple[_Rule, ...]:
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
                                   f"values, as {previous.key!r} and {key!r} (two spellings "
                                   f"of one key are one rule); give it once"), key)
        rules[rule.order] = rule
    return tuple(rules.values())


def _build_rule(key: Any, value: Any, scope: RuleScope, strict: bool) -> Optional[_Rule]:
    """One rule, or None for a rule that matches nothing under ``strict=False``."""
    label = _label(key)
    parsed = parse_value(label, value)
    try:
        matched = match_key(label, key, scope)
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


def resolve(rules: Any, names: Optional[Sequence[str]] = None, *,
            paths: Optional[Mapping[str, FrozenSet[str]]] = None,
            block_list: Optional[Sequence[Tuple[str, FrozenSet[str]]]] = None,
            base_lr: Optional[float] = None, strict: bool = True,
            trainable: Optional[Iterable[str]] = None,
            scope: Optional[RuleScope] = None) -> Tuple[Setting, ...]:
    """Resolve layer rules into one :class:`Setting` per parameter name.

    The pure core of the package: names in, settings out, no MXNet state. Each
    group of fields (the rate, the weight decay) of each parameter goes to the most
    specific rule that sets it: the one whose matched parameters are a strict
    subset of the others'. The order of the rules never matters.

    Parameters
    ----------
    rules : dict or sequence of (key, value) pairs
        The layer rules, as ``LayerwiseTrainer(layers=...)`` takes them: keys are
        structural paths, parameter names, globs, ``re:`` regexes, block indices
        or ranges, ``"*"``; values are a multiplier, ``0``/``None`` (frozen) or a
        dict of ``learning_rate``, ``lr_mult``, ``lr_scheduler``, ``wd_mult``,
        ``frozen``.
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
    scope : RuleScope, optional
        Instead of ``names``, ``paths``, ``block_list`` and ``trainable``.

    Returns
    -------
    tuple of Setting
        One per name, in the order of ``names``.

    Raises
    ------
    RuleError
        Two rules that set the same group of a parameter differently where
        neither is more specific; a key or value no rule can have
        (:class:`RuleTypeError` for a wrong type); a key that needs ``paths`` or
        ``block_list`` without them.
    NoMatchError
        A rule that matches no parameter (with ``strict=False``: a warning).

    Examples
    --------
    >>> table = resolve({"*": 0.1, "fc_weight": 0}, ["conv_weight", "fc_weight"])
    >>> [(s.name, s.lr_mult, s.frozen) for s in table]
    [('conv_weight', 0.1, False), ('fc_weight', 0.0, True)]
    >>> resolve({"*": 0.1, "*_bias": {"wd_mult": 0}}, ["fc_bias"])[0].wd_rule
    '*_bias'
    """
    if scope is None:
        if names is None:
            raise InvalidTypeError("resolve needs the parameter names (or scope=)")
        frozen = frozenset() if trainable is None else frozenset(names) - frozenset(trainable)
        scope = RuleScope(names, paths, block_list, frozen)
    if not isinstance(strict, bool):
        raise InvalidTypeError(f"strict must be True or False, got {strict!r}")
    if base_lr is not None:
        base_lr = check_real("rule '<trainer>': base learning rate", base_lr)  # not a rule's
    built = _build_rules(rule_items(rules), scope, strict)
    by_name: Dict[str, list] = {n: [] for n in scope.names}
    for rule in built:
        for name in rule.matched:
            by_name[name].append(rule)
    return tuple(_setting(n, {g: _winner(n, g, by_name[n]) for g in GROUPS}, base_lr)
                 for n in scope.names)
