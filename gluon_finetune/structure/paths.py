"""Structural paths of a Gluon ``Block``: the dotted chains of child names Gluon registers.

A structural path (``"features.4.0.body"``, ``"output"``, ``"l3"``) is found by
walking ``Block._children``; inside a ``SymbolBlock`` the graph's layers
(``"resnetv10_conv0"``) are paths too. Parameter-name prefixes are no
substitute: both units of a ResNet stage share one prefix. Everything here
reads the network and changes nothing; ``index.BlockIndex`` keeps what it
computes.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, Iterator, List, Tuple

from mxnet import gluon

from .._compat import children, is_initialized, own_params, param_data
from ..checks import did_you_mean
from ..errors import InvalidTypeError, UnknownNameError
from .automatic import join
from .tracing import symbol_layers

__all__ = ["check_block", "walk", "descendants", "param_shape", "collect_paths",
           "collect_param_paths", "block_params"]


def check_block(net) -> None:
    if not isinstance(net, gluon.Block):
        raise InvalidTypeError(f"net must be a mxnet.gluon.Block, got {type(net).__name__}: "
                               f"{net!r}")


def walk(block, prefix: str = "") -> Iterator[Tuple[str, gluon.Block]]:
    """``block`` and every block below it, depth first in registration order, with its
    structural path (``""`` for ``block`` itself)."""
    yield prefix, block
    for name, child in children(block).items():
        yield from walk(child, join(prefix, name))


def descendants(block) -> Iterator[gluon.Block]:
    """``block`` and every block below it (see :func:`walk`)."""
    return (b for _, b in walk(block))


def param_shape(param: gluon.Parameter) -> Tuple[int, ...]:
    """A parameter's shape: its data's once it has data (a SymbolBlock's parameters keep
    ``shape=None`` even then), else the declared one (0: not known yet)."""
    if is_initialized(param):
        return tuple(int(d) for d in param_data(param)[0].shape)
    return tuple(int(d) for d in (param.shape or ()))


def _collect(block, prefix: str, paths: Dict[str, FrozenSet[str]]) -> FrozenSet[str]:
    names = set(block.params.keys()) | {p.name for p in own_params(block).values()}
    if isinstance(block, gluon.SymbolBlock):
        for layer, layer_names in symbol_layers(block):
            paths[join(prefix, layer)] = frozenset(layer_names)
    for name, child in children(block).items():
        names |= _collect(child, join(prefix, name), paths)
    frozen = frozenset(names)
    if prefix:
        paths[prefix] = frozen
    return frozen


def collect_paths(net) -> Dict[str, FrozenSet[str]]:
    """Every structural path of ``net`` -> names of the parameters inside it."""
    paths: Dict[str, FrozenSet[str]] = {}
    _collect(net, "", paths)
    return paths


def collect_param_paths(net) -> Dict[str, str]:
    """Parameter name -> its structural path (``"features.0.weight"``), first path for a
    shared one."""
    out: Dict[str, str] = {}
    for prefix, block in walk(net):
        for attr, param in own_params(block).items():
            out.setdefault(param.name, join(prefix, attr))
    return out


def block_params(net, path: str) -> List[gluon.Parameter]:
    """The parameters inside the block at structural ``path`` (e.g. ``"features.4"``).

    Parameters
    ----------
    net : Block
        The network.
    path : str
        A structural path (``""``: the whole network); a layer of a SymbolBlock's
        graph too.

    Returns
    -------
    list of Parameter
        In ``collect_params`` order.

    Raises
    ------
    UnknownNameError
        No block at ``path`` (the message lists the children where it stops).
    InvalidTypeError
        ``path`` is not a str.

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
        kids = children(block)
        if part not in kids:
            if isinstance(block, gluon.SymbolBlock):
                return _layer_params(block, ".".join(parts[depth:]), path)
            here = ".".join(parts[:depth]) or "<root>"
            raise UnknownNameError(f"no child {part!r} under {here}; it has {list(kids)}. "
                                   f"{did_you_mean(part, kids)}".rstrip())
        block = kids[part]
    return list(block.collect_params().values())


def _layer_params(block: gluon.SymbolBlock, layer: str, path: str) -> List[gluon.Parameter]:
    layers = dict(symbol_layers(block))
    if layer not in layers:
        raise UnknownNameError(f"no layer {layer!r} in the SymbolBlock graph at {path!r}. "
                               f"{did_you_mean(layer, layers)}".rstrip())
    params = block.collect_params()
    return [params[n] for n in layers[layer]]
