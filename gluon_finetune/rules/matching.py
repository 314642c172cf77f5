"""Matching rule keys against a scope: which parameter names each key names. Pure.

Keys: a structural path (``"features.4"``), a parameter name, a glob
(``"*_bias"``), a regex (``"re:conv\\d_weight$"``), a block index (``3``,
``-1``), a block range (``slice(2, 5)`` or ``"2:5"``), ``"*"`` for
everything, or a tuple/list of these; a string key with the prefix
``"trainable:"`` keeps only the parameters that are trainable already
(``"trainable:*"`` never thaws). The scope (``resolution.RuleScope``) says
what exists: names, paths, the block list, what is trainable.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, FrozenSet, Mapping, Tuple

from ..checks import is_int as _is_int
from ..errors import NoMatchError, RuleError, RuleTypeError
from .keys import TRAINABLE, canonical_key, label

__all__ = ["rule_items", "match_key", "TRAINABLE"]

_GLOB_CHARS = set("*?[")


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


def _match_index(rule: str, index: Any, scope) -> FrozenSet[str]:
    scope.need_net(rule, "block indices")
    n = len(scope.block_list)
    if not -n <= index < n:
        raise RuleError(f"rule {rule!r}: block index {index} is out of range: the network has "
                        f"{n} blocks ({scope.describe_blocks()})")
    return scope.blocks_of(rule, [index % n])


def _match_slice(rule: str, key: slice, scope) -> FrozenSet[str]:
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


def _match_string(rule: str, key: str, scope, trainable: bool = False) -> FrozenSet[str]:
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


def match_key(rule: str, key: Any, scope, nested: bool = False) -> FrozenSet[str]:
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
            matched = match_key(rule, part, scope, nested=True)
            if not matched:
                raise NoMatchError(f"rule {rule!r}: its part {label(part)!r} matches "
                                    f"no parameter")
            out |= matched
        return out
    raise RuleTypeError(f"rule key {key!r}: expected a block path or parameter name (str), a "
                        "glob, 're:<regex>', '*', a block index (int), a slice or 'm:n', or a "
                        f"tuple of these; got {type(key).__name__}")
