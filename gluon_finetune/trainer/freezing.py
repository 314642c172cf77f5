"""Freezing: ``grad_req`` switching and the one BatchNorm policy.

A frozen parameter gets ``grad_req='null'``: no gradient buffer, no backward
compute for it, and ``Trainer.step`` skips it. (A naive ``lr_mult=0`` freeze
still pays for the full backward.)

BatchNorm needs more: MXNet updates running mean/var during the backward
pass, so they drift even when gamma/beta are frozen whenever a trainable
layer sits upstream. A frozen BatchNorm is therefore switched to
``use_global_stats=True`` (it behaves as at inference). A hybridized network
only notices that after its cached graphs are cleared, which we do. Inside a
``SymbolBlock`` a BatchNorm is an operator node of the graph: the block gets
a copy of its graph with that node's flag set (and its own graph back when
the node thaws).
"""
from __future__ import annotations

import json
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

import mxnet as mx
from mxnet import gluon

from .._compat import (
    clear_cached_op,
    graph_output,
    set_global_stats,
    set_graph_output,
    uses_global_stats,
)
from ..checks import InvalidTypeError, InvalidValueError, is_int
from ..rules.scope import rule_scope
from ..structure.index import BlockIndex, check_block, descendants, trains
from ..structure.listing import last_blocks_names
from ..structure.normalization import (
    batchnorm_deciders,
    batchnorm_layers,
    batchnorm_nodes,
    symbol_blocks,
)

__all__ = ["BN_POLICIES", "check_bn_policy", "batchnorm_layers", "set_frozen",
           "apply_bn_policy", "clear_cached_graphs", "freeze", "unfreeze", "trainable_req",
           "bn_state", "restore_bn_state"]

BN_POLICIES = ("frozen", "stats", "train")
_ORIGINAL = "_finetune_original_global_stats"
_GRAPH = "_finetune_original_graph"     # a SymbolBlock's own graph
_FORCED = "_finetune_global_stats_nodes"  # its BatchNorm nodes now on global statistics


def check_bn_policy(bn: str) -> str:
    """``bn`` if it is one of ``BN_POLICIES``, else InvalidValueError."""
    if not isinstance(bn, str) or bn not in BN_POLICIES:
        raise InvalidValueError(f"bn must be one of {BN_POLICIES} ('frozen': scale, shift "
                                f"and running statistics fixed; 'stats': running statistics "
                                f"keep updating; 'train': scale and shift also train), got "
                                f"{bn!r}", argument="bn")
    return bn


def _trainable_names(block) -> Set[str]:
    # Gluon BatchNorm layers only: their statistics say themselves that they never train
    return {p.name for p in block.collect_params().values() if trains(p)}


def trainable_req(grad_req: str, differentiable: bool) -> str:
    """The ``grad_req`` a parameter gets when trainable: its own, or ``'write'`` if it
    was frozen; never-trainable ones (running statistics) stay ``'null'``."""
    if grad_req != "null":
        return grad_req
    return "write" if differentiable else "null"


def set_frozen(params: Sequence[gluon.Parameter], frozen: Sequence[bool],
               trainable_req: Sequence[str]) -> List[int]:
    """Set ``grad_req`` of each parameter; return the positions whose state changed.

    ``trainable_req`` is each parameter's own ``grad_req`` when trainable
    (``'write'`` or ``'add'``; ``'null'`` for never-trainable ones such as
    running statistics, which stay ``'null'``).
    """
    changed = []
    for i, (param, freeze, req) in enumerate(zip(params, frozen, trainable_req)):
        wanted = "null" if freeze else req
        if param.grad_req != wanted:
            param.grad_req = wanted
            changed.append(i)
    return changed


def apply_bn_policy(net, frozen_names: Set[str], bn: str,
                    owned: Optional[Set[str]] = None, index: Optional[BlockIndex] = None) -> bool:
    """Fix the running statistics of fully frozen BatchNorm layers per policy ``bn``.

    A BatchNorm counts as frozen when all its trainable parameters are in
    ``frozen_names`` (one without any, as ResNet v2's input BatchNorm, follows the
    layer beside it: ``structure.normalization.batchnorm_deciders``). ``'frozen'``
    sets ``use_global_stats=True`` there; ``'stats'`` and ``'train'`` leave the
    layer's own setting. Layers that are no longer frozen get their own setting
    back; layers with nothing that can train, here or beside them (scale and shift
    locked by LoRA adapters) are left as they are. BatchNorm nodes inside a
    ``SymbolBlock``'s graph count as layers (their gamma and beta). With
    ``owned`` (a trainer's parameter names) only layers whose parameters are
    all owned are touched: a trainer over part of a network leaves the rest
    alone. Returns whether anything changed.
    """
    check_bn_policy(bn)
    changed = False
    for layer, names in batchnorm_deciders(net, index):
        if not names or (owned is not None and not names <= owned):
            continue  # a layer locked by adapters (LoRA) keeps what they set
        if not hasattr(layer, _ORIGINAL):
            object.__setattr__(layer, _ORIGINAL, uses_global_stats(layer))
        frozen = bool(names) and names <= frozen_names
        wanted = True if (frozen and bn == "frozen") else getattr(layer, _ORIGINAL)
        if uses_global_stats(layer) != wanted:
            set_global_stats(layer, wanted)
            changed = True
    for _, block in symbol_blocks(net):
        changed |= _graph_bn_policy(block, frozen_names, bn, owned)
    if changed:
        clear_cached_graphs(net)
    return changed


def _graph_bn_policy(block: gluon.SymbolBlock, frozen_names: Set[str], bn: str,
                     owned: Optional[Set[str]]) -> bool:
    """``apply_bn_policy`` for the BatchNorm nodes of a SymbolBlock's graph."""
    forced = _forced(block)
    wanted = set()
    for name, node in batchnorm_nodes(block).items():
        params = set(node.params)
        if owned is not None and not params <= owned:
            wanted |= {name} & forced  # another trainer's: left as it is
        elif bn == "frozen" and params and params <= frozen_names:
            wanted.add(name)
    if wanted == forced:
        return False
    _set_global_stats(block, frozenset(wanted))
    return True


def _forced(block: gluon.SymbolBlock) -> FrozenSet[str]:
    return block.__dict__.get(_FORCED, frozenset())


def _set_global_stats(block: gluon.SymbolBlock, nodes: FrozenSet[str]) -> None:
    """Run the block on its own graph with ``use_global_stats=True`` on ``nodes`` (none:
    its own graph itself)."""
    own = block.__dict__.get(_GRAPH)
    if own is None:
        own = graph_output(block)
        object.__setattr__(block, _GRAPH, own)  # not Block.__setattr__: no child, no parameter
    graph = json.loads(own.tojson())
    for node in graph["nodes"]:
        if node["name"] in nodes:
            node.setdefault("attrs", {})["use_global_stats"] = "True"
    copy = mx.sym.load_json(json.dumps(graph)) if nodes else own
    if type(copy) is not type(own):  # NumPy mode: the graph's symbols are NumPy symbols
        copy = copy.as_np_ndarray()
    set_graph_output(block, copy)
    object.__setattr__(block, _FORCED, nodes)
    clear_cached_op(block)  # a SymbolBlock keeps its graph, drops its cached op


def bn_state(net) -> List[Tuple[gluon.Block, Any]]:
    """What the BatchNorm policy may change in ``net``, for :func:`restore_bn_state`."""
    return [(layer, uses_global_stats(layer)) for layer in batchnorm_layers(net)] + \
        [(block, _forced(block)) for _, block in symbol_blocks(net)]


def restore_bn_state(net, state: List[Tuple[gluon.Block, Any]]) -> None:
    """Put back the BatchNorm modes :func:`bn_state` recorded."""
    changed = False
    for block, mode in state:
        if isinstance(block, gluon.SymbolBlock):
            if _forced(block) != mode:
                _set_global_stats(block, mode)
                changed = True
        elif uses_global_stats(block) != mode:
            set_global_stats(block, mode)
            changed = True
    if changed:
        clear_cached_graphs(net)


def clear_cached_graphs(net) -> None:
    """Make hybridized blocks rebuild their graph (they cache BatchNorm's flags)."""
    for block in descendants(net):
        if isinstance(block, gluon.HybridBlock):
            clear_cached_op(block)


def bn_param_names(net) -> Dict[str, str]:
    """Names of BatchNorm scale/shift parameters -> the layer's name (for bn='train')."""
    out = {}
    for layer in batchnorm_layers(net):
        for name in _trainable_names(layer):
            out[name] = layer.name
    for _, block in symbol_blocks(net):
        for node in batchnorm_nodes(block).values():
            out.update(dict.fromkeys(node.params, node.node))
    return out


def _set_block_freeze(net, index: BlockIndex, frozen_names: Set[str], bn: str) -> None:
    params = list(net.collect_params().values())
    set_frozen(params, [p.name in frozen_names for p in params],
               [trainable_req(p.grad_req, index.can_train(p)) for p in params])
    apply_bn_policy(net, frozen_names, bn)


def _kept_training(net, names: Set[str], bn: str) -> Set[str]:
    """``names`` to freeze, less BatchNorm scale and shift under ``bn='train'`` (they keep
    training, as under a trainer's rules and limit)."""
    return names - set(bn_param_names(net)) if bn == "train" else names


def freeze(net, layers="*", bn: str = "frozen", granularity: Optional[str] = None,
           blocks=None) -> List[str]:
    """Freeze the parameters that ``layers`` names (any rule key; default all).

    Other parameters are left as they are. Frozen means ``grad_req='null'``
    (no gradient computed, weights bit-identical through any training); fully
    frozen BatchNorm layers follow policy ``bn`` (``'train'``: their scale and
    shift stay trainable). No trainer is needed.

    Parameters
    ----------
    net : Block
        The network.
    layers : rule key
        What to freeze: a structural path, parameter name, glob, ``re:`` regex,
        block index or range, ``"*"``, or a tuple or list of them.
    bn : {'frozen', 'stats', 'train'}
        What a fully frozen BatchNorm does ('frozen': inference mode).
    granularity : {'unit', 'stage'}, optional
        The block list index and range keys count; default: the net's own.
    blocks : list, optional
        An explicit block list.

    Returns
    -------
    list of str
        The names of the parameters ``layers`` names, now frozen (those it froze
        and those already frozen; never running statistics, which never train).

    Raises
    ------
    RuleError
        A key that names nothing (``NoMatchError``) or cannot be a rule key.
    InvalidValueError
        An unknown ``bn``.

    Examples
    --------
    >>> from gluon_finetune import freeze
    >>> freeze(net, "features.0")
    ['net_conv0_bias', 'net_conv0_weight']
    >>> len(freeze(net, slice(0, -1)))  # every block but the head: 2 convs, 2 BatchNorms
    8
    >>> net.output.weight.grad_req, net.features[1].gamma.grad_req
    ('write', 'null')
    """
    check_bn_policy(bn)
    check_block(net)
    index = BlockIndex(net)
    scope = rule_scope(list(net.collect_params().values()), index, granularity=granularity,
                       blocks=blocks)
    key = tuple(layers) if isinstance(layers, list) else layers
    # a list of pairs, not a dict: a slice key is unhashable before Python 3.12
    table = scope.resolve([(key, 0)])
    newly = _kept_training(net, {s.name for s in table if s.frozen} - scope.fixed, bn)
    _set_block_freeze(net, index, set(scope.frozen) | newly, bn)
    return sorted(newly)


def unfreeze(net, n=None, bn: str = "frozen", granularity: Optional[str] = None,
             blocks=None) -> List[str]:
    """Make exactly the last ``n`` blocks of ``blocks(net, granularity, blocks)`` trainable.

    ``n=None`` makes every parameter that can train trainable; ``0`` freezes
    everything. Blocks before the last ``n`` are frozen (BatchNorm per
    ``bn``; with ``'train'`` their scale and shift stay trainable); running statistics
    and constants never train.

    Parameters
    ----------
    net : Block
        The network.
    n : int or None
        How many blocks, counted from the head, train (``1``: the head only).
    bn : {'frozen', 'stats', 'train'}
        What a fully frozen BatchNorm does ('frozen': inference mode).
    granularity : {'unit', 'stage'}, optional
        What a block is; default: the net's own.
    blocks : list, optional
        An explicit block list.

    Returns
    -------
    list of str
        The labels of the trainable blocks.

    Raises
    ------
    InvalidValueError
        ``n`` out of range (the message lists the blocks), an unknown ``bn``.

    Examples
    --------
    >>> from gluon_finetune import unfreeze
    >>> unfreeze(net, 2)
    ['features.4', 'output']
    >>> net.features[3].weight.grad_req, net.features[4].gamma.grad_req
    ('null', 'write')
    >>> unfreeze(net, None)[:2]
    ['features.0', 'features.1']
    """
    check_bn_policy(bn)
    check_block(net)
    index = BlockIndex(net)
    listed = index.block_names(granularity, blocks)
    n = check_unfreeze(n, listed)
    n = len(listed) if n is None else n
    trainable = last_blocks_names(listed, n)
    frozen = {p.name for p in net.collect_params().values()
              if index.can_train(p) and p.name not in trainable}
    _set_block_freeze(net, index, _kept_training(net, frozen, bn), bn)
    return [path for path, _ in listed[len(listed) - n:]]


def prepare_for_finetuning(net, n, granularity: str, bn: str, blocks=None):
    """What ``get_model`` does last: record the block list on ``net`` and keep the last ``n``
    blocks trainable (``None``: all).

    Sets ``net.finetune_granularity``, ``net.finetune_blocks`` (the labels)
    and, for an explicit ``blocks``, ``net.finetune_block_list``, so that every
    later call on ``net`` (trainer, ``explain``, ``layer_decay`` ...) uses the
    same list. Checks ``n`` before anything changes.
    """
    listed = BlockIndex(net).block_names(granularity, blocks)
    n = check_unfreeze(n, listed)
    net.finetune_granularity = granularity
    if blocks is not None:
        net.finetune_block_list = blocks
    net.finetune_blocks = tuple(label for label, _ in listed)
    if n is not None:
        unfreeze(net, n, bn=bn, granularity=granularity)
    return net


def check_unfreeze(n, listed) -> Optional[int]:
    """``n`` as an int (NumPy integers welcome) in 0..len(blocks), or None; the error
    lists the blocks."""
    if n is None:
        return None
    if not is_int(n):
        raise InvalidTypeError(f"unfreeze must be None or an int number of blocks, got "
                               f"{type(n).__name__}: {n!r}", argument="unfreeze")
    if not 0 <= n <= len(listed):
        raise InvalidValueError(f"unfreeze={n} is out of range: the network has "
                                f"{len(listed)} blocks (0..{len(listed)} can stay trainable): "
                                f"{describe_blocks(listed)}", argument="unfreeze")
    return int(n)


def describe_blocks(listed) -> str:
    """``0:features.0, 1:features.1, ...`` for messages."""
    return ", ".join(f"{i}:{p}" for i, (p, _) in enumerate(listed))
