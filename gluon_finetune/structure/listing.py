"""The block list and structural paths of a network, as functions: each reads its
``BlockIndex`` (the one owner of a network's paths and lists, ``index.py``)."""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Tuple, Union

from mxnet import gluon

from .automatic import Entry, automatic
from .index import BlockGroup, BlockIndex, BlockNames, Spec, resolve_granularity, trains

__all__ = ["can_train", "structural_paths", "param_paths", "blocks", "block_names",
           "automatic_blocks", "last_blocks_names"]


def can_train(param: gluon.Parameter, net=None) -> bool:
    """Whether ``param`` can ever be trainable: not a constant, not a running statistic.

    MXNet marks Gluon BatchNorm statistics ``differentiable=False``, but a
    ``SymbolBlock`` leaves its auxiliary states ``_differentiable=True`` (only
    ``grad_req='null'``): those need ``net``, the network that holds the
    SymbolBlock (without it only the parameter itself is asked).

    Parameters
    ----------
    param : Parameter
        The parameter.
    net : Block, optional
        A network holding it: needed for a ``SymbolBlock``'s auxiliary states.

    Returns
    -------
    bool
        False for constants, running statistics and weights locked by adapters; no
        rule, ``unfreeze`` or trainer makes those trainable.

    Raises
    ------
    InvalidTypeError
        ``net`` given and not a Block.

    Examples
    --------
    >>> from gluon_finetune import can_train
    >>> can_train(net.features[1].gamma), can_train(net.features[1].running_mean)
    (True, False)
    """
    return BlockIndex(net).can_train(param) if net is not None else trains(param)


def structural_paths(net) -> Dict[str, FrozenSet[str]]:
    """Every structural path of ``net`` -> names of the parameters inside it.

    The paths that rule keys such as ``"features.4"`` name: child names as Gluon
    registers them (attribute names, ``"0"``, ``"1"`` ... in a Sequential), and the
    layers of a ``SymbolBlock``'s graph.

    Parameters
    ----------
    net : Block
        The network.

    Returns
    -------
    dict of str to frozenset of str
        Path -> the names of every parameter inside that block.

    Raises
    ------
    InvalidTypeError
        ``net`` is not a Block.

    Examples
    --------
    >>> from gluon_finetune import structural_paths
    >>> paths = structural_paths(net)
    >>> sorted(paths)[:3], sorted(paths["output"])
    (['features', 'features.0', 'features.1'], ['net_dense0_bias', 'net_dense0_weight'])
    """
    return dict(BlockIndex(net).paths)


def param_paths(net) -> Dict[str, str]:
    """Parameter name -> its structural path (``"features.0.weight"``), first path for a
    shared one. Stable across rebuilds, unlike names, which carry global counters."""
    return dict(BlockIndex(net).param_paths)


def _shown(entry: Entry):
    return entry.block if entry.block is not None else \
        BlockGroup(entry.label, entry.paths, entry.params)


def blocks(net, granularity: Optional[str] = None,
           blocks: Optional[Spec] = None) -> List[Tuple[str, object]]:
    """The block list of ``net``: ``(path, block)`` pairs in forward order.

    For a HybridBlock, the order its traced graph uses the parameters (the block
    list guide gives the rules). A model-zoo ResNet gives the stem conv,
    the stem BatchNorm, each residual unit and the head; a GluonNLP BERT
    classifier the embeddings (one block), each transformer layer, the
    pooler and the head. Every trainable parameter is in exactly one block;
    a block that cannot train (constants only) is no block. ``block`` is the
    Gluon Block, or a :class:`BlockGroup` where a block is not one Block.

    Parameters
    ----------
    net : mxnet.gluon.Block
        The network.
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

    Raises
    ------
    InvalidValueError
        An explicit list that misses a trainable parameter, names one twice or
        names nothing (close names suggested); an unknown granularity.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(8, activation="relu"), nn.Dense(2))
    >>> [path for path, _ in blocks(net)]
    ['0', '1']
    """
    return [(e.label, net if e.paths == ("",) else _shown(e))
            for e in BlockIndex(net).entries(granularity, blocks)]


def block_names(net, granularity: Optional[str] = None,
                blocks: Optional[Spec] = None) -> List[BlockNames]:
    """The block list as ``BlockNames(label, names)``: what the rule engine indexes.

    Parameters
    ----------
    net : Block
        The network.
    granularity : {"unit", "stage"}, optional
        As for :func:`blocks`.
    blocks : list, optional
        As for :func:`blocks`.

    Returns
    -------
    list of BlockNames
        ``(label, frozenset of parameter names)`` per block, in order.

    Raises
    ------
    InvalidValueError
        As for :func:`blocks`.

    Examples
    --------
    >>> from gluon_finetune import block_names
    >>> listed = block_names(net)
    >>> [entry.label for entry in listed]
    ['features.0', 'features.1', 'features.3', 'features.4', 'output']
    >>> sorted(listed[-1].names)
    ['net_dense0_bias', 'net_dense0_weight']
    """
    return BlockIndex(net).block_names(granularity, blocks)


def automatic_blocks(net, granularity: str = "unit") -> List[Union[str, Tuple[str, ...]]]:
    """The automatic list (no declaration, no explicit list) in the form ``blocks=`` takes.

    A starting point to edit into an explicit or declared list.

    Parameters
    ----------
    net : Block
        The network.
    granularity : {"unit", "stage"}
        What a block is.

    Returns
    -------
    list of str or tuple of str
        A path per block; a tuple of paths for a block of several.

    Raises
    ------
    InvalidValueError
        An unknown granularity (``InvalidTypeError``: ``net`` is not a Block).

    Examples
    --------
    >>> from gluon_finetune import automatic_blocks, blocks
    >>> automatic_blocks(net)
    ['features.0', 'features.1', 'features.3', 'features.4', 'output']
    >>> merged = automatic_blocks(net)[:2] + [("features.3", "features.4"), "output"]
    >>> [label for label, _ in blocks(net, blocks=merged)]
    ['features.0', 'features.1', 'features.3+features.4', 'output']
    """
    index = BlockIndex(net)
    granularity = resolve_granularity(net, granularity)
    return [e.paths[0] if len(e.paths) == 1 else e.paths
            for e in index.trainable_only(automatic(net, granularity))]


def last_blocks_names(listed: List[Tuple[str, FrozenSet[str]]], n: int) -> FrozenSet[str]:
    """Names of the parameters in the last ``n`` entries of a ``block_names`` list."""
    return frozenset().union(*(names for _, names in listed[len(listed) - n:])) if n else \
        frozenset()
