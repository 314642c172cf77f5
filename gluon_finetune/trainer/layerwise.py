"""``LayerwiseTrainer``: a ``gluon.Trainer`` with per-layer rates, schedules and freezing.

It overrides as little of ``gluon.Trainer`` as it can. The pipeline: the pure
``rules.resolve`` turns rules into one ``Setting`` per parameter, the pure
``rates`` functions turn those into the ``Rate`` table, and the optimizer's
``LayerwiseState`` owns it; this class applies it to MXNet
(``Parameter.lr_mult``/``wd_mult``/``grad_req``, BatchNorm, optimizer
state), so that plain Gluon code reading the parameters sees the truth.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from mxnet import gluon

from ..checks import check_bool, check_real
from ..errors import InvalidTypeError, InvalidValueError
from ..optim import rates as rate_table
from ..optim.optimizer import layerwise, preview_lrs
from ..optim.rates import Own, Rate, base_lr
from ..optim.update_paths import apply_update_path, check_update_path, choose_update_path
from ..rules.resolution import Setting, resolve
from ..structure.index import (
    block_names,
    can_train,
    last_blocks_names,
    resolve_granularity,
    structural_paths,
)
from .arguments import check_kvstore_args, make_optimizer, merge_rules, param_list, split_rfc_rules
from .distributed import ParameterServerSync, sends_optimizer
from .freezing import (
    apply_bn_policy,
    bn_param_names,
    check_bn_policy,
    check_unfreeze,
    set_frozen,
    trainable_req,
)
from .horovod import HorovodSync, horovod_store
from .states import StatesFiles

__all__ = ["LayerwiseTrainer"]


def _net_and_params(params, net) -> Tuple[Optional[gluon.Block], List[gluon.Parameter]]:
    if isinstance(params, gluon.Block):
        if net is not None and net is not params:
            raise InvalidValueError("params is a Block and net is another Block; pass one network")
        net, params = params, params.collect_params()
    if net is not None and not isinstance(net, gluon.Block):
        raise InvalidTypeError(f"net must be a gluon.Block, got {type(net).__name__}")
    return net, param_list(params)


class LayerwiseTrainer(StatesFiles, HorovodSync, ParameterServerSync, gluon.Trainer):
    """A ``gluon.Trainer`` that gives each layer its own rate, schedule or freeze.

    Same constructor, methods and modes as ``gluon.Trainer`` (MXNet 1.9.1);
    without ``layers`` it behaves exactly like it.

    Parameters
    ----------
    params : ParameterDict, dict, list of Parameter, or Block
        The parameters to optimize. A ``Block`` also serves as ``net``.
    optimizer : str or Optimizer
        Any registered MXNet optimizer ('sgd', 'nag', 'adam', 'rmsprop', 'lamb', ...).
    optimizer_params : dict, optional
        Optimizer arguments, e.g. ``{'learning_rate': 0.1, 'momentum': 0.9}``.
        Entries whose value is a dict are layer rules (the RFC's form).
    kvstore, compression_params, update_on_kvstore
        As in ``gluon.Trainer``. ``update_on_kvstore=True`` where no kvstore is
        created (one device) updates locally instead of crashing.
    layers : dict or list of (key, value), optional
        Layer rules: keys are block paths, parameter names/globs/``re:``
        regexes, block indices or ranges, ``'*'``; values are a multiplier,
        ``0``/``None`` (frozen) or a dict with ``learning_rate``, ``lr_mult``,
        ``lr_scheduler``, ``wd_mult``, ``frozen``. See ``rules.py``.
    net : Block, optional
        The network, needed for path and index keys and BatchNorm handling.
    strict : bool, default True
        A rule that matches no parameter raises (with False: warns).
    bn : {'frozen', 'stats', 'train'}, default 'frozen'
        What a fully frozen BatchNorm does (see ``freezing.py``). 'frozen' also
        runs it on its running statistics (``use_global_stats``), as at
        inference, so ``{"features": 0}`` is more than ``grad_req='null'`` in a
        BatchNorm network; 'stats' is exactly ``grad_req='null'`` (batch
        statistics, as plain Gluon and d2l.ai's exercise); 'train' also trains
        scale and shift.
    granularity : {'unit', 'stage'}, optional
        The block list that integer and slice keys index; default: the one
        ``get_model`` used for ``net`` (``net.finetune_granularity``), else 'unit'.
    update_path : {'auto', 'fused', 'per_array'}, default 'auto'
        How MXNet applies updates; results are bit-identical. 'auto': per
        array for SGD with momentum on CPU (faster there), MXNet's default otherwise
        (``update_paths.choose_update_path``).
    blocks : list, optional
        An explicit block list for index keys and ``set_trainable_blocks``
        (see ``structure.blocks``); default: the net's own.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential()
    >>> net.add(nn.Dense(8, in_units=4), nn.Dense(8, in_units=8), nn.Dense(2, in_units=8))
    >>> net.initialize()
    >>> trainer = LayerwiseTrainer(net, 'sgd', {'learning_rate': 0.1},
    ...                            layers={'*': 0.1, '2': 1.0, 0: 0})
    >>> [round(lr, 6) for lr in trainer.current_lrs()]  # bias, weight of each layer
    [0.0, 0.0, 0.01, 0.01, 0.1, 0.1]
    """

    def __init__(self, params, optimizer, optimizer_params=None, kvstore="device",
                 compression_params=None, update_on_kvstore=None, *, layers=None, net=None,
                 strict: bool = True, bn: str = "frozen", granularity: Optional[str] = None,
                 update_path: str = "auto", blocks=None):
        net, params = _net_and_params(params, net)
        # get_model's numbering, so that indices mean the same blocks
        granularity = resolve_granularity(net, granularity)
        if blocks is not None and net is None:
            raise InvalidValueError("blocks= needs the network: pass net= (or the Block itself)")
        check_bool("strict", strict)
        check_bn_policy(bn)
        check_kvstore_args(kvstore, compression_params, update_on_kvstore)
        kvstore = horovod_store(kvstore, update_on_kvstore)
        plain_params, rfc_rules = split_rfc_rules(optimizer_params)
        layers = merge_rules(layers, rfc_rules)
        opt = make_optimizer(optimizer, plain_params)
        check_update_path(update_path, opt)

        self._net, self._strict, self._bn, self._granularity = net, strict, bn, granularity
        self._block_list = block_names(net, granularity, blocks) if net is not None else None
        self._update_path_choice = update_path
        self._to_servers = sends_optimizer(kvstore, update_on_kvstore)
        self._check_sendable("the trainer's lr_scheduler", opt.lr_scheduler)
        self._own = [Own(p.lr_mult, p.wd_mult, p.grad_req, can_train(p, net)) for p in params]
        table = self._resolve(layers, params, base_lr(opt), strict) if layers is not None \
            else None

        previous = [p._trainer for p in params]
        try:
            super().__init__(params, layerwise(opt), None, kvstore, compression_params,
                             update_on_kvstore)
        except Exception:
            for p, trainer in zip(params, previous):
                p._trainer = trainer
            raise
        self._layers, self._table = layers, table
        self._choose_update_path()
        if table is not None:  # without rules nothing is touched, as in gluon.Trainer
            self._refresh()
        self._start_kvstore_early()
        self._start_horovod()

    # ------------------------------------------------------------ public surface

    @property
    def params(self) -> List[gluon.Parameter]:
        """The parameters, in the trainer's (and the optimizer's) index order."""
        return list(self._params)

    @property
    def net(self) -> Optional[gluon.Block]:
        """The network the rules refer to (None when not given)."""
        return self._net

    @property
    def granularity(self) -> str:
        """The block list's granularity ('unit' or 'stage')."""
        return self._granularity

    @property
    def block_list(self) -> Optional[List[Tuple[str, frozenset]]]:
        """The block list that indices, ranges and the trainable-blocks limit count:
        ``(path, parameter names)`` pairs (None without a network)."""
        return None if self._block_list is None else list(self._block_list)

    @property
    def frozen_before(self) -> frozenset:
        """Names of the parameters that were frozen before this trainer (by hand or by
        ``get_model(unfreeze=)``): ``"trainable:"`` keys leave them out."""
        return frozenset(p.name for p, own in zip(self._params, self._own) if own.frozen)

    @property
    def layers(self):
        """The rules the rates come from (the constructor's, ``set_layers``', or a
        loaded states file's)."""
        return self._layers

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

    def current_lrs(self) -> List[float]:
        """Each parameter's learning rate at the current step (trainer order)."""
        return list(self._optimizer._get_lrs(list(range(len(self._params)))))

    def preview_lrs(self, steps: int) -> List[List[float]]:
        """Each parameter's learning rate at each of the next ``steps`` updates, as
        training would use them if nothing froze or thawed; the trainer is untouched."""
        updated = [i for i, p in enumerate(self._params) if p.grad_req != "null"]
        return preview_lrs(self._optimizer, len(self._params), updated, steps)

    def explain(self):
        """The live rule table; see :func:`gluon_finetune.explain`."""
        from ..reporting.explain import explain
        return explain(self)

    # ------------------------------------------------------------ rules and the limit

    def set_layers(self, layers, strict: Optional[bool] = None) -> None:
        """Replace the layer rules mid-training (atomic: a rule set that fails changes nothing).

        Parameters that become trainable start with fresh optimizer state;
        schedules of the new rules are fresh copies on the current step count.

        Parameters
        ----------
        layers : dict or list of (key, value)
            The new rules (they replace the old ones; ``{}`` restores every
            parameter's own multipliers).
        strict : bool, optional
            Overrides the trainer's ``strict`` for this call.
        """
        strict = self._strict if strict is None else check_bool("strict", strict)
        self._table = self._resolve(layers, self._params, base_lr(self._optimizer), strict)
        self._layers = layers
        self._refresh()

    def set_trainable_blocks(self, n: Optional[int], restart: bool = False) -> None:
        """Let only the last ``n`` blocks train (on top of the rules); ``None`` lifts the limit.

        Parameters that thaw get fresh optimizer state; with ``restart=True``
        their rule's schedule starts again (its first update is ``schedule(1)``).
        The limit is saved by ``save_states``.
        """
        if self._net is None:
            raise InvalidValueError("set_trainable_blocks needs the network: pass net= (or the "
                                    "Block itself) to LayerwiseTrainer")
        n = check_unfreeze(n, self._block_list)
        check_bool("restart", restart)
        state = self._optimizer.layerwise
        previous, state.trainable_blocks = state.trainable_blocks, n
        try:
            self._refresh(restart)
        except Exception:
            state.trainable_blocks = previous
            raise

    def _resolve(self, layers, params: Sequence[gluon.Parameter], base: Optional[float],
                 strict: bool) -> Tuple[Setting, ...]:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise InvalidValueError(f"parameter name(s) {twice} appear more than once; rules need "
                                    "unique names")
        paths = structural_paths(self._net) if self._net is not None else None
        trainable = [p.name for p, own in zip(params, self._own) if not own.frozen]
        table = resolve(layers, names, paths=paths, block_list=self._block_list, base_lr=base,
                        strict=strict, trainable=trainable)
        for s in {id(s.lr_scheduler): s for s in table if s.lr_scheduler is not None}.values():
            self._check_sendable(f"rule {s.rule!r}", s.lr_scheduler)
        return table

    def _fresh_rates(self, opt, table: Sequence[Setting]) -> Dict[int, Rate]:
        """The rate table that rules and the limit give, before clocks."""
        bn_train = set(bn_param_names(self._net)) if self._net is not None and \
            self._bn == "train" else set()
        rates = rate_table.rates_from(table, self._own, base_lr(opt), opt.lr, bn_train)
        n = opt.layerwise.trainable_blocks
        if n is None:
            return rates
        names = last_blocks_names(self._block_list, n)
        return rate_table.limit_to(rates, [p.name in names for p in self._params], n)

    def _refresh(self, restart: bool = False) -> None:
        """Rebuild the rate table from the rules, the trainable-blocks limit and the clocks."""
        if self._table is None:
            self._table = self._resolve({}, self._params, None, self._strict)
        opt = self._optimizer
        rates = rate_table.keep_clocks(opt.layerwise.rates, self._fresh_rates(opt, self._table),
                                       opt.num_update, opt.begin_num_update, restart)
        self._install(rates)

    def _install(self, rates: Dict[int, Rate], fresh_state: bool = True) -> None:
        """Apply a rate table: the optimizer's state, lr/wd multipliers, grad_req, the
        BatchNorm layers of these parameters, and (unless the state was just loaded)
        fresh optimizer state for parameters that froze or thawed."""
        frozen = [rates[i].frozen if i in rates else False for i in range(len(self._params))]
        changed = set_frozen(self._params, frozen,
                             [trainable_req(o.grad_req, o.differentiable) for o in self._own])
        for i, param in enumerate(self._params):
            if i in rates:
                param.lr_mult, param.wd_mult = rates[i].lr_mult, rates[i].wd_mult
        state = self._optimizer.layerwise
        state.set_rates(rates)
        state.rules = self._layers
        state.declared = rate_table.declarations(self._table, self._bn)
        if self._net is not None:
            apply_bn_policy(self._net, {p.name for p, f in zip(self._params, frozen) if f},
                            self._bn, owned={p.name for p in self._params})
        if fresh_state:
            self._reset_optimizer_state(changed)
        self._send_to_servers(changed if fresh_state else ())
        self._check_same_on_every_rank()

    def _reset_optimizer_state(self, indices: Sequence[int]) -> None:
        """Forget momentum etc. of parameters that were frozen or thawed: thawed ones
        start fresh (MXNet would resume the old momentum), frozen ones free memory."""
        for updater in self._active_updaters():
            for i in indices:
                updater.states.pop(i, None)
                updater.states_synced.pop(i, None)
        for counts in self._optimizer._all_index_update_counts.values():
            for i in indices:
                counts.pop(i, None)

    # ------------------------------------------------------------ gluon.Trainer

    def _choose_update_path(self) -> None:
        """The faster of MXNet's two bit-identical update paths (rule: update_paths.py);
        MXNet's own choice is kept for the states file, which a stock trainer may read."""
        self._stock_aggregate_num = self._optimizer.aggregate_num
        path = choose_update_path(self._optimizer, [c.device_type for c in self._contexts],
                                  self._update_path_choice)
        apply_update_path(self._optimizer, path, self._updaters)

    def step(self, batch_size, ignore_stale_grad=False):
        """As ``gluon.Trainer.step``; first checks for hand edits of ``lr_mult`` that a
        rule cannot honour (``rates.check_hand_edits``) and that every rule's schedule
        gives a rate at this step, before any weight changes."""
        self._check_before_update()
        super().step(batch_size, ignore_stale_grad)

    def update(self, batch_size, ignore_stale_grad=False):
        """As ``gluon.Trainer.update``, with the same checks as ``step``."""
        self._check_before_update()
        super().update(batch_size, ignore_stale_grad)

    def _check_before_update(self) -> None:
        state = self._optimizer.layerwise
        rate_table.check_hand_edits(state.rates, self._params)
        state.check_schedules(self._optimizer, self._params)

    def set_learning_rate(self, lr):
        """Set the base rate; every layer is rescaled, keeping its multiplier.

        On a distributed kvstore with ``update_on_kvstore`` the new rate is sent
        to the servers (``gluon.Trainer`` never does), keeping their momentum.
        Raises ``UserWarning`` as ``gluon.Trainer`` does when a trainer-level
        ``lr_scheduler`` owns the rate.
        """
        check_real("learning rate", lr)
        super().set_learning_rate(lr)
        self._send_to_servers(())
