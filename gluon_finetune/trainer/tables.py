"""How ``LayerwiseTrainer`` turns rules, own values and the limit into an installed table.

``RuleTables`` is mixed into ``LayerwiseTrainer`` (as ``StatesFiles`` and
``ParameterServerSync`` are): resolving rules in the trainer's scope,
building the rate table (``optim.rates``), and installing it: the
parameters' attributes through ``Ownership``, the optimizer's
``LayerwiseState``, the BatchNorm policy and fresh optimizer state.
"""
from __future__ import annotations

import warnings
from typing import Dict, Optional, Sequence, Tuple

from mxnet import gluon

from ..errors import InvalidValueError
from ..optim import rates as rate_table
from ..optim.rates import Rate, base_lr
from ..reporting.explain import replaced_notes
from ..rules.resolution import Setting
from ..structure.listing import last_blocks_names
from .freezing import apply_bn_policy, bn_param_names, check_unfreeze

__all__ = ["RuleTables"]


class RuleTables:
    """The table-building half of ``LayerwiseTrainer`` (see the module docstring)."""

    def _start(self, layers, table: Optional[Tuple[Setting, ...]]) -> None:
        """Install the constructor's rules. Without rules nothing is touched, as in
        gluon.Trainer, except that what another trainer wrote is undone (the parameters
        get their own values back: ``Ownership``)."""
        if table is not None:
            self._optimizer.layerwise.set_rules(layers, table, base_lr(self._optimizer),
                                                self._bn)
            self._refresh(("rules",))
        elif self._ownership.taken_over:
            self._apply_bn(self._ownership.restore())

    def _checked_limit(self, n) -> Optional[int]:
        if self._net is None:
            raise InvalidValueError("set_trainable_blocks needs the network: pass net= (or the "
                                    "Block itself) to LayerwiseTrainer")
        return check_unfreeze(n, self._block_list)

    def _resolve(self, layers, params: Sequence[gluon.Parameter], base: Optional[float],
                 strict: bool) -> Tuple[Setting, ...]:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise InvalidValueError(f"parameter name(s) {twice} appear more than once; rules need "
                                    "unique names")
        table = self.scope.resolve(layers, base_lr=base, strict=strict)
        for s in {id(s.lr_scheduler): s for s in table if s.lr_scheduler is not None}.values():
            self._check_sendable(f"rule {s.rule!r}", s.lr_scheduler)
        for note in replaced_notes(table, self._ownership.own_now()):
            warnings.warn(note, UserWarning, stacklevel=3)
        return table

    def _fresh_rates(self, opt) -> Dict[int, Rate]:
        """The rate table that rules, own values and the limit give, before clocks."""
        state, own = opt.layerwise, self._ownership
        bn_train = set(bn_param_names(self._net)) if self._net is not None and \
            self._bn == "train" else set()
        ref = state.reference_lr(base_lr(opt))  # rates relative to it: set_learning_rate holds
        rates = rate_table.rates_from(state.table, own.own, ref, ref, bn_train, own.edited)
        n = state.trainable_blocks
        if n is None:
            return rates
        names = last_blocks_names(self._block_list, n) | bn_train
        return rate_table.limit_to(rates, [p.name in names for p in self._params], n)

    def _refresh(self, redeclared: Tuple[str, ...] = (), restart: Optional[str] = None) -> None:
        """Rebuild the rate table from the rules, own values, the limit and the clocks.

        ``restart``: ``"thawed"`` restarts the schedules of what thaws, ``"all"`` gives
        every parameter fresh optimizer state and restarts every schedule."""
        self._ownership.check(redeclared)
        self._ownership.take_edits(rules_replaced="rules" in redeclared)
        opt, state = self._optimizer, self._optimizer.layerwise
        if state.table is None:
            state.set_rules(None, self._resolve({}, self._params, None, self._strict), None,
                            self._bn)
        old = state.rates if restart != "all" else \
            {i: Rate(None, 0.0, 0.0, frozen=True) for i in range(len(self._params))}
        rates = rate_table.keep_clocks(old, self._fresh_rates(opt), opt.num_update,
                                       opt.begin_num_update, restart is not None)
        self._install(rates, fresh=range(len(self._params)) if restart == "all" else ())

    def _install(self, rates: Dict[int, Rate], fresh_state: bool = True, fresh=()) -> None:
        """Apply a rate table: lr/wd multipliers and grad_req (``Ownership.write``), the
        optimizer's state, the BatchNorm layers of these parameters, and (unless the state
        was just loaded) fresh optimizer state for parameters that froze or thawed (and
        ``fresh`` ones)."""
        changed = self._ownership.write(rates)
        self._optimizer.layerwise.set_rates(rates)
        self._apply_bn(sorted(set(changed) | set(fresh)) if fresh_state else (), rates)
        self._check_same_on_every_rank()

    def _apply_bn(self, changed: Sequence[int], rates: Optional[Dict[int, Rate]] = None) -> None:
        """The BatchNorm policy for what is frozen now, and fresh optimizer state for
        ``changed`` indices (sent to kvstore servers too)."""
        if self._net is not None:
            frozen = [r.frozen for _, r in sorted(rates.items())] if rates is not None else \
                [o.frozen for o in self._ownership.own]
            apply_bn_policy(self._net, {p.name for p, f in zip(self._params, frozen) if f},
                            self._bn, owned={p.name for p in self._params}, index=self._index)
        self._reset_optimizer_state(changed)
        self._send_to_servers(changed)
