"""Layer rules: values, resolution into one ``Setting`` per parameter, and presets.

``resolution`` and ``values`` are the pure rule engine (no ``mxnet.gluon``);
``presets`` (``no_weight_decay``, ``combine``) and ``spreads`` (``layer_decay``,
``spread``) build plain rule dicts from a network.
"""
from ..errors import NoMatchError, RuleError
from .presets import combine, no_weight_decay
from .resolution import Setting, resolve, rule_items
from .spreads import layer_decay, spread, spread_rates

__all__ = ["NoMatchError", "RuleError", "Setting", "combine", "layer_decay", "no_weight_decay",
           "resolve", "rule_items", "spread", "spread_rates"]
