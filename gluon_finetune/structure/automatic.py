"""The automatic block list: which parts of a network are blocks, in forward order.

1. **Descend.** The root, plain ``Sequential``/``HybridSequential`` chains and
   custom blocks that hold a *repeated stack* (a chain of two or more
   layers of one model class, such as BERT's ``transformer_cells``) are
   opened; every other child with parameters is a unit. A ``SymbolBlock``
   is opened into its graph's layers. Parameters a descended block owns
   itself (BERT's ``position_weight``) are units of their own.
2. **Order** the units by the first use of their parameters in the traced
   forward graph (``tracing.forward_order``); where a block cannot be traced
   its children keep registration order, with a warning where the two could
   disagree. The head, the last block, is the last one the network's output is
   computed from (``tracing.Trace.output``): an auxiliary head registered after
   it (used in training only, or feeding another output) goes before it.
3. **Group.** The units used before the first stack layer form one block
   when they include an embedding or an owned parameter (the BEiT/ELECTRA
   convention: embeddings and their norm at depth 0); a CNN stem stays as it
   is. Any other owned parameter joins the block the forward pass used just
   before it (the first block if none).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

from mxnet import gluon
from mxnet.gluon import nn

from .tracing import forward_trace, symbol_layers

__all__ = ["Entry", "automatic", "is_container", "is_stack"]


@dataclass(frozen=True)
class Entry:
    """One block: its structural paths, parameters, and the Block when it is a single one."""

    paths: Tuple[str, ...]
    params: Tuple[gluon.Parameter, ...]
    block: Optional[gluon.Block] = None
    kind: str = "block"        # "block", "param" (owned by a descended block), "layer"
    stacked: bool = False      # a layer of a repeated stack (or a whole stack)
    embedding: bool = False

    @property
    def label(self) -> str:
        return "+".join(self.paths)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def owns_params(block) -> bool:
    return bool(block.collect_params().keys())


def is_container(block) -> bool:
    """A (Hybrid)Sequential that only chains its children (not e.g. HybridConcurrent)."""
    cls = type(block)
    if isinstance(block, nn.HybridSequential):
        return cls.hybrid_forward is nn.HybridSequential.hybrid_forward and \
            cls.forward is gluon.HybridBlock.forward
    if isinstance(block, nn.Sequential):
        return cls.forward is nn.Sequential.forward
    return False


def _is_model_class(cls) -> bool:
    """A model's own layer class, not one of Gluon's building blocks (Dense, Conv2D ...)."""
    module = cls.__module__ or ""
    return not module.startswith("mxnet.") or module.startswith("mxnet.gluon.model_zoo")


def is_stack(block) -> bool:
    """A chain of two or more parameter-owning layers, all of one model class."""
    if not is_container(block):
        return False
    layers = [c for c in block._children.values() if owns_params(c)]
    kinds = {type(c) for c in layers}
    return len(layers) >= 2 and len(kinds) == 1 and _is_model_class(kinds.pop()) \
        and not is_container(layers[0])


def _stacks(block) -> int:
    """Repeated stacks among the children and inside custom children (not through chains)."""
    return sum(1 if is_stack(c) else _stacks(c) if not is_container(c) else 0
               for c in block._children.values())


def _holds_stack(block) -> bool:
    """A custom block built around one repeated stack (a transformer encoder). Blocks with
    several (HRNet's parallel branches, residual attention modules) stay whole."""
    return _stacks(block) == 1


def is_stage(block) -> bool:
    """A container none of whose parameter-owning children is itself a container."""
    return not any(is_container(c) and owns_params(c) for c in block._children.values())


def _params(block) -> Tuple[gluon.Parameter, ...]:
    return tuple(block.collect_params().values())


def _layers(block: gluon.SymbolBlock, path: str) -> List[Entry]:
    own = block.collect_params()
    return [Entry((join(path, name),), tuple(own[n] for n in names), kind="layer")
            for name, names in symbol_layers(block)]


def _child(child, path: str, stage: bool, stacked: bool) -> List[Entry]:
    if isinstance(child, gluon.SymbolBlock):
        return _layers(child, path)
    if is_container(child) and stage and is_stage(child):
        return [Entry((path,), _params(child), child, stacked=stacked or is_stack(child))]
    if is_container(child) or _holds_stack(child):
        return _units(child, path, stage, stacked)
    return [Entry((path,), _params(child), child, stacked=stacked,
                  embedding=isinstance(child, nn.Embedding))]


def _units(block, path: str, stage: bool, stacked: bool = False) -> List[Entry]:
    """Units below ``block`` in registration order (its own parameters first)."""
    out = [Entry((join(path, attr),), (p,), kind="param", stacked=stacked)
           for attr, p in block._reg_params.items()]
    inner = stacked or is_stack(block)
    for name, child in block._children.items():
        if owns_params(child):
            out.extend(_child(child, join(path, name), stage, inner))
    return out


# ----------------------------------------------------------------- order

def _may_reorder(block) -> bool:
    parts = sum(1 for c in block._children.values() if owns_params(c)) + bool(block._reg_params)
    return parts >= 2 and not is_container(block)


def _opened(units: List[Entry]) -> Set[str]:
    """Paths of the blocks the descent opened (the root and every ancestor of a unit)."""
    parts = [path.split(".") for unit in units for path in unit.paths]
    return {""} | {".".join(p[:k]) for p in parts for k in range(1, len(p))}


def _forward_names(block, path: str, opened: Set[str]) -> List[str]:
    """Parameter names in forward order: traced, or registration order where that fails."""
    if path not in opened:  # a unit: the order inside it does not matter
        return [p.name for p in block.collect_params().values()]
    found, why = forward_trace(block)
    return found.names if found is not None else _registration_order(block, path, opened, why)


def _registration_order(block, path: str, opened: Set[str], why: str) -> List[str]:
    """Registration order, children traced where they can be (with a warning where a
    block whose parts are separate blocks has a custom forward)."""
    if _may_reorder(block):
        warnings.warn(f"could not trace the forward of {type(block).__name__} at "
                      f"{path or '<root>'} with symbols ({why}); its blocks follow "
                      f"registration order, which may differ from the order its forward "
                      f"uses them, and the last one registered is taken for the head (even "
                      f"an auxiliary head). Declare the list (a finetune_block_list method, "
                      f"or blocks=) to be sure.", stacklevel=6)
    out = [p.name for p in block._reg_params.values()]
    for name, child in block._children.items():
        out.extend(_forward_names(child, join(path, name), opened))
    return out


def _root_order(net, units: List[Entry]) -> Tuple[List[str], FrozenSet[str]]:
    """The root's forward order and the names its output is made of (none if untraced).

    A unit the inference graph never reads may be used in training only (an auxiliary
    head): then the training-mode graph, where it can be traced, places it."""
    found, why = forward_trace(net)
    if found is None:
        return _registration_order(net, "", _opened(units), why), frozenset()
    read = set(found.names)
    if any(not any(p.name in read for p in unit.params) for unit in units):
        training, _ = forward_trace(net, training=True)
        if training is not None and set(training.names) > read:
            return training.names, found.output
    return found.names, found.output


def _sorted(units: List[Entry], position: Dict[str, int]) -> List[Entry]:
    """Stable sort by first use of a unit's own parameters (a weight it shares with an
    earlier unit, as BERT's decoder shares the word embedding, does not place it); a
    unit the graph never reads stays after its predecessor."""
    keys, last, seen = [], -1, set()
    for unit in units:
        own = [p.name for p in unit.params if p.name not in seen]
        seen.update(own)
        known = [position[n] for n in own if n in position]
        last = min(known) if known else last
        keys.append(last)
    return [u for _, _, u in sorted(zip(keys, range(len(units)), units), key=lambda t: t[:2])]


def _head_last(units: List[Entry], output: FrozenSet[str]) -> List[Entry]:
    """The head (the last block the output is computed from) after every block that does
    not feed the output: an auxiliary head, used in training only or feeding a second
    output, is never taken for the head. Owned parameters the output uses after the head
    (a temperature) stay after it and join it."""
    feeds = [any(p.name in output for p in unit.params) for unit in units]
    heads = [i for i, unit in enumerate(units) if feeds[i] and unit.kind != "param"]
    if not heads:
        return units
    head = heads[-1]
    after = list(zip(units[head + 1:], feeds[head + 1:]))
    return units[:head] + [u for u, used in after if not used] + [units[head]] + \
        [u for u, used in after if used]


# ----------------------------------------------------------------- group

def _merge(parts: List[Entry]) -> Entry:
    if len(parts) == 1:
        return parts[0]
    params = tuple(dict.fromkeys(p for part in parts for p in part.params))
    return Entry(tuple(p for part in parts for p in part.paths), params, kind="group",
                 stacked=any(part.stacked for part in parts))


def _grouped(units: List[Entry]) -> List[Entry]:
    first = next((i for i, u in enumerate(units) if u.stacked), 0)
    stem = units[:first]
    entries: List[Entry] = []
    if any(u.embedding or u.kind == "param" for u in stem):
        entries, units = [_merge(stem)], units[first:]
    pending: List[Entry] = []
    for unit in units:
        if unit.kind != "param":
            entries.append(_merge(pending + [unit]))
            pending = []
        elif entries:
            entries[-1] = _merge([entries[-1], unit])
        else:
            pending.append(unit)
    return entries + ([_merge(pending)] if pending else [])


def automatic(net, granularity: str) -> List[Entry]:
    """The automatic block list of ``net`` (before empty blocks are dropped)."""
    if isinstance(net, gluon.SymbolBlock):
        units = _layers(net, "")
    elif not any(owns_params(c) for c in net._children.values()):
        # a lone layer is a one-block network (not holding net: the list is cached by it)
        return [Entry(("",), _params(net))] if owns_params(net) else []
    else:
        units = _units(net, "", granularity == "stage")
    names, output = _root_order(net, units)
    ordered = _sorted(units, {n: i for i, n in reversed(list(enumerate(names)))})
    return _grouped(_head_last(ordered, output))
