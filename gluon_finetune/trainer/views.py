"""What a ``LayerwiseTrainer`` shows of its state, read-only (mixed into it).

``explain``, the plots, the recipes and states files read these; the rules,
their resolved table, the rates and the trainable-blocks limit all live in the
optimizer's ``LayerwiseState``, so each view reads it there.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from ..optim.rates import Rate
from ..rules.resolution import Setting

__all__ = ["TrainerViews"]


class TrainerViews:
    """Read-only properties of ``LayerwiseTrainer`` (expects ``_optimizer`` and ``scope``)."""

    @property
    def frozen_before(self) -> frozenset:
        """Names of the parameters frozen by their own ``grad_req`` (by hand or by
        ``get_model(unfreeze=)``, before the trainer or since): ``"trainable:"`` keys leave
        them out."""
        return self.scope.frozen

    @property
    def layers(self):
        """The rules the rates come from (the constructor's, ``set_layers``', or a
        loaded states file's)."""
        return self._optimizer.layerwise.rules

    @property
    def settings(self) -> Optional[Tuple[Setting, ...]]:
        """The rules resolved: one ``Setting`` per parameter (None without rules)."""
        return self._optimizer.layerwise.table

    @property
    def rates(self) -> Dict[int, Rate]:
        """The live per-index rate table (empty without rules); index = position in params."""
        return dict(self._optimizer.layerwise.rates)

    @property
    def trainable_blocks(self) -> Optional[int]:
        """How many blocks (from the end of the block list) may train; None: no limit."""
        return self._optimizer.layerwise.trainable_blocks

    @property
    def update_path(self) -> str:
        """'fused' (multi-tensor updates in chunks) or 'per_array'."""
        return "fused" if self._optimizer.aggregate_num > 0 else "per_array"

    def explain(self):
        """The live rule table; see :func:`gluon_finetune.explain`."""
        from ..reporting.explain import explain
        return explain(self)
