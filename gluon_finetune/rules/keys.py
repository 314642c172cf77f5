"""Rule keys: one canonical form, one identity, one label. Pure: no MXNet.

Two spellings of one key are one rule everywhere (``resolve``, ``combine``,
states files): ``np.int64(2)`` is ``2``, the string ``"0:2"`` is
``slice(0, 2)``, a list is a tuple. :func:`key_id` gives that identity as a
string (a slice is unhashable before Python 3.12, and ``2 == 2.0`` must not
make an index of a float).
"""
from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Tuple

from ..checks import is_int

__all__ = ["TRAINABLE", "canonical_key", "key_id", "plain_key", "label", "renamed_key",
           "renamed_rules"]

TRAINABLE = "trainable:"  # key prefix: the parameters of the key that are trainable
_SLICE_STRING = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?$")


def _index(value: Any) -> Any:
    return int(value) if is_int(value) else value


def canonical_key(key: Any) -> Any:
    """``key`` in its one canonical form: NumPy integers as ``int``, range strings as
    slices, lists as tuples (recursively).

    Examples
    --------
    >>> import numpy as np
    >>> canonical_key((np.int64(2), "0:2", "features"))
    (2, slice(0, 2, None), 'features')
    """
    if isinstance(key, (tuple, list)):
        return tuple(canonical_key(k) for k in key)
    if isinstance(key, slice):
        return slice(_index(key.start), _index(key.stop), _index(key.step))
    sliced = _SLICE_STRING.match(key) if isinstance(key, str) else None
    if sliced:
        return slice(*(int(g) if g is not None else None for g in sliced.groups()))
    return _index(key)


def key_id(key: Any) -> str:
    """The identity of a rule key: equal exactly for two spellings of one key.

    Examples
    --------
    >>> import numpy as np
    >>> key_id(np.int64(2)) == key_id(2), key_id("0:2") == key_id(slice(0, 2))
    (True, True)
    >>> key_id(2) == key_id("2")   # an index is not a path
    False
    """
    canonical = canonical_key(key)
    return f"{type(canonical).__name__}:{canonical!r}"


def plain_key(key: Any) -> Any:
    """``key`` as given, with NumPy integers as ``int`` (for dicts handed back to users)."""
    if isinstance(key, (tuple, list)):
        return type(key)(plain_key(k) for k in key)
    if isinstance(key, slice):
        return canonical_key(key)
    return _index(key)


def label(key: Any) -> str:
    """How a rule is named in tables and errors: ``l3``, ``block -1``, ``blocks 2:5``."""
    key = canonical_key(key)
    if isinstance(key, slice):
        parts = ["" if v is None else str(v) for v in (key.start, key.stop)]
        step = f":{key.step}" if key.step is not None else ""
        return f"blocks {':'.join(parts)}{step}"
    if isinstance(key, tuple):
        return "(" + ", ".join(label(k) for k in key) + ")"
    if is_int(key):
        return f"block {key}"
    return key if isinstance(key, str) else repr(key)


def renamed_key(key: Any, names: Mapping[str, str]) -> Any:
    """``key`` with every part that is exactly a parameter name in ``names`` replaced by
    its new name (``"trainable:"`` keys and tuples included); other keys unchanged.

    Examples
    --------
    >>> renamed_key(("net0_dense0_bias", "*_bias"), {"net0_dense0_bias": "net1_dense0_bias"})
    ('net1_dense0_bias', '*_bias')
    """
    if isinstance(key, (tuple, list)):
        return type(key)(renamed_key(k, names) for k in key)
    if not isinstance(key, str):
        return key
    if key.startswith(TRAINABLE):
        return TRAINABLE + renamed_key(key[len(TRAINABLE):], names)
    return names.get(key, key)


def renamed_rules(rules: Any, names: Mapping[str, str]) -> Tuple[Any, Dict[str, str]]:
    """``rules`` (a dict or ``(key, value)`` pairs) with each key :func:`renamed_key`, and
    the rule labels that changed (old label -> new label).

    Examples
    --------
    >>> renamed_rules({"net0_dense0_bias": {"wd_mult": 0.0}, "*": 0.5},
    ...               {"net0_dense0_bias": "net1_dense0_bias"})
    ({'net1_dense0_bias': {'wd_mult': 0.0}, '*': 0.5}, {'net0_dense0_bias': 'net1_dense0_bias'})
    """
    pairs = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    out, labels = [], {}
    for key, value in pairs:
        new = renamed_key(key, names)
        if label(new) != label(key):
            labels[label(key)] = label(new)
        out.append((new, value))
    return (dict(out) if isinstance(rules, Mapping) else out), labels
