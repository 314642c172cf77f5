"""Layer rules: values, matching, resolution into one ``Setting`` per parameter, presets.

``values``, ``matching`` and ``resolution`` are the pure rule engine (no
``mxnet.gluon``); ``scope`` builds the :class:`RuleScope` rules are matched
in from a network; ``presets`` (``no_weight_decay``, ``combine``) and
``spreads`` (``layer_decay``, ``spread``) build plain rule dicts from a network.
"""
from ..errors import NoMatchError, RuleError
from .presets import combine, no_weight_decay
from .resolution import RuleScope, Setting, resolve, rule_items
from .scope import rule_scope
from .spreads import layer_decay, spread, spread_rates

__all__ = ["NoMatchError", "RuleError", "RuleScope", "Setting", "combine", "layer_decay",
           "no_weight_decay", "resolve", "rule_items", "rule_scope", "spread", "spread_rates"]
