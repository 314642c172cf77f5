"""Structural names and the block list of a Gluon ``Block``: the one source of block lists.

(The module is not called ``blocks`` so that it never shadows the public
function ``gluon_finetune.blocks``.)

A structural path is the dotted chain of child names Gluon registers
(``"features.4.0.body"``, ``"output"``, ``"l3"``), found by walking
``Block._children``; inside a ``SymbolBlock`` the graph's layers
(``"resnetv10_conv0"``) are paths too. Parameter-name prefixes are no
substitute: both units of a ResNet stage share one prefix.

Every function that numbers blocks calls :func:`block_names` (or
:func:`blocks`), which takes the list from, in this order: an explicit
``blocks=`` list; the network's own declaration (``net.finetune_block_list``,
a list or a method ``(granularity) -> list``; ``get_model(blocks=...)`` sets
it); a rule registered for its class with :func:`declare_blocks`; else the
automatic list of ``grouping.py``.
"""
from __future__ import annotations

import weakref
from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from mxnet import gluon

from ..checks import did_you_mean
from ..errors import InvalidTypeError, InvalidValueError, UnknownNameError
from .automatic import Entry, automatic, is_container, join
from .declared import (
    declare_blocks,
    declare_builtin,
    declared_spec,
    explicit_entries,
    hook_key,
    spec_items,
)
from .declared import version as declarations_version
from .tracing import symbol_aux_names, symbol_layers

__all__ = ["blocks", "block_params", "structural_paths", "block_names", "last_blocks_names",
           "param_paths", "check_block", "GRANULARITIES", "BlockGroup", "automatic_blocks",
           "declare_blocks", "can_train", "resolve_granularity", "BlockNames", "walk",
           "descendants", "param_shape"]

GRANULARITIES = ("unit", "stage")
Spec = Sequence[Union[str, Sequence[str]]]
_is_container = is_container  # caching.py cuts only through what this descends into
_AUX: weakref.WeakSet[gluon.Parameter] = weakref.WeakSet()
_CACHE = "_finetune_block_lists"  # on the net: cached children reach back to the root


def check_block(net) -> None:
    if not isinstance(net, gluon.Block):
        raise InvalidTypeError(f"net must be a mxnet.gluon.Block, got {type(net).__name__}: "
                               f"{net!r}")


def resolve_granularity(net, granularity: Optional[str]) -> str:
    """``granularity``, or for None the net's own (``net.finetune_granularity``, else 'unit')."""
    if granularity is None:
        granularity = getattr(net, "finetune_granularity", "unit")
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise InvalidValueError(f"granularity must be one of {GRANULARITIES} or None (the net's "
                                f"own), got {granularity!r}")
    return granularity


class BlockGroup:
    """A block that is not one Gluon Block: several paths (BERT's embeddings), a parameter
    a block owns itself, or a layer of a SymbolBlock's graph."""

    def __init__(self, label: str, paths: Tuple[str, ...], params: Sequence[gluon.Parameter]):
        self.label, self.paths, self.params = label, tuple(paths), tuple(params)

    def collect_params(self) -> Dict[str, gluon.Parameter]:
        return {p.name: p for p in self.params}

    def __repr__(self) -> str:
        return f"BlockGroup({self.label!r}, {len(self.params)} parameters)"


# ----------------------------------------------------------------- trainability

def param_shape(param: gluon.Parameter) -> Tuple[int, ...]:
    """A parameter's shape: its data's once it has data (a SymbolBlock's parameters keep
    ``shape=None`` even then), else the declared one (0: not known yet)."""
    if param._data is not None:
        return tuple(int(d) for d in param._data[0].shape)
    return tuple(int(d) for d in (param.shape or ()))


def walk(block, prefix: str = "") -> Iterator[Tuple[str, gluon.Block]]:
    """``block`` and every block below it, depth first in registration order, with its
    structural path (``""`` for ``block`` itself)."""
    yield prefix, block
    for name, child in block._children.items():
        yield from walk(child, join(prefix, name))


def descendants(block) -> Iterator[gluon.Block]:
    """``block`` and every block below it (see :func:`walk`)."""
    return (b for _, b in walk(block))


def _register_aux(net) -> None:
    for block in descendants(net):
        if isinstance(block, gluon.SymbolBlock):
            params = block.collect_params()
            _AUX.update(params[name] for name in symbol_aux_names(block))


def can_train(param: gluon.Parameter, net=None) -> bool:
    """Whether ``param`` can ever be trainable: not a constant, not a running statistic.

    MXNet marks Gluon BatchNorm statistics ``differentiable=False``, but a
    ``SymbolBlock`` leaves its auxiliary states ``_differentiable=True`` (only
    ``grad_req='null'``): they are recognised once ``net`` (or any block list
    of a network holding that SymbolBlock) has been seen.
    """
    if net is not None:
        _register_aux(net)
    return bool(param._differentiable) and not isinstance(param, gluon.Constant) \
        and param not in _AUX


# ----------------------------------------------------------------- paths

def _collect_paths(block, prefix: str, paths: Dict[str, FrozenSet[str]]) -> FrozenSet[str]:
    names = set(block.params.keys()) | {p.name for p in block._reg_params.values()}
    if isinstance(block, gluon.SymbolBlock):
        for layer, layer_names in symbol_layers(block):
            paths[join(prefix, layer)] = frozenset(layer_names)
    for name, child in block._children.items():
        names |= _collect_paths(child, join(prefix, name), paths)
    frozen = frozenset(names)
    if prefix:
        paths[prefix] = frozen
    return frozen


def structural_paths(net) -> Dict[str, FrozenSet[str]]:
    """Every structural path of ``net`` -> names of the parameters inside it."""
    check_block(net)
    paths: Dict[str, FrozenSet[str]] = {}
    _collect_paths(net, "", paths)
    return paths


def param_paths(net) -> Dict[str, str]:
    """Parameter name -> its structural path (``"features.0.weight"``), first path for a
    shared one. Stable across rebuilds, unlike names, which carry global counters."""
    check_block(net)
    out: Dict[str, str] = {}

    def visit(block, prefix: str) -> None:
        for attr, param in block._reg_params.items():
            out.setdefault(param.name, join(prefix, attr))
        for name, child in block._children.items():
            visit(child, join(prefix, name))

    visit(net, "")
    return out


def block_params(net, path: str) -> List[gluon.Parameter]:
    """The parameters inside the block at structural ``path`` (e.g. ``"features.4"``).

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(8), nn.Dense(2))
    >>> [p.name.split("_")[-1] for p in block_params(net, "1")]
    ['weight', 'bias']
    """
    check_block(net)
    if not isinstance(path, str):
        raise InvalidTypeError(f"path must be a str such as 'features.4', got {path!r}")
    block = net
    parts = path.split(".") if path else []
    for depth, part in enumerate(parts):
        children = block._children
        if part not in children:
            if isinstance(block, gluon.SymbolBlock):
                return _layer_params(block, ".".join(parts[depth:]), path)
            here = ".".join(parts[:depth]) or "<root>"
            raise UnknownNameError(f"no child {part!r} under {here}; it has {list(children)}. "
                                   f"{did_you_mean(part, children)}".rstrip())
        block = children[part]
    return list(block.collect_params().values())


def _layer_params(block: gluon.SymbolBlock, layer: str, path: str) -> List[gluon.Parameter]:
    layers = dict(symbol_layers(block))
    if layer not in layers:
        raise UnknownNameError(f"no layer {layer!r} in the SymbolBlock graph at {path!r}. "
                               f"{did_you_mean(layer, layers)}".rstrip())
    params = block.collect_params()
    return [params[n] for n in layers[layer]]


# ----------------------------------------------------------------- the block list

def _trainable_only(net, found: List[Entry]) -> List[Entry]:
    """Each parameter in the first block that holds it; blocks that cannot train dropped."""
    seen: set = set()
    out = []
    for entry in found:
        mine = tuple(p for p in entry.params if p.name not in seen)
        seen.update(p.name for p in mine)
        if any(can_train(p) for p in mine):
            out.append(Entry(entry.paths, mine, entry.block, entry.kind))
    return out


def _signature(net) -> tuple:
    return tuple((id(b), tuple(b._children), tuple(map(id, b._reg_params.values())))
                 for b in descendants(net))


def _explicit(net, items) -> List[Entry]:
    table = dict(structural_paths(net))  # a path in a list: of a block or a parameter, or a name
    paths = param_paths(net)
    for name, path in paths.items():
        table.setdefault(path, frozenset([name]))
        table.setdefault(name, frozenset([name]))
    return explicit_entries(net, items, table, paths, can_train)


def _entries(net, granularity: Optional[str], spec) -> List[Entry]:
    check_block(net)
    granularity = resolve_granularity(net, granularity)
    items = spec_items(spec) if spec is not None else None
    key = (granularity, items, hook_key(net), declarations_version())
    signature = _signature(net)
    cache = net.__dict__.get(_CACHE)
    if cache is None:
        cache = {}
        object.__setattr__(net, _CACHE, cache)  # not Block.__setattr__: no child, no parameter
    cached = cache.get(key)
    if cached is not None and cached[0] == signature:
        return cached[1]
    _register_aux(net)
    if items is None:
        declared = declared_spec(net, granularity)
        items = spec_items(declared) if declared is not None else None
    found = _explicit(net, items) if items is not None else \
        _trainable_only(net, automatic(net, granularity))
    cache[key] = (signature, found)
    return found


def _shown(entry: Entry):
    return entry.block if entry.block is not None else \
        BlockGroup(entry.label, entry.paths, entry.params)


def blocks(net, granularity: Optional[str] = None,
           blocks: Optional[Spec] = None) -> List[Tuple[str, object]]:
    """The block list of ``net``: ``(path, block)`` pairs in forward order.

    For a HybridBlock, the order its traced graph uses the parameters (see
    ``grouping.py`` for the rules). A model-zoo ResNet gives the stem conv,
    the stem BatchNorm, each residual unit and the head; a GluonNLP BERT
    classifier the embeddings (one block), each transformer layer, the
    pooler and the head. Every trainable parameter is in exactly one block;
    a block that cannot train (constants only) is no block. ``block`` is the
    Gluon Block, or a :class:`BlockGroup` where a block is not one Block.

    Parameters
    ----------
    net : mxnet.gluon.Block
    granularity : {"unit", "stage"}, optional
        ``"stage"`` keeps chains of units whole (ResNet stages, BERT's
        stack of layers). Default: the net's own (``net.finetune_granularity``,
        set by ``get_model``), else ``"unit"``.
    blocks : list, optional
        An explicit list: structural paths of blocks or parameters (or
        parameter names), in order; a tuple of paths is one block.

    Returns
    -------
    list of (str, Block or BlockGroup)
        The label is the path, or the paths joined by ``+`` for a group.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(8, activation="relu"), nn.Dense(2))
    >>> [path for path, _ in blocks(net)]
    ['0', '1']
    """
    return [(e.label, net if e.paths == ("",) else _shown(e))
            for e in _entries(net, granularity, blocks)]


class BlockNames(NamedTuple):
    """One entry of the block list as the rule engine sees it."""

    label: str                # its structural path(s), e.g. "features.4" or "a+b"
    names: FrozenSet[str]     # the names of its parameters


def block_names(net, granularity: Optional[str] = None,
                blocks: Optional[Spec] = None) -> List[BlockNames]:
    """The block list as ``BlockNames(label, names)``: what the rule engine indexes."""
    return [BlockNames(e.label, frozenset(p.name for p in e.params))
            for e in _entries(net, granularity, blocks)]


def automatic_blocks(net, granularity: str = "unit") -> List[Union[str, Tuple[str, ...]]]:
    """The automatic list (no declaration, no explicit list) in the form ``blocks=`` takes."""
    check_block(net)
    granularity = resolve_granularity(net, granularity)
    _register_aux(net)
    return [e.paths[0] if len(e.paths) == 1 else e.paths
            for e in _trainable_only(net, automatic(net, granularity))]


def last_blocks_names(listed: List[Tuple[str, FrozenSet[str]]], n: int) -> FrozenSet[str]:
    """Names of the parameters in the last ``n`` entries of a ``block_names`` list."""
    return frozenset().union(*(names for _, names in listed[len(listed) - n:])) if n else \
        frozenset()


def _rcnn_rule(net, granularity: str):
    # parallel heads: forward order puts the box regressor after the class scores;
    # the class predictor is the classification head, so it is last
    spec = automatic_blocks(net, granularity)
    return [s for s in spec if s != "class_predictor"] + \
        (["class_predictor"] if "class_predictor" in spec else [])


declare_builtin("gluoncv.model_zoo.rcnn.rcnn.RCNN", _rcnn_rule)
