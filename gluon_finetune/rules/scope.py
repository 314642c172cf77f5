"""The rule scope of a network: what every user of rules matches them against.

The trainer, ``fine_tune``, ``explain``, ``freeze`` and the CLI build their
:class:`~gluon_finetune.rules.resolution.RuleScope` here, from a network's
block index, so that a rule matches the same parameters, counts the same
blocks and calls the same ones trainable everywhere: a parameter *can train*
unless it is a constant or a running statistic (``BlockIndex.can_train``),
and it is *frozen before the rules* when it can train and its
``grad_req`` is ``'null'``.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

from ..structure.index import BlockIndex, trains
from .resolution import RuleScope

__all__ = ["RuleScope", "rule_scope"]


def rule_scope(params: Sequence, index: Optional[BlockIndex] = None, *,
               granularity: Optional[str] = None, blocks=None,
               grad_reqs: Optional[Iterable[str]] = None) -> RuleScope:
    """The scope of rules over ``params`` (Parameters, in table order).

    Parameters
    ----------
    params : sequence of Parameter
    index : BlockIndex, optional
        The network's index: paths, the block list (``granularity``,
        ``blocks`` as for ``structure.blocks``) and what can train. Without
        it only name keys work, and only the parameters themselves say what
        can train.
    grad_reqs : iterable of str, optional
        Each parameter's own ``grad_req`` (the trainer passes the values the
        parameters had before it); default: their current ones.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(2, in_units=2), nn.BatchNorm(in_channels=2))
    >>> scope = rule_scope(list(net.collect_params().values()), BlockIndex(net))
    >>> sorted(n.split("_", 1)[1] for n in scope.fixed)
    ['running_mean', 'running_var']
    """
    params = list(params)
    can = index.can_train if index is not None else trains
    reqs = [p.grad_req for p in params] if grad_reqs is None else list(grad_reqs)
    fixed = frozenset(p.name for p in params if not can(p))
    frozen = frozenset(p.name for p, req in zip(params, reqs)
                       if req == "null" and p.name not in fixed)
    if index is None:
        return RuleScope([p.name for p in params], frozen=frozen, fixed=fixed)
    return RuleScope([p.name for p in params], index.paths,
                     index.block_names(granularity, blocks), frozen, fixed)
