"""Which layers of a network are BatchNorm-like: those with a ``use_global_stats`` switch.

Gluon's ``BatchNorm`` and its subclasses (``SyncBatchNorm``, GluonCV's
``FrozenBatchNorm2D`` ...) keep the switch in their operator flags (read in
``_compat``); freezing sets it (``bn='frozen'``) and ``explain`` reports it.
"""
from __future__ import annotations

from typing import List

from mxnet.gluon import nn

from .._compat import has_global_stats
from .index import descendants

__all__ = ["batchnorm_layers"]


def batchnorm_layers(net) -> List[nn.BatchNorm]:
    """Every BatchNorm-like layer of ``net`` (one with a ``use_global_stats`` switch)."""
    return [b for b in descendants(net) if has_global_stats(b)]
