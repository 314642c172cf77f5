"""Discriminative rates as plain rule dicts: ``layer_decay`` and ``spread`` (fastai's slice).

The rules they return number blocks as every other function does (the net's
own block list), so ``explain`` can show them and a trainer takes them as
``layers=``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ..checks import InvalidValueError, check_real
from ..structure.listing import block_names

__all__ = ["layer_decay", "spread", "spread_rates"]


def _positive(name: str, value) -> float:
    return check_real(name, value, positive=True)


def _block_count(net, granularity: Optional[str], blocks) -> int:
    count = len(block_names(net, granularity, blocks))
    if count == 0:
        raise InvalidValueError(f"{type(net).__name__} has no blocks with parameters",
                                argument="net")
    return count


def layer_decay(net, base_lr: float, decay: float = 0.75, granularity: Optional[str] = None,
                blocks=None) -> Dict[int, Dict[str, float]]:
    """Rules giving block ``i`` of ``L`` the rate ``base_lr * decay ** (L - 1 - i)``.

    The head (last block) gets ``base_lr``; each block before it ``decay``
    times the next one (BEiT/timm layer decay). A plain rule dict: edit it,
    ``explain`` it, pass it as ``layers=``. Blocks are those of
    ``blocks(net, granularity, blocks)``: by default the net's own list, the
    one a trainer on ``net`` numbers.

    Parameters
    ----------
    net : Block
        The network whose blocks are numbered.
    base_lr : float
        The head's rate (> 0).
    decay : float
        The factor from one block to the one before it (> 0).
    granularity : {'unit', 'stage'}, optional
        What a block is; default: the net's own (``get_model`` records it).
    blocks : list, optional
        An explicit block list (as ``blocks(net, blocks=...)`` takes it).

    Returns
    -------
    dict
        ``{block index: {"learning_rate": rate}}`` for every block.

    Raises
    ------
    InvalidValueError
        A rate or factor that is not a finite number > 0, or a network without
        blocks.

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, layer_decay
    >>> rules = layer_decay(net, 0.1, decay=0.5)
    >>> rules[4], rules[0]
    ({'learning_rate': 0.1}, {'learning_rate': 0.00625})
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
    ...                            layers=layer_decay(net, 0.1, decay=0.5))
    >>> trainer.explain()["net_conv0_weight"]["lr"]
    0.00625
    """
    base_lr, decay = _positive("base_lr", base_lr), _positive("decay", decay)
    count = _block_count(net, granularity, blocks)
    return {i: {"learning_rate": base_lr * decay ** (count - 1 - i)} for i in range(count)}


def spread(net, lo: float, hi: float, granularity: Optional[str] = None,
           blocks=None) -> Dict[int, Dict[str, float]]:
    """Rules spreading rates geometrically from ``lo`` (first block) to ``hi`` (head).

    Like fastai's ``slice(lo, hi)``: block ``i`` of ``L`` gets
    ``lo * (hi / lo) ** (i / (L - 1))``; a one-block network gets ``hi``.

    Parameters
    ----------
    net : Block
        The network whose blocks are numbered.
    lo : float
        The first block's rate (> 0).
    hi : float
        The head's rate (> 0).
    granularity : {'unit', 'stage'}, optional
        What a block is, as for :func:`layer_decay`.
    blocks : list, optional
        An explicit block list, as for :func:`layer_decay`.

    Returns
    -------
    dict
        ``{block index: {"learning_rate": rate}}`` for every block.

    Raises
    ------
    InvalidValueError
        A rate that is not a finite number > 0, or a network without blocks.

    Examples
    --------
    >>> from gluon_finetune import spread
    >>> rules = spread(net, 1e-4, 1e-2)
    >>> [round(rule["learning_rate"], 6) for rule in rules.values()]
    [0.0001, 0.000316, 0.001, 0.003162, 0.01]
    """
    lo, hi = _positive("lo", lo), _positive("hi", hi)
    rates = spread_rates(lo, hi, _block_count(net, granularity, blocks))
    return {i: {"learning_rate": rate} for i, rate in enumerate(rates)}


def spread_rates(lo: float, hi: float, count: int) -> List[float]:
    """``spread``'s rates for ``count`` blocks: ``lo * (hi / lo) ** (i / (count - 1))``.

    Examples
    --------
    >>> spread_rates(0.01, 1.0, 3)
    [0.01, 0.1, 1.0]
    """
    if count == 1:
        return [hi]
    return [lo * (hi / lo) ** (i / (count - 1)) for i in range(count)]
