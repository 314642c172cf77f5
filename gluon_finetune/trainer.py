"""``LayerwiseTrainer``: a ``gluon.Trainer`` with per-layer rates, schedules and freezing.

It overrides as little of ``gluon.Trainer`` as it can. Rules are resolved by
the pure ``rules.resolve`` into a per-index ``Rate`` table that lives inside
the (picklable) optimizer; ``Parameter.lr_mult``/``wd_mult``/``grad_req`` are
set to match so that plain Gluon code reading them sees the truth.
"""
from __future__ import annotations

import inspect
import math
import numbers
import os
import pickle
from typing import Any, Dict, List, Optional, Sequence

from mxnet import gluon
from mxnet import optimizer as mx_optimizer
from mxnet.kvstore import KVStoreBase

from . import states as states_file
from .distributed import ParameterServerSync, sends_optimizer
from .freezing import (
    apply_bn_policy,
    bn_param_names,
    check_bn_policy,
    check_unfreeze,
    set_frozen,
    trainable_req,
)
from .optimizer import Rate, layerwise
from .rules import Setting, resolve, rule_items
from .schedules import rebased_copy
from .structure import (
    block_names,
    can_train,
    last_blocks_names,
    param_paths,
    resolve_granularity,
    structural_paths,
)
from .update_paths import apply_update_path, check_update_path, choose_update_path

__all__ = ["LayerwiseTrainer"]

# optimizer arguments whose value is a dict: never mistaken for an RFC-style layer rule
_DICT_ARGS = ("param_idx2name", "param_dict")


def _param_list(params) -> List[gluon.Parameter]:
    """As gluon.Trainer reads ``params``: a dict in sorted-key order, or a list."""
    if isinstance(params, (dict, gluon.ParameterDict)):
        params = [params[key] for key in sorted(params.keys())]
    if not isinstance(params, (list, tuple)):
        raise ValueError(f"First argument must be a list or dict of Parameters, or a Block, "
                         f"got {type(params)}.")
    for p in params:
        if not isinstance(p, gluon.Parameter):
            raise ValueError(f"First argument must be a list or dict of Parameters, got list "
                             f"of {type(p)}.")
    return list(params)


def _split_rfc_rules(optimizer_params):
    """Split the RFC form (per-layer dicts inside optimizer_params) from real arguments."""
    if optimizer_params is None:
        return {}, {}
    if not isinstance(optimizer_params, dict):
        raise TypeError(f"optimizer_params must be a dict, got "
                        f"{type(optimizer_params).__name__}: {optimizer_params!r}")
    plain = {k: v for k, v in optimizer_params.items()
             if not isinstance(v, dict) or k in _DICT_ARGS}
    rfc = {k: v for k, v in optimizer_params.items() if k not in plain}
    return plain, rfc


def _merge_rules(layers, rfc: Dict) -> Any:
    if not rfc:
        return layers
    pairs = rule_items(layers)
    both = sorted({repr(k) for k, _ in pairs} & {repr(k) for k in rfc})
    if both:
        raise ValueError(f"layer(s) {', '.join(both)} given both in layers= and inside "
                         f"optimizer_params; use one form per layer")
    return list(pairs) + list(rfc.items())


def _accepted_args(cls) -> set:
    names = set()
    for klass in cls.__mro__:
        if isinstance(klass, type) and issubclass(klass, mx_optimizer.Optimizer):
            sig = inspect.signature(klass.__init__)
            names |= {n for n, p in sig.parameters.items()
                      if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names


def _check_optimizer_args(name: str, cls, args: Dict) -> None:
    unknown = sorted(set(args) - _accepted_args(cls))
    if unknown:
        raise ValueError(f"unknown optimizer parameter(s) {unknown} for optimizer {name!r}; "
                         f"it accepts {sorted(_accepted_args(cls))}")
    if "param_dict" in args:
        raise ValueError("optimizer_params must not contain 'param_dict': the trainer sets it")
    lr = args.get("learning_rate")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real)
                           or not math.isfinite(lr)):
        raise ValueError(f"learning_rate must be a finite number, got {lr!r}")
    sched = args.get("lr_scheduler")
    if sched is not None and not callable(sched):
        raise TypeError(f"lr_scheduler must be an mx.lr_scheduler.LRScheduler, got {sched!r}")


def _make_optimizer(optimizer, optimizer_params: Dict) -> mx_optimizer.Optimizer:
    """The optimizer object, not yet made layerwise (that waits until rules resolve)."""
    if isinstance(optimizer, mx_optimizer.Optimizer):
        if optimizer_params:
            raise ValueError(f"optimizer_params must be empty when optimizer is an Optimizer "
                             f"instance, got {sorted(optimizer_params)}")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name such as 'sgd' or an mx.optimizer.Optimizer, "
                        f"got {type(optimizer).__name__}: {optimizer!r}")
    registry = mx_optimizer.Optimizer.opt_registry
    cls = registry.get(optimizer.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {optimizer!r}; registered: {sorted(registry)}")
    _check_optimizer_args(optimizer, cls, optimizer_params)
    return mx_optimizer.create(optimizer, **optimizer_params)


def _check_kvstore_args(kvstore, compression_params, update_on_kvstore) -> None:
    if kvstore is not None and not isinstance(kvstore, (str, KVStoreBase)):
        raise TypeError(f"kvstore must be a KVStore, a str such as 'device' or None, got "
                        f"{type(kvstore).__name__}: {kvstore!r}")
    if update_on_kvstore not in (None, True, False):
        raise TypeError(f"update_on_kvstore must be None, True or False, got "
                        f"{update_on_kvstore!r}")
    if compression_params is not None and not isinstance(compression_params, dict):
        raise TypeError(f"compression_params must be a dict or None, got {compression_params!r}")


def _base_lr(optimizer) -> Optional[float]:
    if optimizer.lr is not None:
        return optimizer.lr
    return getattr(optimizer.lr_scheduler, "base_lr", None)


class LayerwiseTrainer(ParameterServerSync, gluon.Trainer):
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
        What a fully frozen BatchNorm does (see ``freezing.py``).
    update_path : {'auto', 'fused', 'per_array'}, default 'auto'
        How MXNet applies updates; results are bit-identical. 'auto': per
        array for SGD with momentum on CPU (faster there), MXNet's default otherwise
        (``update_paths.choose_update_path``).
    granularity : {'unit', 'stage'}, optional
        The block list that integer and slice keys index; default: the one
        ``get_model`` used for ``net`` (``net.finetune_granularity``), else 'unit'.
    blocks : list, optional
        An explicit block list for index keys and ``set_trainable_blocks``
        (see ``structure.blocks``); default: the net's own.

    Examples
    --------
    >>> trainer = LayerwiseTrainer(net, 'sgd', {'learning_rate': 0.1},
    ...                            layers={'*': 0.1, 'output': 1.0, 'features.0': 0})
    """

    def __init__(self, params, optimizer, optimizer_params=None, kvstore="device",
                 compression_params=None, update_on_kvstore=None, *, layers=None, net=None,
                 strict: bool = True, bn: str = "frozen", granularity: Optional[str] = None,
                 update_path: str = "auto", blocks=None):
        if isinstance(params, gluon.Block):
            if net is not None and net is not params:
                raise ValueError("params is a Block and net is another Block; pass one network")
            net, params = params, params.collect_params()
        if net is not None and not isinstance(net, gluon.Block):
            raise TypeError(f"net must be a gluon.Block, got {type(net).__name__}")
        # get_model's numbering, so that indices mean the same blocks
        granularity = resolve_granularity(net, granularity)
        if blocks is not None:  # checked now: a bad list is an error here, not at a refresh
            if net is None:
                raise ValueError("blocks= needs the network: pass net= (or the Block itself)")
            block_names(net, granularity, blocks)
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        check_bn_policy(bn)
        _check_kvstore_args(kvstore, compression_params, update_on_kvstore)
        param_list = _param_list(params)
        plain_params, rfc_rules = _split_rfc_rules(optimizer_params)
        layers = _merge_rules(layers, rfc_rules)
        opt = _make_optimizer(optimizer, plain_params)
        check_update_path(update_path, opt)

        self._net, self._strict, self._bn, self._granularity = net, strict, bn, granularity
        self._blocks = blocks
        self._to_servers = sends_optimizer(kvstore, update_on_kvstore)
        self._check_sendable("the trainer's lr_scheduler", opt.lr_scheduler)
        self._own = [(p.lr_mult, p.wd_mult, p.grad_req, can_train(p, net)) for p in param_list]
        table = self._resolve(layers, param_list, opt) if layers is not None else None

        previous = [p._trainer for p in param_list]
        try:
            super().__init__(param_list, layerwise(opt), None, kvstore,
                             compression_params, update_on_kvstore)
        except Exception:
            for p, trainer in zip(param_list, previous):
                p._trainer = trainer
            raise
        self._layers, self._table = layers, table
        self._choose_update_path(update_path)
        if table is not None:  # without rules nothing is touched, as in gluon.Trainer
            self._refresh()
        self._start_kvstore_early()

    # ------------------------------------------------------------ rules

    def _resolve(self, layers, params: Sequence[gluon.Parameter], opt) -> tuple:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"parameter name(s) {twice} appear more than once; rules need "
                             f"unique names")
        paths = block_list = None
        if self._net is not None:
            paths = structural_paths(self._net)
            block_list = block_names(self._net, self._granularity, self._blocks)
        table = resolve(layers, names, paths=paths, block_list=block_list,
                        base_lr=_base_lr(opt), strict=self._strict)
        for s in {id(s.lr_scheduler): s for s in table if s.lr_scheduler is not None}.values():
            self._check_sendable(f"rule {s.rule!r}", s.lr_scheduler)
        return table

    def _rates_from(self, table: Sequence[Setting]) -> Dict[int, Rate]:
        opt = self._optimizer
        base = _base_lr(opt)
        bn_train = set(bn_param_names(self._net)) if self._net is not None and \
            self._bn == "train" else set()
        schedules: Dict[str, Any] = {}
        rates = {}
        for i, s in enumerate(table):
            own_lr, own_wd, own_req, differentiable = self._own[i]
            if s.rule is None:
                rates[i] = Rate(None, own_lr, own_wd, frozen=differentiable and own_req == "null")
                continue
            if s.frozen and s.name in bn_train:
                rates[i] = Rate("bn='train'", 1.0, own_wd if s.wd_mult is None else s.wd_mult)
                continue
            mult = s.lr_mult if s.lr_mult is not None else 1.0
            sched = None
            if s.lr_scheduler is not None:
                peak = s.learning_rate if s.learning_rate is not None else base * mult
                sched = schedules.setdefault(s.rule, rebased_copy(s.lr_scheduler, peak))
            rates[i] = Rate(s.rule, mult, own_wd if s.wd_mult is None else s.wd_mult,
                            sched, opt.lr, 0, s.frozen, s.learning_rate)
        return rates

    def _install(self, rates: Dict[int, Rate], fresh_state: bool = True) -> None:
        """Apply a rate table: optimizer, lr/wd multipliers, grad_req, BatchNorm, and
        (unless the state was just loaded) fresh state for frozen/thawed parameters."""
        frozen = [rates[i].frozen if i in rates else False for i in range(len(self._params))]
        changed = set_frozen(self._params, frozen,
                             [trainable_req(req, diff) for _, _, req, diff in self._own])
        for i, param in enumerate(self._params):
            if i in rates:
                param.lr_mult, param.wd_mult = rates[i].lr_mult, rates[i].wd_mult
        self._optimizer._layerwise_rates = dict(rates)
        if self._net is not None:
            names = {p.name for p, f in zip(self._params, frozen) if f}
            apply_bn_policy(self._net, names, self._bn)
        if fresh_state:
            self._reset_optimizer_state(changed)
        self._send_to_servers(changed if fresh_state else ())

    def _active_updaters(self) -> list:
        updaters = list(self._updaters)
        kv_updater = getattr(self._kvstore, "_updater", None) if self._kvstore else None
        if self._update_on_kvstore and kv_updater is not None:
            updaters.append(kv_updater)
        return updaters

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
        strict = self._strict if strict is None else strict
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        saved_strict, self._strict = self._strict, strict
        try:
            table = self._resolve(layers, self._params, self._optimizer)
        finally:
            self._strict = saved_strict
        self._table = table
        self._refresh()
        self._layers = layers

    # ------------------------------------------------------------ update path

    def _choose_update_path(self, update_path: str) -> None:
        """The faster of MXNet's two bit-identical update paths (rule: update_paths.py)."""
        path = choose_update_path(self._optimizer, [c.device_type for c in self._contexts],
                                  update_path)
        apply_update_path(self._optimizer, path, self._updaters)

    @property
    def update_path(self) -> str:
        """'fused' (multi-tensor updates in chunks) or 'per_array'."""
        return "fused" if self._optimizer.aggregate_num > 0 else "per_array"

    # ------------------------------------------------------------ gradual unfreezing

    def _refresh(self, restart: bool = False) -> None:
        """Rebuild the rate table from the rules, the trainable-blocks limit and the clocks."""
        if self._table is None:
            self._table = self._resolve({}, self._params, self._optimizer)
        rates = self._limit_to_trainable_blocks(self._rates_from(self._table))
        self._install(self._keep_clocks(rates, restart))

    def _limit_to_trainable_blocks(self, rates: Dict[int, Rate]) -> Dict[int, Rate]:
        n = self.trainable_blocks
        if n is None:
            return rates
        allowed = last_blocks_names(block_names(self._net, self._granularity, self._blocks), n)
        return {i: r if self._params[i].name in allowed or r.frozen
                else r._replace(lr_mult=0.0, frozen=True) for i, r in rates.items()}

    def _keep_clocks(self, rates: Dict[int, Rate], restart: bool) -> Dict[int, Rate]:
        """A schedule's clock is the parameter's update count plus ``start``. Thawing
        resets the count (fresh state), so a thawed parameter joins the running
        schedule at this step, or with ``restart`` starts it again from 0."""
        old = self._optimizer._layerwise_rates
        now = self._optimizer.num_update
        out = {}
        for i, rate in rates.items():
            before = old.get(i)
            start = before.start if before is not None else 0
            if before is not None and before.frozen and not rate.frozen:
                start = 0 if restart else now
            out[i] = rate._replace(start=start)
        return out

    @property
    def trainable_blocks(self) -> Optional[int]:
        """How many blocks (from the end of the block list) may train; None: no limit."""
        return getattr(self._optimizer, "_layerwise_trainable_blocks", None)

    def set_trainable_blocks(self, n: Optional[int], restart: bool = False) -> None:
        """Let only the last ``n`` blocks train (on top of the rules); ``None`` lifts the limit.

        Parameters that thaw get fresh optimizer state; with ``restart=True``
        their rule's schedule starts again from this step (``schedule(t - s)``).
        The limit is saved by ``save_states``.
        """
        if self._net is None:
            raise ValueError("set_trainable_blocks needs the network: pass net= (or the Block "
                             "itself) to LayerwiseTrainer")
        check_unfreeze(n, block_names(self._net, self._granularity, self._blocks))
        if not isinstance(restart, bool):
            raise TypeError(f"restart must be True or False, got {restart!r}")
        previous = self.trainable_blocks
        self._optimizer._layerwise_trainable_blocks = n
        try:
            self._refresh(restart)
        except Exception:
            self._optimizer._layerwise_trainable_blocks = previous
            raise

    @property
    def layers(self):
        """The rules this trainer was given (or last set with ``set_layers``)."""
        return self._layers

    @property
    def net(self):
        """The network the rules refer to (None when not given)."""
        return self._net

    @property
    def rates(self) -> Dict[int, Rate]:
        """The live per-index rate table (empty without rules); index = position in params."""
        return dict(self._optimizer._layerwise_rates)

    def current_lrs(self) -> List[float]:
        """Each parameter's learning rate at the current step (trainer order)."""
        return list(self._optimizer._get_lrs(list(range(len(self._params)))))

    def explain(self):
        """The live rule table; see :func:`gluon_finetune.explain`."""
        from .report import explain
        return explain(self)

    # ------------------------------------------------------------ gluon.Trainer

    def _init_kvstore(self):
        """As gluon.Trainer, but ``update_on_kvstore=True`` without a kvstore (one
        device) updates locally instead of failing on ``None.is_capable``."""
        config = self._kvstore_params
        kv = config["kvstore"]
        no_store = kv is None or (isinstance(kv, str) and "dist" not in kv
                                  and len(self._contexts) == 1)
        if no_store and config["update_on_kvstore"]:
            config = dict(config, update_on_kvstore=None)
            saved, self._kvstore_params = self._kvstore_params, config
            try:
                return super()._init_kvstore()
            finally:
                self._kvstore_params = saved
        return super()._init_kvstore()

    def set_learning_rate(self, lr):
        """Set the base rate; every layer is rescaled, keeping its multiplier.

        On a distributed kvstore with ``update_on_kvstore`` the new rate is sent
        to the servers (``gluon.Trainer`` never does), keeping their momentum.
        Raises ``UserWarning`` as ``gluon.Trainer`` does when a trainer-level
        ``lr_scheduler`` owns the rate.
        """
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr):
            raise ValueError(f"learning rate must be a finite number, got {lr!r}")
        super().set_learning_rate(lr)
        self._send_to_servers(())

    def save_states(self, fname):
        """Save optimizer state, the rate table with each schedule's state, per-parameter
        update counts and a signature of the parameters (checked by ``load_states``)."""
        if not isinstance(fname, (str, os.PathLike)):
            raise TypeError(f"fname must be a path, got {fname!r}")
        if not self._kv_initialized:
            self._init_kvstore()
        if self._params_to_init:
            self._init_params()
        if self._update_on_kvstore and self._distributed:
            raise RuntimeError("Cannot save states for distributed training with "
                               "update_on_kvstore=True (the state lives on the servers)")
        updater = self._active_updaters()[-1] if self._update_on_kvstore else self._updaters[0]
        states_file.pack(fname, updater.states, self._optimizer, self._signature())

    def load_states(self, fname):
        """Load states saved by ``save_states`` (or by ``gluon.Trainer``).

        The file must belong to the same parameters (count, shapes, dtypes and
        structural paths in the network); otherwise ValueError, and nothing
        changes. Parameters are matched by structural path, so a rebuilt
        network whose names sort differently (``dense100_`` before
        ``dense98_``; gluon.Trainer indexes sorted names) gets each state back.
        The saved rate table (multipliers, frozen layers, schedules
        and their clocks) replaces the current one. Unpickles: trusted files only.
        """
        if not isinstance(fname, (str, os.PathLike)):
            raise TypeError(f"fname must be a path, got {fname!r}")
        if self._to_servers:
            raise RuntimeError("Cannot load states for distributed training with "
                               "update_on_kvstore=True (the state lives on the servers)")
        states_bytes, optimizer, saved_sig = states_file.unpack(fname)
        if not isinstance(optimizer, mx_optimizer.Optimizer):
            raise ValueError(f"{fname}: no optimizer in this states file")
        order = list(range(len(self._params)))
        if saved_sig is not None:
            order = states_file.check_signature(saved_sig, self._signature(),
                                                [p.name for p in self._params])
        first_states = pickle.loads(states_bytes)
        self._check_state_indices(first_states, fname)
        optimizer = layerwise(optimizer)
        for table in states_file.optimizer_tables(optimizer):
            states_file.reindex(order, table)
        rates = states_file.restore_unsaved(optimizer._layerwise_rates,
                                            self._optimizer._layerwise_rates)
        if not self._kv_initialized:
            self._init_kvstore()
        if self._params_to_init:
            self._init_params()
        optimizer.param_dict = {i: p for i, p in enumerate(self._params)}
        for k, updater in enumerate(self._active_updaters()):
            # each updater needs its own arrays; the first reuses the ones checked above
            updater.states = first_states if k == 0 else pickle.loads(states_bytes)
            states_file.reindex(order, updater.states)
            updater.states_synced = dict.fromkeys(updater.states, False)
            updater.optimizer = optimizer
        self._optimizer = optimizer
        if rates:
            self._install(rates, fresh_state=False)

    def _check_state_indices(self, states: dict, fname) -> None:
        extra = sorted(i for i in states if not (isinstance(i, int) and
                                                  0 <= i < len(self._params)))
        if extra:
            raise ValueError(f"{fname}: states for parameter indices {extra[:5]} but this "
                             f"trainer has {len(self._params)} parameters: another model")

    def _signature(self):
        paths = param_paths(self._net) if self._net is not None else None
        return states_file.signature(self._params, paths)
