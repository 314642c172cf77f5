"""Block lists given as data: an explicit ``blocks=`` list, or one a model class declares.

A block list in this form is a sequence whose items are structural paths (of
a block, ``"features.4"``; of a parameter, ``"encoder.position_weight"``; or
a parameter's name), or tuples of them, each tuple being one block. It is
checked against the network here: every path exists, no parameter is in two
blocks, every block holds a parameter that can train, and every such
parameter is in a block.
"""
from __future__ import annotations

from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

from mxnet import gluon

from .._compat import children
from ..checks import did_you_mean
from ..errors import InvalidTypeError, InvalidValueError
from .automatic import Entry

__all__ = ["spec_items", "explicit_entries", "declare_blocks", "declared_spec", "version"]

Items = Tuple[Tuple[str, ...], ...]
_DECLARED: Dict[type, Callable] = {}
_VERSION = [0]  # bumped by declare_blocks: cached lists made before are stale


def version() -> int:
    return _VERSION[0]


def spec_items(spec) -> Items:
    """The list as a tuple of path tuples (one per block); TypeError/ValueError if malformed."""
    if isinstance(spec, (str, bytes)) or not isinstance(spec, (list, tuple)):
        raise InvalidTypeError("blocks must be a list of structural paths (a tuple of paths "
                               f"makes one block of several), got {type(spec).__name__}: {spec!r}")
    if not spec:
        raise InvalidValueError("blocks must list at least one block, got an empty list")
    items = []
    for i, item in enumerate(spec):
        paths = (item,) if isinstance(item, str) else item
        if not isinstance(paths, (list, tuple)) or not paths or \
                not all(isinstance(p, str) for p in paths):
            raise InvalidTypeError(f"blocks[{i}] must be a structural path or a non-empty tuple "
                                   f"of paths, got {item!r}")
        items.append(tuple(paths))
    return tuple(items)


def _names_of(i: int, path: str, table: Dict[str, FrozenSet[str]]) -> FrozenSet[str]:
    if path not in table:
        raise InvalidValueError(f"blocks[{i}]: no block path or parameter is named {path!r}. "
                                f"{did_you_mean(path, table)}".rstrip())
    return table[path]


def explicit_entries(net, items: Items, table: Dict[str, FrozenSet[str]],
                     param_paths: Dict[str, str], can_train: Callable) -> List[Entry]:
    """The checked block list. ``table``: every path a list may use -> parameter names."""
    params = net.collect_params()
    owner: Dict[str, int] = {}
    out = []
    for i, paths in enumerate(items):
        names = frozenset().union(*(_names_of(i, path, table) for path in paths))
        for name in sorted(names):
            if name in owner:
                raise InvalidValueError(f"blocks[{owner[name]}] ({'+'.join(items[owner[name]])}) "
                                        f"and blocks[{i}] ({'+'.join(paths)}) both hold parameter "
                                        f"{name!r}; a parameter belongs to one block")
            owner[name] = i
        out.append(Entry(paths, tuple(params[n] for n in params.keys() if n in names),
                         _single_block(net, paths)))
    _check_covered(items, owner, params, param_paths, can_train)
    return out


def _single_block(net, paths: Tuple[str, ...]) -> Optional[gluon.Block]:
    if len(paths) != 1 or not paths[0]:  # the root itself: structure.blocks gives the net
        return None
    block = net
    for part in paths[0].split(".") if paths[0] else []:
        block = children(block).get(part) if isinstance(block, gluon.Block) else None
        if block is None:
            return None
    return block


def _check_covered(items: Items, owner: Dict[str, int], params, param_paths: Dict[str, str],
                   can_train: Callable) -> None:
    trainable = {n for n in owner if can_train(params[n])}
    for i, group in enumerate(items):
        if not any(owner[n] == i for n in trainable):
            raise InvalidValueError(f"blocks[{i}] ({'+'.join(group)}) holds no trainable parameter")
    missing = [param_paths.get(p.name, p.name) for p in params.values()
               if can_train(p) and p.name not in owner]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InvalidValueError("blocks leaves trainable parameters in no block: "
                                f"{missing[:5]}{more}; every trainable parameter must be in one "
                                "block")


# ----------------------------------------------------------------- declarations

def declare_blocks(cls: type, rule: Callable) -> None:
    """Register ``rule(net, granularity) -> block list`` for networks of class ``cls``.

    For model classes you cannot edit (timm's ``group_matcher`` idea); a class
    you write can define ``finetune_block_list(self, granularity)`` instead.
    The list has the form of ``blocks=`` (paths; a tuple of paths is one
    block); ``automatic_blocks(net, granularity)`` is a starting point.

    Parameters
    ----------
    cls : type
        The model class (subclasses follow it).
    rule : callable
        ``rule(net, granularity) -> list`` of paths or tuples of paths.

    Raises
    ------
    InvalidTypeError
        ``cls`` is not a class or ``rule`` not callable.

    Examples
    --------
    >>> from gluon_finetune import blocks, declare_blocks
    >>> class ThreeParts(gluon.HybridBlock):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         with self.name_scope():
    ...             self.stem = nn.Dense(4, in_units=3)
    ...             self.body = nn.Dense(4, in_units=4)
    ...             self.head = nn.Dense(2, in_units=4)
    ...     def hybrid_forward(self, F, x):  # noqa: N803
    ...         return self.head(self.body(self.stem(x)))
    >>> declare_blocks(ThreeParts, lambda net, granularity: [("stem", "body"), "head"])
    >>> [label for label, _ in blocks(ThreeParts(prefix="parts_"))]
    ['stem+body', 'head']
    """
    if not isinstance(cls, type):
        raise InvalidTypeError(f"cls must be a class, got {cls!r}")
    if not callable(rule):
        raise InvalidTypeError(f"rule must be a callable (net, granularity) -> list, got {rule!r}")
    _DECLARED[cls] = rule
    _VERSION[0] += 1


# Declarations shipped with the package, by class name (their libraries are optional);
# structure.py registers them.
_BUILTIN: Dict[str, Callable] = {}


def declare_builtin(qualified_name: str, rule: Callable) -> None:
    """Declare the block list of a class known only by its name (``module.Class``)."""
    _BUILTIN[qualified_name] = rule


def declared_spec(net, granularity: str):
    """The net's own list (``finetune_block_list``: a list, or a method of its class),
    else a rule declared for its class, else None."""
    own = getattr(net, "finetune_block_list", None)
    if callable(own):
        own = own(granularity)
    if own is not None:
        return own
    for cls in type(net).__mro__:
        rule = _DECLARED.get(cls) or _BUILTIN.get(f"{cls.__module__}.{cls.__qualname__}")
        if rule is not None:
            return rule(net, granularity)
    return None


def hook_key(net):
    """What a cached list depends on of the net's own declaration."""
    own = net.__dict__.get("finetune_block_list", getattr(type(net), "finetune_block_list", None))
    return repr(own) if isinstance(own, (list, tuple)) else id(own)
