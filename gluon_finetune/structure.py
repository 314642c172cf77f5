"""Structural names and the ordered block list of a Gluon ``Block``.

(The module is not called ``blocks`` so that it never shadows the public
function ``gluon_finetune.blocks``.)

A structural path is the dotted chain of child names Gluon registers
(``"features.4.0.body"``, ``"output"``, ``"l3"``), found by walking
``Block._children``. Parameter-name prefixes are no substitute: both units of
a ResNet stage share one prefix, so matching on prefixes over-selects.
"""
from __future__ import annotations

import difflib
from typing import Dict, FrozenSet, List, Tuple

from mxnet import gluon
from mxnet.gluon import nn

__all__ = ["blocks", "block_params", "structural_paths", "block_names", "last_blocks_names",
           "param_paths", "check_block", "GRANULARITIES"]

GRANULARITIES = ("unit", "stage")


def check_block(net) -> None:
    if not isinstance(net, gluon.Block):
        raise TypeError(f"net must be a mxnet.gluon.Block, got {type(net).__name__}: {net!r}")


def _children(block) -> List[Tuple[str, gluon.Block]]:
    return list(block._children.items())


def _owns_params(block) -> bool:
    return bool(block.collect_params().keys())


def _is_container(block) -> bool:
    """A (Hybrid)Sequential that only chains its children (not e.g. HybridConcurrent)."""
    cls = type(block)
    if isinstance(block, nn.HybridSequential):
        return cls.hybrid_forward is nn.HybridSequential.hybrid_forward and \
            cls.forward is gluon.HybridBlock.forward
    if isinstance(block, nn.Sequential):
        return cls.forward is nn.Sequential.forward
    return False


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _units(block, prefix: str, stop_at_stages: bool) -> List[Tuple[str, gluon.Block]]:
    out = []
    for name, child in _children(block):
        path = _join(prefix, name)
        if not _owns_params(child):
            continue
        if _is_container(child) and not (stop_at_stages and _is_stage(child)):
            out.extend(_units(child, path, stop_at_stages))
        else:
            out.append((path, child))
    return out


def _is_stage(block) -> bool:
    """A container none of whose parameter-owning children is itself a container."""
    return not any(_is_container(c) and _owns_params(c) for _, c in _children(block))


def blocks(net, granularity: str = "unit") -> List[Tuple[str, gluon.Block]]:
    """The ordered block list of ``net``: ``(path, block)`` pairs in forward order.

    Containers (``Sequential``/``HybridSequential`` that only chain their
    children) are descended into; parameterless children (activations,
    pooling) are skipped; every other child that owns parameters is one
    block. For a model-zoo ResNet that is the stem conv, the stem BatchNorm,
    each residual unit, and the classifier head, which is always last.

    Parameters
    ----------
    net : mxnet.gluon.Block
        The network (the root is always descended into).
    granularity : {"unit", "stage"}
        ``"unit"`` descends every container; ``"stage"`` keeps a container
        whole when none of its children is a container (a ResNet stage).

    Returns
    -------
    list of (str, Block)
        Registration order of ``_children``, which is forward order for
        networks that define their layers in the order they use them.

    Examples
    --------
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(8, activation="relu"), nn.Dense(2))
    >>> [path for path, _ in blocks(net)]
    ['0', '1']
    """
    check_block(net)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    found = _units(net, "", granularity == "stage")
    if not found and _owns_params(net):
        found = [("", net)]  # a leaf layer on its own is a one-block network
    return found


def _walk(block, prefix: str, paths: Dict[str, FrozenSet[str]]) -> FrozenSet[str]:
    names = set(block.params.keys()) | {p.name for p in block._reg_params.values()}
    for name, child in _children(block):
        names |= _walk(child, _join(prefix, name), paths)
    frozen = frozenset(names)
    if prefix:
        paths[prefix] = frozen
    return frozen


def structural_paths(net) -> Dict[str, FrozenSet[str]]:
    """Every structural path of ``net`` -> names of the parameters inside it."""
    check_block(net)
    paths: Dict[str, FrozenSet[str]] = {}
    _walk(net, "", paths)
    return paths


def block_names(net, granularity: str = "unit") -> List[Tuple[str, FrozenSet[str]]]:
    """The block list as ``(path, parameter names)``: what the rule engine indexes."""
    paths = structural_paths(net)
    return [(path, paths[path] if path else frozenset(net.collect_params().keys()))
            for path, _ in blocks(net, granularity)]


def last_blocks_names(listed: List[Tuple[str, FrozenSet[str]]], n: int) -> FrozenSet[str]:
    """Names of the parameters in the last ``n`` entries of a ``block_names`` list."""
    return frozenset().union(*(names for _, names in listed[len(listed) - n:])) if n else \
        frozenset()


def block_params(net, path: str) -> List[gluon.Parameter]:
    """The parameters inside the block at structural ``path`` (e.g. ``"features.4"``).

    Examples
    --------
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(8), nn.Dense(2))
    >>> [p.name.split("_")[-1] for p in block_params(net, "1")]
    ['weight', 'bias']
    """
    check_block(net)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str such as 'features.4', got {path!r}")
    block = net
    for depth, part in enumerate(path.split(".") if path else []):
        children = block._children
        if part not in children:
            here = ".".join(path.split(".")[:depth]) or "<root>"
            close = difflib.get_close_matches(part, list(children), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"no child {part!r} under {here}; it has {list(children)}.{hint}")
        block = children[part]
    return list(block.collect_params().values())


def param_paths(net) -> Dict[str, str]:
    """Parameter name -> its structural path (``"features.0.weight"``), first path for a
    shared one. Stable across rebuilds, unlike names, which carry global counters."""
    check_block(net)
    out: Dict[str, str] = {}

    def visit(block, prefix: str) -> None:
        for attr, param in block._reg_params.items():
            out.setdefault(param.name, _join(prefix, attr))
        for name, child in _children(block):
            visit(child, _join(prefix, name))

    visit(net, "")
    return out
