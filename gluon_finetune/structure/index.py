"""The block index of a network: one owner for its paths, block lists and auxiliary states.

(The module is not called ``blocks`` so that it never shadows the public
function ``gluon_finetune.blocks``.)

:class:`BlockIndex` computes, once per network, what every other part reads:
the structural paths (``paths.py``), each parameter's path, the auxiliary
states a ``SymbolBlock``'s graph declares (they never train) and the block
lists. Every function that numbers blocks reads a list from it, taken, in
this order, from an explicit ``blocks=`` list; the network's own declaration
(``net.finetune_block_list``, a list or a method ``(granularity) -> list``;
``get_model(blocks=...)`` sets it); a rule registered for its class with
:func:`declare_blocks`; else the automatic list of ``automatic.py``.

Reading never changes anything: :func:`can_train` only reads an index. What
an index computes is also kept in a cache keyed weakly by the network (names
and paths only, so that the cache never keeps a network alive), and checked
against the network's structure before it is used: an index built without
the cache gives the same answers.
"""
from __future__ import annotations

import weakref
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

from mxnet import gluon

from .._compat import children, is_differentiable, own_params
from ..errors import InvalidValueError
from .adapted import adapters_of, is_locked
from .automatic import Entry, automatic, is_container
from .declared import (
    declare_blocks,
    declared_spec,
    explicit_entries,
    hook_key,
    spec_items,
)
from .declared import version as declarations_version
from .paths import (
    block_params,
    check_block,
    collect_param_paths,
    collect_paths,
    descendants,
    param_shape,
    walk,
)
from .tracing import symbol_aux_names

__all__ = ["BlockIndex", "block_params", "check_block", "GRANULARITIES", "BlockGroup",
           "declare_blocks", "resolve_granularity", "BlockNames", "walk", "descendants",
           "param_shape", "trains", "Spec"]

GRANULARITIES = ("unit", "stage")
Spec = Sequence[Union[str, Sequence[str]]]
_is_container = is_container  # caching.py cuts only through what this descends into


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
    a block owns itself, or a layer of a SymbolBlock's graph.

    ``blocks(net)`` gives one where an entry of the block list is not a single Block;
    ``collect_params()`` works as on a Block.

    Parameters
    ----------
    label : str
        The entry's label: its paths joined by ``+``.
    paths : tuple of str
        The structural paths it covers.
    params : sequence of Parameter
        Its parameters.

    Examples
    --------
    >>> from gluon_finetune import blocks
    >>> listed = blocks(net, blocks=[("features.0", "features.1"), "features.3",
    ...                              "features.4", "output"])
    >>> listed[0]
    ('features.0+features.1', BlockGroup('features.0+features.1', 6 parameters))
    >>> sorted(listed[0][1].collect_params())[:2]
    ['net_batchnorm0_beta', 'net_batchnorm0_gamma']
    """

    def __init__(self, label: str, paths: Tuple[str, ...], params: Sequence[gluon.Parameter]):
        self.label, self.paths, self.params = label, tuple(paths), tuple(params)

    def collect_params(self) -> Dict[str, gluon.Parameter]:
        """Name -> Parameter for the group's parameters, as ``Block.collect_params`` gives."""
        return {p.name: p for p in self.params}

    def __repr__(self) -> str:
        return f"BlockGroup({self.label!r}, {len(self.params)} parameters)"


class BlockNames(NamedTuple):
    """One entry of the block list as the rule engine sees it."""

    label: str                # its structural path(s), e.g. "features.4" or "a+b"
    names: FrozenSet[str]     # the names of its parameters


def trains(param: gluon.Parameter) -> bool:
    """What a parameter says of itself: differentiable and not a ``Constant``."""
    return is_differentiable(param) and not isinstance(param, gluon.Constant)


# ----------------------------------------------------------------- the index

class _Known:
    """What the cache keeps of one network: names and paths only, never one of its objects
    (a Parameter reaches its trainer and the trainer the network, which would keep the
    weakly keyed network alive)."""

    def __init__(self, signature: tuple):
        self.signature = signature
        self.paths: Optional[Dict[str, FrozenSet[str]]] = None
        self.param_paths: Optional[Dict[str, str]] = None
        self.aux: Optional[FrozenSet[str]] = None
        self.lists: Dict[tuple, Tuple[Tuple[Tuple[str, ...], Tuple[str, ...], bool], ...]] = {}


_KNOWN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(net) -> tuple:
    return tuple((id(b), tuple(children(b)), tuple(map(id, own_params(b).values())))
                 for b in descendants(net))


class BlockIndex:
    """The structure of one network, computed once, then only read.

    Parameters
    ----------
    net : mxnet.gluon.Block

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(8, in_units=4), nn.BatchNorm(in_channels=8), nn.Dense(2, in_units=8))
    >>> index = BlockIndex(net)
    >>> [label for label, _ in index.block_names()]
    ['0', '1', '2']
    >>> index.can_train(net[1].running_mean), index.can_train(net[1].gamma)
    (False, True)
    """

    def __init__(self, net):
        check_block(net)
        self.net = net
        signature = _signature(net)
        known = _KNOWN.get(net)
        if known is None or known.signature != signature:
            known = _Known(signature)
            _KNOWN[net] = known
        self._known = known
        self._params: Optional[Dict[str, gluon.Parameter]] = None
        self._entries: Dict[tuple, List[Entry]] = {}

    @property
    def params(self) -> Dict[str, gluon.Parameter]:
        """Name -> Parameter, as ``net.collect_params()`` lists them."""
        if self._params is None:
            self._params = dict(self.net.collect_params().items())
        return self._params

    @property
    def paths(self) -> Dict[str, FrozenSet[str]]:
        """Every structural path -> names of the parameters inside it."""
        if self._known.paths is None:
            self._known.paths = collect_paths(self.net)
        return self._known.paths

    @property
    def param_paths(self) -> Dict[str, str]:
        """Parameter name -> its structural path (first path for a shared one)."""
        if self._known.param_paths is None:
            self._known.param_paths = collect_param_paths(self.net)
        return self._known.param_paths

    @property
    def aux(self) -> FrozenSet[str]:
        """Names of the auxiliary states of the SymbolBlocks inside (BatchNorm running
        statistics, which MXNet leaves ``_differentiable`` there)."""
        if self._known.aux is None:
            self._known.aux = frozenset(
                name for block in descendants(self.net)
                if isinstance(block, gluon.SymbolBlock) for name in symbol_aux_names(block))
        return self._known.aux

    def can_train(self, param: gluon.Parameter) -> bool:
        """Whether ``param`` can ever be trainable: not a constant, not a running statistic."""
        return trains(param) and param.name not in self.aux

    def in_block_list(self, param: gluon.Parameter) -> bool:
        """What makes a block: a parameter that can train, or one locked by adapters
        (LoRA): adding adapters never renumbers the blocks."""
        return self.can_train(param) or is_locked(param)

    def entries(self, granularity: Optional[str] = None,
                spec: Optional[Spec] = None) -> List[Entry]:
        """The block list as ``automatic.Entry`` records (see :func:`blocks`)."""
        granularity = resolve_granularity(self.net, granularity)
        items = spec_items(spec) if spec is not None else None
        key = (granularity, items, hook_key(self.net), declarations_version())
        if key not in self._entries:
            stored = self._known.lists.get(key)
            if stored is None:
                found = self._compute(granularity, items)
                self._known.lists[key] = tuple(
                    (e.paths, tuple(p.name for p in e.params), e.block is not None)
                    for e in found)
            else:
                found = [self._entry(*s) for s in stored]
            self._entries[key] = found
        return self._entries[key]

    def block_names(self, granularity: Optional[str] = None,
                    spec: Optional[Spec] = None) -> List[BlockNames]:
        """The block list as ``BlockNames(label, names)``: what the rule engine indexes."""
        return [BlockNames(e.label, frozenset(p.name for p in e.params))
                for e in self.entries(granularity, spec)]

    def trainable_only(self, found: List[Entry]) -> List[Entry]:
        """Each parameter in the first block that holds it; blocks that cannot train
        dropped."""
        seen: set = set()
        out = []
        for entry in found:
            mine = tuple(p for p in entry.params if p.name not in seen)
            seen.update(p.name for p in mine)
            if any(self.in_block_list(p) for p in mine):
                out.append(Entry(entry.paths, mine, entry.block, entry.kind))
        return out

    def _compute(self, granularity: str, items) -> List[Entry]:
        if items is None:
            declared = declared_spec(self.net, granularity)
            items = spec_items(declared) if declared is not None else None
        if items is None:
            return self.trainable_only(automatic(self.net, granularity))
        table = dict(self.paths)  # a path in a list: of a block or a parameter, or a name
        for name, path in self.param_paths.items():
            # LoRA's adapters come along with the weight they adapt
            own = frozenset([name] + [a.name for a in adapters_of(self.params[name])])
            table.setdefault(path, own)
            table.setdefault(name, own)
        return explicit_entries(self.net, items, table, self.param_paths, self.in_block_list)

    def _entry(self, paths: Tuple[str, ...], names: Tuple[str, ...], has_block: bool) -> Entry:
        block = None
        if has_block:
            block = self.net
            for part in paths[0].split("."):
                block = children(block)[part]
        return Entry(paths, tuple(self.params[n] for n in names), block)


# ----------------------------------------------------------------- functions of a network
