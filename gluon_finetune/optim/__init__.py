"""What a kvstore server unpickles: the layerwise optimizer, its rate table, schedules.

Modules here import only ``mxnet.optimizer`` and ``mxnet.lr_scheduler``: a
server unpickles the optimizer while ``import mxnet`` is still running, when
``mxnet.gluon`` cannot be imported yet (see the import contracts).
"""
from .optimizer import fresh_layerwise, preview_lrs
from .schedules import OneCycle, SlantedTriangular

__all__ = ["OneCycle", "SlantedTriangular", "fresh_layerwise", "preview_lrs"]
