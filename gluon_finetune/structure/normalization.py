"""Normalization layers and operators: the one place that knows them.

A network holds normalization as Gluon layers (found by type, or by the
``use_global_stats`` switch of a layer that runs MXNet's BatchNorm operator
itself: Gluon's ``BatchNorm`` and its subclasses, ``SyncBatchNorm``, GluonCV's
``FrozenBatchNorm2D`` ... keep it in their operator flags, read in ``_compat``) or,
inside a ``SymbolBlock`` (an imported model, alone or nested in a ``Sequential``),
as operator nodes of
its graph (found by operator name). ``no_weight_decay``, the BatchNorm policy
of freezing (``bn='frozen'`` sets the switch), ``explain``, feature caching and
snapshots all ask here.
"""
from __future__ import annotations

import json
from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Set, Tuple

from mxnet import gluon
from mxnet.gluon import nn

from .._compat import (
    batchnorm_base,
    children,
    graph_output,
    has_global_stats,
    is_differentiable,
)
from .index import BlockIndex, descendants, walk

__all__ = ["batchnorm_layers", "batchnorm_deciders", "BATCHNORM_OPS", "NORM_OPS", "NORM_TYPES",
           "GraphNorm", "is_batchnorm_layer", "is_norm_layer", "symbol_blocks", "graph_norms",
           "graph_biases", "graph_nodes", "batchnorm_nodes", "on_global_stats"]

# MXNet 1.9.1's operators that run batch normalization, each with a use_global_stats flag
# (src/operator: nn/batch_norm.cc, alias _npx_batch_norm; batch_norm_v1.cc;
# contrib/sync_batch_norm.cc; contrib/batch_norm_relu.cc, what nn.BatchNormReLU runs;
# nn/cudnn/cudnn_batch_norm.cc). A graph names an operator by its registered name.
BATCHNORM_OPS = frozenset({"BatchNorm", "_npx_batch_norm", "BatchNorm_v1",
                           "_contrib_SyncBatchNorm", "_contrib_BatchNormWithReLU",
                           "CuDNNBatchNorm"})
# ... and every normalization operator with a learned scale and shift (nn/layer_norm.cc with
# its alias _npx_layer_norm, nn/group_norm.cc, instance_norm.cc).
NORM_OPS = BATCHNORM_OPS | {"LayerNorm", "_npx_layer_norm", "GroupNorm", "InstanceNorm"}
# The layers that run them (``_BatchNorm`` covers BatchNorm, BatchNormReLU, SyncBatchNorm).
NORM_TYPES: Tuple[type, ...] = (batchnorm_base(nn), nn.LayerNorm, nn.GroupNorm,
                                nn.InstanceNorm)
# operator -> position of its bias among its inputs (contrib/deformable_convolution.cc:
# data, offset, weight, bias; modulated_deformable_convolution.cc: data, offset, mask,
# weight, bias)
_BIAS_INPUTS = {"FullyConnected": 2, "Convolution": 2, "Deconvolution": 2,
                "_contrib_DeformableConvolution": 3, "_contrib_ModulatedDeformableConvolution": 4}


class GraphNorm(NamedTuple):
    """A normalization operator node of a ``SymbolBlock``'s graph."""

    node: str                    # the node's name
    op: str                      # the operator (one of NORM_OPS)
    params: Tuple[str, ...]      # its learned scale and shift (gamma, beta)
    stats: Tuple[str, ...]       # its running statistics (auxiliary states), if any
    global_stats: bool           # a BatchNorm on its running statistics (use_global_stats)


def _runs_batchnorm_op(block) -> bool:
    """A layer that runs MXNet's BatchNorm operator itself, with a ``use_global_stats``
    switch."""
    return has_global_stats(block)


def is_batchnorm_layer(block) -> bool:
    """A BatchNorm: a layer that runs MXNet's BatchNorm operator with a
    ``use_global_stats`` switch and keeps running statistics of its own (Gluon's
    BatchNorm family, and layers of other libraries that wrap the operator themselves).
    GluonCV's ``GroupNorm`` runs the operator too, on zero/one statistics it makes at
    each call: switching it to "global statistics" would stop it normalising."""
    return _runs_batchnorm_op(block) and \
        any(not is_differentiable(p) for p in block.params.values())


def batchnorm_layers(net) -> List[nn.BatchNorm]:
    """Every BatchNorm-like layer of ``net`` (one with a ``use_global_stats`` switch)."""
    return [b for b in descendants(net) if is_batchnorm_layer(b)]


def batchnorm_deciders(net, index: Optional[BlockIndex] = None
                       ) -> List[Tuple[gluon.Block, FrozenSet[str]]]:
    """Every BatchNorm-like layer of ``net``, with the trainable parameters whose freezing
    makes it a frozen layer: its own scale and shift; for a layer with neither (ResNet
    v2's input BatchNorm: ``scale=False, center=False``), those of the nearest block
    beside it in its container that has some (the next one, else the one before; the
    container's neighbours where it has none): it follows the layers around it.
    ``index``: ``net``'s ``BlockIndex`` where the caller has one."""
    parents = {id(child): block for block in descendants(net)
               for child in children(block).values()}
    index = index if index is not None else BlockIndex(net)
    return [(layer, _trainable(layer, index) or _beside(layer, parents, index))
            for layer in batchnorm_layers(net)]


def _trainable(block, index) -> FrozenSet[str]:
    return frozenset(p.name for p in block.collect_params().values() if index.can_train(p))


def _beside(block, parents: Dict[int, gluon.Block], index) -> FrozenSet[str]:
    parent = parents.get(id(block))
    while parent is not None:
        kids = list(children(parent).values())
        at = next(i for i, child in enumerate(kids) if child is block)
        for sibling in kids[at + 1:] + kids[:at][::-1]:
            names = _trainable(sibling, index)
            if names:
                return names
        block, parent = parent, parents.get(id(parent))
    return frozenset()


def is_norm_layer(block) -> bool:
    """A normalization layer: by type (``NORM_TYPES``), or a layer that runs the BatchNorm
    operator itself (a BatchNorm wrapper, GluonCV's GroupNorm)."""
    return isinstance(block, NORM_TYPES) or _runs_batchnorm_op(block)


def symbol_blocks(net) -> Iterator[Tuple[str, gluon.SymbolBlock]]:
    """``(structural path, block)`` of every ``SymbolBlock`` in ``net`` (``net`` too)."""
    return ((path, block) for path, block in walk(net) if isinstance(block, gluon.SymbolBlock))


def graph_nodes(block: gluon.SymbolBlock) -> List[dict]:
    """The nodes of the block's graph, as its JSON lists them."""
    return json.loads(graph_output(block).tojson())["nodes"]


def _variables(nodes: List[dict], node: dict) -> List[str]:
    """Names of the variables among a node's inputs after the data, in input order."""
    inputs = [nodes[i[0]] for i in node.get("inputs", [])[1:]]
    return [n["name"] for n in inputs if n["op"] == "null"]


def graph_norms(block: gluon.SymbolBlock) -> List[GraphNorm]:
    """Every normalization node of the block's graph that reads the block's parameters."""
    nodes = graph_nodes(block)
    own = block.collect_params()
    aux = set(graph_output(block).list_auxiliary_states())
    out = []
    for node in nodes:
        if node["op"] not in NORM_OPS:
            continue
        names = [n for n in _variables(nodes, node) if n in own]
        params = tuple(n for n in names if n not in aux)
        stats = tuple(n for n in names if n in aux)
        if params or stats:
            out.append(GraphNorm(node["name"], node["op"], params, stats,
                                 on_global_stats(node)))
    return out


def on_global_stats(node: dict) -> bool:
    """Whether a graph node (as JSON) is a BatchNorm that uses its running statistics."""
    flag = node.get("attrs", {}).get("use_global_stats", "False")
    return node["op"] in BATCHNORM_OPS and flag.strip().lower() in ("true", "1")


def graph_biases(block: gluon.SymbolBlock) -> Set[str]:
    """Names of the block's parameters that a layer of its graph adds as a bias."""
    nodes = graph_nodes(block)
    own = block.collect_params()
    out = set()
    for node in nodes:
        position = _BIAS_INPUTS.get(node["op"])
        inputs = node.get("inputs", [])
        if position is not None and len(inputs) > position:
            bias = nodes[inputs[position][0]]
            if bias["op"] == "null" and bias["name"] in own:
                out.add(bias["name"])
    return out


def batchnorm_nodes(block: gluon.SymbolBlock) -> Dict[str, GraphNorm]:
    """The block's BatchNorm nodes (those with a ``use_global_stats`` flag) by name."""
    return {n.node: n for n in graph_norms(block) if n.op in BATCHNORM_OPS}
