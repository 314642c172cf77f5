"""Forward order by tracing: the order in which a forward pass first uses each parameter.

Calling a ``HybridBlock`` on ``mx.sym.var`` inputs builds its graph without
any data; most plain ``Block`` forwards (those that only call their
children and do arithmetic) trace the same way. The graph's variables, in
the topological order MXNet serialises them, are the parameters in the order
the forward pass first needs them. Nothing is computed and no state changes.
In MXNet's NumPy mode (``npx.set_np()``) the inputs are NumPy symbols.

The trace also says which parameters the network's *output* is computed
from: its first output, or a later one computed from it (``(features,
logits)``). An auxiliary head (GoogLeNet's, a segmentation net's
``auxlayer``, one used only in training) feeds another output or none, so
the block list can keep it from being taken for the head.

A ``SymbolBlock`` already is a graph: its layers are the graph's operator
nodes that read parameters, in node order.
"""
from __future__ import annotations

import inspect
import json
import warnings
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

import mxnet as mx
from mxnet import autograd, gluon

from .._compat import graph_inputs, graph_output, own_params
from .arrays import symbol_input, symbolic_call

__all__ = ["Trace", "forward_order", "forward_trace", "symbol_layers", "symbol_aux_names"]

_INPUT = "__finetune_trace_input{}"


def _input_counts(block) -> List[int]:
    """How many symbols to try: the required positional inputs of the forward, then all
    positional ones (BERT's decoder runs only given ``masked_positions``)."""
    if isinstance(block, gluon.SymbolBlock):
        return [len(graph_inputs(block))]
    hybrid = isinstance(block, gluon.HybridBlock)
    func = block.hybrid_forward if hybrid else block.forward
    listed = list(inspect.signature(func).parameters.values())[1 if hybrid else 0:]
    own = set(own_params(block)) if hybrid else set()
    positional = [p for p in listed if p.name not in own
                  and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = max(1, sum(1 for p in positional if p.default is p.empty))
    return list(dict.fromkeys([required, max(required, len(positional))]))


class Trace(NamedTuple):
    """What a symbolic trace of a forward pass tells about its parameters."""

    names: List[str]        # in the order the forward pass first uses them
    output: FrozenSet[str]  # those the network's output is computed from


def _trace(block, count: int, training: bool) -> Trace:
    inputs = [symbol_input(_INPUT.format(i)) for i in range(count)]
    with warnings.catch_warnings(), autograd.train_mode() if training else \
            autograd.predict_mode():
        warnings.simplefilter("ignore")
        out = symbolic_call(block, *inputs)
    symbols = _symbols(out)
    graph = json.loads((symbols[0] if len(symbols) == 1 else mx.sym.Group(symbols)).tojson())
    return Trace(_variables(graph["nodes"]), _output_variables(graph))


def _symbols(out) -> List[mx.sym.Symbol]:
    if isinstance(out, mx.sym.Symbol):
        return [out]
    if isinstance(out, (list, tuple)):
        return [s for item in out for s in _symbols(item)]
    raise TypeError(f"the forward returned {type(out).__name__}, not symbols")


def _variables(nodes) -> List[str]:
    """Variable names by the depth of their first use on the data's path (operators on
    the longest path from the inputs), ties in MXNet's topological node order.

    Depth, not node order alone: node order lists one output's whole graph before the
    next output's, which would put a branch (an auxiliary head) after the trunk it
    leaves. Only operators that read the data count: GluonNLP concatenates its q/k/v
    weights before use, and those weights are used where the concatenation is.
    """
    depth: Dict[int, int] = {}       # operators on the data's path
    feeds: Dict[int, Set[int]] = {}  # elsewhere: the variables a node is made of
    used: Dict[int, int] = {}
    for i, node in enumerate(nodes):
        inputs = [j for j, *_ in node["inputs"]]
        if node["op"] == "null":
            if node["name"].startswith(_INPUT[:-2]):
                depth[i] = 0
            else:
                feeds[i] = {i}
        elif any(j in depth for j in inputs):
            depth[i] = 1 + max(depth[j] for j in inputs if j in depth)
            for var in set().union(*(feeds.get(j, set()) for j in inputs)):
                used[var] = min(used.get(var, depth[i]), depth[i])
        else:
            feeds[i] = set().union(*(feeds.get(j, set()) for j in inputs))
    return [nodes[j]["name"] for j in sorted(used, key=lambda j: (used[j], j))]


def _ancestors(nodes, start: int) -> Set[int]:
    seen, todo = set(), [start]
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(j for j, *_ in nodes[i]["inputs"])
    return seen


def _output_variables(graph) -> FrozenSet[str]:
    """Variables the network's output is made of: its first output, or the last later
    output computed from that one (a forward returning ``(features, logits)``)."""
    nodes, heads = graph["nodes"], [h[0] for h in graph["heads"]]
    output, main = heads[0], _ancestors(nodes, heads[0])
    for head in heads[1:]:
        made_of = _ancestors(nodes, head)
        if output in made_of:
            output, main = head, made_of
    return frozenset(nodes[i]["name"] for i in main if nodes[i]["op"] == "null")


def forward_trace(block, training: bool = False) -> Tuple[Optional[Trace], Optional[str]]:
    """Trace ``block``'s forward pass with symbols, in inference mode or (``training``)
    in training mode, where some blocks use more (an auxiliary head).

    Returns ``(Trace, None)``, or ``(None, reason)`` where the forward cannot be
    traced with symbols (it needs real data, other input types, or NDArray-only
    operations). Parameters the traced graph never reads are not listed.
    """
    params = {p.name for p in block.collect_params().values()}
    why = ""
    for count in _input_counts(block):
        try:
            found = _trace(block, count, training)
        except Exception as err:  # any failure means: this forward does not run on symbols
            why = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
            continue
        return Trace([n for n in dict.fromkeys(found.names) if n in params],
                     found.output & params), None
    return None, why


def forward_order(block) -> Tuple[Optional[List[str]], Optional[str]]:
    """Parameter names of ``block`` in the order its forward pass first uses them.

    Returns ``(names, None)``, or ``(None, reason)`` where the forward cannot be
    traced with symbols (it needs real data, other input types, or NDArray-only
    operations). Parameters the traced graph never reads are not listed.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="n_")
    >>> with net.name_scope():
    ...     net.add(nn.Dense(2, in_units=2), nn.Dense(1, in_units=2))
    >>> forward_order(net)[0]
    ['n_dense0_weight', 'n_dense0_bias', 'n_dense1_weight', 'n_dense1_bias']
    """
    found, why = forward_trace(block)
    return (found.names, None) if found is not None else (None, why)


def _graph(block: gluon.SymbolBlock):
    return graph_output(block)


def symbol_layers(block: gluon.SymbolBlock) -> List[Tuple[str, List[str]]]:
    """``(layer name, parameter names)`` per operator node that reads parameters.

    The layer name is the node's name without Gluon's ``_fwd`` suffix
    (``resnetv10_conv0``); nodes come in graph order. A parameter read by
    several nodes belongs to the first.
    """
    own = set(block.collect_params().keys())  # graph variables carry the full names
    seen: Set[str] = set()
    layers = []
    nodes = json.loads(_graph(block).tojson())["nodes"]
    for node in nodes:
        if node["op"] == "null":
            continue
        used = [nodes[i]["name"] for i, *_ in node["inputs"]]
        mine = [n for n in used if n in own and n not in seen]
        if mine:
            seen.update(mine)
            name = node["name"]
            layers.append((name[:-4] if name.endswith("_fwd") else name, mine))
    return layers


def symbol_aux_names(block: gluon.SymbolBlock) -> List[str]:
    """Names of a SymbolBlock's auxiliary states (BatchNorm running statistics)."""
    own = set(block.collect_params().keys())
    return [n for n in _graph(block).list_auxiliary_states() if n in own]
