"""``LayerwiseTrainer``: a ``gluon.Trainer`` with per-layer rates, schedules and freezing.

It overrides as little of ``gluon.Trainer`` as it can. The pipeline: the
network's ``BlockIndex`` and the parameters' own values give the
``RuleScope``; the pure rule engine turns rules into one ``Setting`` per
parameter, the pure ``rates`` functions turn those into the ``Rate`` table,
and the optimizer's ``LayerwiseState`` owns rules, table and rates; this
class applies them to MXNet (``Parameter.lr_mult``/``wd_mult``/``grad_req``
through ``Ownership``, BatchNorm, optimizer state), so that plain Gluon code
reading the parameters sees the truth.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from mxnet import gluon

from ..checks import check_bool, check_real
from ..errors import InvalidValueError
from ..optim.optimizer import layerwise, preview_lrs
from ..optim.rates import Own, base_lr
from ..optim.update_paths import (
    apply_update_path,
    check_update_path,
    choose_update_path,
    known_sizes,
)
from ..rules.resolution import RuleScope
from ..rules.scope import rule_scope
from ..structure.index import BlockIndex, resolve_granularity, trains
from .arguments import (
    check_kvstore_args,
    make_optimizer,
    merge_rules,
    net_and_params,
    split_rfc_rules,
)
from .distributed import ParameterServerSync, sends_optimizer
from .freezing import check_bn_policy
from .horovod import HorovodSync, horovod_store
from .ownership import Ownership
from .states import StatesFiles
from .tables import RuleTables
from .views import TrainerViews

__all__ = ["LayerwiseTrainer"]

_KEEP = object()  # set_layers: leave the trainable-blocks limit as it is


class LayerwiseTrainer(TrainerViews, RuleTables, StatesFiles, HorovodSync, ParameterServerSync,
                       gluon.Trainer):
    """A ``gluon.Trainer`` that gives each layer its own rate, schedule or freeze.

    Same constructor, methods and modes as ``gluon.Trainer`` (MXNet 1.9.1);
    without ``layers`` it behaves exactly like it. It writes its rates into each
    ``Parameter``'s ``lr_mult``/``wd_mult``/``grad_req``; what the parameters
    had before it, and hand edits after, stay their own values (see
    ``docs/guide/ownership.md``).

    Parameters
    ----------
    params : ParameterDict, dict, list of Parameter, or Block
        The parameters to optimize. A ``Block`` also serves as ``net``.
    optimizer : str or Optimizer
        Any registered MXNet optimizer ('sgd', 'nag', 'adam', 'rmsprop', 'lamb', ...).
    optimizer_params : dict, optional
        Optimizer arguments, e.g. ``{'learning_rate': 0.1, 'momentum': 0.9}``.
        Entries whose value is a dict are layer rules (the RFC's form).
    kvstore : str or KVStore
        As in ``gluon.Trainer`` (also ``'horovod'``), and so are ``compression_params``
        and ``update_on_kvstore`` (``True`` on one device updates locally).
    layers : dict or list of (key, value), optional
        Layer rules: keys are block paths, parameter names/globs/``re:``
        regexes, block indices or ranges, ``'*'``; values are a multiplier,
        ``0``/``None`` (frozen) or a dict with ``learning_rate``, ``lr_mult``,
        ``lr_scheduler``, ``wd_mult``, ``frozen`` (the rules guide has them all).
    net : Block, optional
        The network, needed for path and index keys and BatchNorm handling.
    strict : bool, default True
        A rule that matches no parameter raises (with False: warns).
    bn : {'frozen', 'stats', 'train'}, default 'frozen'
        What a fully frozen BatchNorm does. 'frozen' also runs it on its running
        statistics (``use_global_stats``), as at inference; 'stats' is exactly
        ``grad_req='null'`` (batch statistics, as plain Gluon); 'train' also
        trains scale and shift.
    granularity : {'unit', 'stage'}, optional
        The block list that integer and slice keys index; default: the one
        ``get_model`` used for ``net`` (``net.finetune_granularity``), else 'unit'.
    update_path : {'auto', 'fused', 'per_array'}, default 'auto'
        How MXNet applies updates; results are bit-identical. 'auto': per
        array for SGD with momentum on CPU (faster there, unless the arrays are
        tiny: ``optim.update_paths``), MXNet's default otherwise.
    blocks : list, optional
        An explicit block list for index keys and ``set_trainable_blocks``
        (as ``blocks(net, blocks=...)`` takes it); default: the net's own.

    Raises
    ------
    RuleError
        Rules that do not resolve (a conflict, a rule that matches nothing).
    InvalidValueError
        An optimizer argument MXNet rejects only at ``step`` (``wd=nan``), a bad ``bn``.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="net_")  # names that sort as the layers go
    >>> with net.name_scope():
    ...     net.add(nn.Dense(8, in_units=4), nn.Dense(8, in_units=8), nn.Dense(2, in_units=8))
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
        net, params = net_and_params(params, net)
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
        self._blocks = blocks
        self._index = BlockIndex(net) if net is not None else None
        self._block_list = self._index.block_names(granularity, blocks) if net is not None \
            else None
        self._update_path_choice = update_path
        self._to_servers = sends_optimizer(kvstore, update_on_kvstore)
        self._check_sendable("the trainer's lr_scheduler", opt.lr_scheduler)
        self._ownership = Ownership(params, self._index.can_train if net is not None else trains)
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
        self._choose_update_path()
        self._start(layers, table)
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
    def scope(self) -> RuleScope:
        """What rules are matched in: the parameters, paths, block list, and which were
        frozen before the rules (their own ``grad_req``) or can never train."""
        return rule_scope(self._ownership.params, self._index, granularity=self._granularity,
                          blocks=self._blocks, grad_reqs=[o.grad_req for o in self.own_settings])

    @property
    def ownership(self) -> Ownership:
        """Who owns each parameter's settings (a later trainer on them asks this one)."""
        return self._ownership

    @property
    def own_settings(self) -> List[Own]:
        """Each parameter's own ``lr_mult``, ``wd_mult``, ``grad_req``: what it had before
        the trainer, or was given by hand since (see ``docs/guide/ownership.md``)."""
        return self._ownership.own_now()

    def current_lrs(self) -> List[float]:
        """Each parameter's learning rate at the current step (trainer order)."""
        return list(self._optimizer._get_lrs(list(range(len(self._params)))))

    def preview_lrs(self, steps: int) -> List[List[float]]:
        """Each parameter's rate at each of the next ``steps`` updates; changes nothing.

        Parameters
        ----------
        steps : int
            How many updates (as training would use them if nothing froze or thawed).
        """
        updated = [i for i, p in enumerate(self._params) if p.grad_req != "null"]
        return preview_lrs(self._optimizer, len(self._params), updated, steps)

    # ------------------------------------------------------------ rules and the limit

    def set_layers(self, layers, strict: Optional[bool] = None, *,
                   trainable_blocks=_KEEP, restart: bool = False) -> None:
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
        trainable_blocks : int or None, optional
            Also set the trainable-blocks limit (as ``set_trainable_blocks``).
        restart : bool, default False
            Start over: every parameter gets fresh optimizer state and every
            schedule starts again (its first update is ``schedule(1)``), as at
            the start of a training phase.

        Examples
        --------
        >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
        >>> trainer.set_layers({"features": 0, "output": 2.0})
        >>> trainer.current_lrs()[-1], net.features[0].weight.grad_req
        (0.2, 'null')
        """
        strict = self._strict if strict is None else check_bool("strict", strict)
        check_bool("restart", restart)
        state = self._optimizer.layerwise
        redeclared, limit = ("rules",), state.trainable_blocks
        if trainable_blocks is not _KEEP:
            limit, redeclared = self._checked_limit(trainable_blocks), ("rules", "limit")
        table = self._resolve(layers, self._params, base_lr(self._optimizer), strict)
        self._ownership.check(redeclared)
        before = (state.rules, state.table, state.rules_lr, state.declared, state.trainable_blocks)
        state.set_rules(layers, table, base_lr(self._optimizer), self._bn)
        state.trainable_blocks = limit
        try:
            self._refresh(redeclared, restart="all" if restart else None)
        except Exception:
            state.rules, state.table, state.rules_lr, state.declared, \
                state.trainable_blocks = before
            raise

    def set_trainable_blocks(self, n: Optional[int], restart: bool = False) -> None:
        """Let only the last ``n`` blocks train (on top of the rules); ``None`` lifts the limit.

        Parameters that thaw get fresh optimizer state; with ``restart=True``
        their rule's schedule starts again (its first update is ``schedule(1)``).
        The limit is saved by ``save_states``. Under ``bn='train'`` BatchNorm
        scale and shift outside the last ``n`` blocks keep training.
        The limit is saved by ``save_states``; ``GradualUnfreezing`` drives it.

        Parameters
        ----------
        n : int or None
            Trainable blocks, counted from the head; ``None``: no limit.
        restart : bool
            Restart the schedules of the blocks that thaw.
        """
        n = self._checked_limit(n)
        check_bool("restart", restart)
        state = self._optimizer.layerwise
        previous, state.trainable_blocks = state.trainable_blocks, n
        try:
            self._refresh(("limit",), restart="thawed" if restart else None)
        except Exception:
            state.trainable_blocks = previous
            raise

    # ------------------------------------------------------------ gluon.Trainer

    def _choose_update_path(self) -> None:
        """The faster of MXNet's two bit-identical update paths (rule: update_paths.py);
        MXNet's own choice is kept for the states file, which a stock trainer may read."""
        self._stock_aggregate_num = self._optimizer.aggregate_num
        path = choose_update_path(self._optimizer, [c.device_type for c in self._contexts],
                                  self._update_path_choice, known_sizes(self._params))
        apply_update_path(self._optimizer, path, self._updaters)

    def step(self, batch_size, ignore_stale_grad=False):
        """As ``gluon.Trainer.step``; first checks, before any weight changes, for hand
        edits that a rule or the limit owns (``Ownership.check``: an ``lr_mult`` a rule's
        own rate fixes, a thaw of what a rule or the limit freezes) and that every rule's
        schedule gives a rate at this step.

        Parameters
        ----------
        batch_size : int
            As ``gluon.Trainer.step``: gradients are scaled by ``1 / batch_size``.
        ignore_stale_grad : bool
            As ``gluon.Trainer.step``.
        """
        self._check_before_update()
        super().step(batch_size, ignore_stale_grad)

    def update(self, batch_size, ignore_stale_grad=False):
        """As ``gluon.Trainer.update``, with the same checks as ``step``.

        Parameters
        ----------
        batch_size : int
            As in ``gluon.Trainer.update`` (and ``ignore_stale_grad``).
        """
        self._check_before_update()
        super().update(batch_size, ignore_stale_grad)

    def _check_before_update(self) -> None:
        state = self._optimizer.layerwise
        self._ownership.check()
        state.check_schedules(self._optimizer, self._params)

    def set_learning_rate(self, lr):
        """Set the base rate; every layer is rescaled, keeping its multiplier (a rule's own
        rate too, relative to the base it was declared at, also after later refreshes).

        On a distributed kvstore with ``update_on_kvstore`` the new rate is sent
        to the servers (``gluon.Trainer`` never does), keeping their momentum.
        Raises ``UserWarning`` as ``gluon.Trainer`` does when a trainer-level
        ``lr_scheduler`` owns the rate.

        Parameters
        ----------
        lr : float
            The new base rate.
        """
        check_real("learning rate", lr)
        super().set_learning_rate(lr)
        self._send_to_servers(())
