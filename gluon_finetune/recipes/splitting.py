"""``split_frozen``: a network cut before its first trainable block, as two chains."""
from __future__ import annotations

from typing import List, Tuple

from mxnet import gluon
from mxnet.gluon import nn

from .._compat import children, is_differentiable, own_params
from ..checks import InvalidValueError
from ..structure.index import _is_container, check_block
from ..structure.listing import blocks, can_train

__all__ = ["split_frozen"]


def _trainable(block) -> bool:
    return any(p.grad_req != "null" and is_differentiable(p)
               for p in block.collect_params().values())


def _first_trainable(net) -> str:
    listed = blocks(net)
    first = next((i for i, (_, block) in enumerate(listed) if _trainable(block)), None)
    shown = ", ".join(f"{i}:{path}" for i, (path, _) in enumerate(listed))
    if first is None:
        raise InvalidValueError(f"nothing to train: every block of the network is frozen ({shown})")
    if first == 0:
        raise InvalidValueError(f"nothing to cache: the first block {listed[0][0]!r} is "
                                "trainable, so no frozen prefix precedes it; freeze some blocks "
                                f"first, e.g. get_model(..., unfreeze=n) (blocks: {shown})")
    return listed[first][0]


def _cut(block, parts: List[str], depth: int) -> Tuple[list, list]:
    """Children before / from the cut, flattened through the containers on the path."""
    if depth and not _is_container(block):  # blocks() only descends into containers
        raise InvalidValueError(f"cannot cut inside {type(block).__name__} at "
                                f"{'.'.join(parts[:depth])!r}: it is not a Sequential chain")
    listed = list(children(block).items())
    names = [name for name, _ in listed]
    if parts[depth] not in names:  # a SymbolBlock's layer, or a block of several paths
        raise InvalidValueError(f"cannot cut {type(block).__name__} at {'.'.join(parts)!r}: the "
                                "first trainable block is not one of its child blocks")
    index = names.index(parts[depth])
    before = [child for _, child in listed[:index]]
    after = [child for _, child in listed[index + 1:]]
    child = listed[index][1]
    if depth + 1 == len(parts) or (not _is_container(child) and not _holds_frozen(child)):
        # the first trainable block is the child itself, or inside a child (a SymbolBlock's
        # layer) with nothing frozen before it there: the cut goes before the child
        return before, [child] + after
    inner_before, inner_after = _cut(child, parts, depth + 1)
    return before + inner_before, inner_after + after


def _holds_frozen(block) -> bool:
    """Whether ``block`` has a parameter that could train but is frozen."""
    return any(p.grad_req == "null" and can_train(p, block)
               for p in block.collect_params().values())


def _chain(children, name: str):
    hybrid = all(isinstance(c, gluon.HybridBlock) for c in children)
    chain = nn.HybridSequential(prefix=name) if hybrid else nn.Sequential(prefix=name)
    chain.add(*children)
    return chain


def split_frozen(net) -> Tuple[gluon.Block, gluon.Block, str]:
    """Cut ``net`` at its first trainable block into a frozen prefix and the rest.

    Parameters
    ----------
    net : Block
        A network with a frozen leading part (e.g. ``get_model(name, unfreeze=n)``).

    Returns
    -------
    (prefix, suffix, split)
        Two chains of ``net``'s own child blocks (Parameters shared, nothing
        copied) and the structural path of the first trainable block.
        ``suffix(prefix(x))`` computes ``net(x)`` provided the root's
        ``forward`` chains its children in registration order (a Sequential
        root always does; ``cache_features`` checks the others).

    Raises
    ------
    InvalidValueError
        A ``SymbolBlock``, a root that uses parameters of its own, nothing frozen
        or nothing trainable, a first trainable block inside a custom block.

    Examples
    --------
    >>> from gluon_finetune import get_model, split_frozen
    >>> prefix, suffix, split = split_frozen(get_model("resnet18_v1", classes=2, unfreeze=1))
    >>> split, type(prefix).__name__, len(suffix)
    ('output', 'HybridSequential', 1)
    """
    check_block(net)
    if isinstance(net, gluon.SymbolBlock):
        raise InvalidValueError("cannot cut a SymbolBlock: its layers are one graph, not child "
                                "blocks; wrap the frozen part and the rest as separate blocks")
    own = [p.name for p in own_params(net).values()]
    if own and not _is_container(net):
        raise InvalidValueError(f"cannot cut {type(net).__name__}: its forward uses its own "
                                f"parameters {own}, so it is not a chain of its children")
    split = _first_trainable(net)
    before, after = _cut(net, split.split("."), 0)
    return _chain(before, "frozen_prefix_"), _chain(after, "trainable_suffix_"), split
