"""``fine_tune``: fastai's one-call recipe (head first, then everything, one-cycle each).

Phase 1 (``freeze_epochs``): only the head trains, on a one-cycle schedule
peaking at ``base_lr``. Phase 2 (``epochs``): every block trains, block ``i``
on its own one-cycle schedule peaking at a rate spread geometrically from
``base_lr / lr_mult`` (first block) to ``base_lr / 2`` (head). Each phase is
a rule set installed on one ``LayerwiseTrainer`` (``set_layers``) and a
trainable-blocks limit, so ``explain``, the plots and ``save_states`` see it.

The user's ``layers`` go on top: a user rule that gives a parameter a rate
(a multiplier, ``0``/``None``, ``learning_rate``, a schedule, ``frozen``)
replaces the recipe's rate for it in both phases; the weight decay of
``no_weight_decay(net)`` and the user's weight-decay rules resolve together
by the usual rules (the more specific wins), and a user rule with the very
same key as one of the recipe's replaces what it sets.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mxnet import gluon
from mxnet import optimizer as mx_optimizer

from ..checks import InvalidTypeError, InvalidValueError, check_bool, check_int, check_real
from ..optim import OneCycle
from ..rules.keys import key_id
from ..rules.presets import combine, no_weight_decay
from ..rules.resolution import RuleScope, rule_items
from ..rules.scope import rule_scope
from ..rules.spreads import spread_rates
from ..rules.values import GROUPS, parse_value
from ..structure.index import BlockIndex
from ..trainer import LayerwiseTrainer
from .training import EpochResult, check_loader, fit

__all__ = ["FineTuneSchedule", "fine_tune", "phase_rules", "plan_phases", "with_default_momentum"]

DEFAULT_MOMENTUM = 0.9  # for the optimizers that take one and are named as a string
_MOMENTUM_OPTIMIZERS = ("sgd", "nag")

# fastai's fine_tune: the frozen phase peaks late (pct_start 0.99) from base/25, the thawed
# one starts from base/5; both end at peak/1e5.
_HEAD_CYCLE = {"pct_start": 0.99, "div": 25.0, "final_div": 1e5}
_ALL_CYCLE = {"div": 5.0, "final_div": 1e5}


def _net_scope(net) -> RuleScope:
    """``net``'s own rule scope (its block list, what its parameters' ``grad_req`` froze)."""
    return rule_scope(list(net.collect_params().values()), BlockIndex(net))


def _scope(net, block_list, trainable) -> RuleScope:
    """What the rules are matched in: ``net``'s rule scope, with a given block list, and
    ``trainable`` the parameters trainable before any rule (default all)."""
    scope = _net_scope(net)
    frozen = frozenset() if trainable is None else scope.name_set - frozenset(trainable)
    return RuleScope(scope.names, scope.paths,
                     scope.block_list if block_list is None else block_list, frozen, scope.fixed)


def _rated_names(layers, scope: RuleScope) -> frozenset:
    """Names of the parameters to which the user's rules give a rate."""
    if not rule_items(layers):
        return frozenset()
    return frozenset(s.name for s in scope.resolve(layers) if s.rule is not None)


def _combine(ours: List[Tuple[Any, Dict]], layers, taken: frozenset,
             block_list) -> List[Tuple[Any, Any]]:
    """The recipe's rules with the user's on top (see the module docstring): the recipe's
    block rates leave out the parameters the user rates (``taken``), and under a key the
    user gives too, the user's fields win; ``combine`` merges the rest."""
    user = rule_items(layers)
    user_fields = {key_id(k): {f for g in parse_value(str(k), v) for f in GROUPS[g]}
                   for k, v in user}
    out = []
    for key, value in ours:
        if "lr_scheduler" in value:  # a block's rate rule
            names = block_list[key].names
            left = sorted(names - taken)
            if not left:
                continue
            key = key if len(left) == len(names) else tuple(left)
        value = {k: v for k, v in value.items() if k not in user_fields.get(key_id(key), ())}
        if value:
            out.append((key, value))
    return list(rule_items(combine(out, user)))


def phase_rules(net: gluon.Block, phase: str, steps: int, base_lr: float,
                lr_mult: float = 100.0, pct_start: float = 0.3, layers=None,
                no_decay: bool = True, block_list=None, trainable=None,
                scope: Optional[RuleScope] = None) -> List[Tuple[Any, Any]]:
    """The rules of one phase of :func:`fine_tune` (checked: they resolve on ``net``).

    ``phase="head"``: the head (last block) on ``OneCycle(steps, pct_start=0.99)``
    peaking at ``base_lr``. ``phase="all"``: block ``i`` on its own
    ``OneCycle(steps, pct_start, div=5)`` peaking at the ``spread`` of
    ``base_lr / lr_mult`` .. ``base_lr / 2``. Plus ``no_weight_decay(net)``
    (unless ``no_decay=False``) and the user's ``layers`` on top.
    ``block_list``: the blocks to number, as ``trainer.block_list`` gives them
    (default: the net's own list, the one ``LayerwiseTrainer(net, ...)`` uses).
    ``trainable``: the parameters trainable before any rule (for
    ``"trainable:"`` keys; default all). ``scope``: the ``RuleScope`` to match
    in (``trainer.scope``), instead of both.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="net_")
    >>> with net.name_scope():
    ...     net.add(nn.Dense(4, in_units=3), nn.Dense(2, in_units=4))
    >>> rules = phase_rules(net, "all", steps=10, base_lr=0.1, lr_mult=10, no_decay=False)
    >>> [(key, value["learning_rate"]) for key, value in rules]
    [(0, 0.01), (1, 0.05)]
    """
    if phase not in ("head", "all"):
        raise InvalidValueError(f"phase must be 'head' or 'all', got {phase!r}",
                                argument="phase")
    scope = scope if scope is not None else _scope(net, block_list, trainable)
    count = len(scope.block_list)
    if phase == "head":
        ours = [(count - 1, {"learning_rate": base_lr,
                             "lr_scheduler": OneCycle(steps, **_HEAD_CYCLE)})]
    else:
        ours = [(i, {"learning_rate": peak, "lr_scheduler": OneCycle(steps, pct_start,
                                                                      **_ALL_CYCLE)})
                for i, peak in enumerate(spread_rates(base_lr / lr_mult, base_lr / 2, count))]
    if no_decay:
        ours += list(no_weight_decay(net).items())
    rules = _combine(ours, layers, _rated_names(layers, scope), scope.block_list)
    scope.resolve(rules)
    return rules


class FineTuneSchedule:
    """The phases of :func:`fine_tune` as an epoch hook: ``on_epoch(e)`` installs a phase on
    the trainer at the epoch it starts (its rules, every clock restarted, fresh optimizer
    state, the trainable-blocks limit), and does nothing at the other epochs.

    ``phases`` are ``(name, epochs, rules)`` in order, as :func:`plan_phases` gives
    them. The state a phase leaves (rates, clocks, limit) is the trainer's, so a run
    resumed mid-phase with ``trainer.load_states`` continues it exactly.

    Examples
    --------
    >>> schedule = FineTuneSchedule(trainer, plan_phases(net, len(loader), 3))  # doctest: +SKIP
    >>> fit(net, trainer, loader, schedule.epochs, on_epoch=schedule.on_epoch)  # doctest: +SKIP
    """

    def __init__(self, trainer: LayerwiseTrainer, phases: Sequence[Tuple[str, int, Any]]):
        self.trainer, self.phases = trainer, [p for p in phases if p[1] > 0]
        self.epochs = sum(n for _, n, _ in self.phases)

    def phase_at(self, epoch: int) -> str:
        """The name of the phase that ``epoch`` belongs to (``"head"`` or ``"all"``)."""
        epoch = check_int("epoch", epoch, minimum=0)
        for name, n, _ in self.phases:
            if epoch < n:
                return name
            epoch -= n
        raise InvalidValueError(f"epoch {epoch} is past the schedule's {self.epochs} epochs",
                                argument="epoch")

    def on_epoch(self, epoch: int) -> str:
        """Call at the start of ``epoch``; returns its phase."""
        name = self.phase_at(epoch)
        start = 0
        for phase, n, rules in self.phases:
            if epoch == start:
                # one call: its rules and limit, fresh optimizer state, every schedule
                # from its first step
                self.trainer.set_layers(rules, trainable_blocks=1 if phase == "head" else None,
                                        restart=True)
            start += n
        return name


def plan_phases(net: gluon.Block, steps_per_epoch: int, epochs: int, freeze_epochs: int = 1,
                *, trainer: Optional[LayerwiseTrainer] = None, **rule_args
                ) -> List[Tuple[str, int, Any]]:
    """``[("head", freeze_epochs, rules), ("all", epochs, rules)]``: :func:`phase_rules` of
    each phase over its steps (checked on ``net``); ``rule_args``: ``base_lr``,
    ``lr_mult``, ``pct_start``, ``layers``, ``no_decay``. With ``trainer``, its block
    list and what was trainable before its rules."""
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    scope = trainer.scope if trainer is not None else _net_scope(net)
    args = dict(rule_args, scope=scope)
    return [(p, n, phase_rules(net, p, max(1, n * steps_per_epoch), **args))
            for p, n in (("head", freeze_epochs), ("all", epochs))]


def _check_args(net, train_data, epochs, freeze_epochs, base_lr, lr_mult, pct_start, val_data,
                loss_fn, progress, no_decay) -> None:
    if not isinstance(net, gluon.Block):
        raise InvalidTypeError(f"net must be a gluon.Block, got {type(net).__name__}",
                               argument="net")
    check_loader("train_data", train_data)
    if val_data is not None:
        check_loader("val_data", val_data)
    if check_int("epochs", epochs, minimum=0) + check_int("freeze_epochs", freeze_epochs,
                                                          minimum=0) == 0:
        raise InvalidValueError("epochs and freeze_epochs are both 0: nothing to train",
                                argument="epochs")
    check_real("base_lr", base_lr, positive=True)
    check_real("lr_mult", lr_mult, positive=True)
    if not 0 < check_real("pct_start", pct_start) < 1:
        raise InvalidValueError(f"pct_start must be in (0, 1), got {pct_start!r}",
                                argument="pct_start")
    if loss_fn is not None and not callable(loss_fn):
        raise InvalidTypeError(f"loss_fn must be a callable (a gluon.loss.Loss), got "
                               f"{type(loss_fn).__name__}", argument="loss_fn")
    check_bool("progress", progress)
    check_bool("no_decay", no_decay)


def _check_trainer(net, trainer, optimizer_params) -> None:
    if trainer is None:
        return
    if not isinstance(trainer, LayerwiseTrainer):
        raise InvalidTypeError(f"trainer must be a LayerwiseTrainer (fine_tune installs rules "
                               f"on it), got {type(trainer).__name__}", argument="trainer")
    if trainer.net is not net:
        raise InvalidValueError("trainer was built for another network (or without net=); "
                                "build it as LayerwiseTrainer(net, ...)", argument="trainer")
    if {id(p) for p in trainer.params} != {id(p) for p in net.collect_params().values()}:
        raise InvalidValueError("trainer must hold all of net's parameters (fine_tune trains "
                                "them all in its second phase)", argument="trainer")
    if optimizer_params is not None:
        raise InvalidValueError("optimizer_params is for the trainer fine_tune builds; with "
                                "trainer= set them on that trainer", argument="optimizer_params")
    _check_no_scheduler(trainer.optimizer, "trainer")


def _check_no_scheduler(optimizer, argument: str) -> None:
    """fine_tune runs the trainer at ``base_lr`` (a multiplier in ``layers`` is relative
    to it, as documented), which a trainer-level scheduler would own."""
    if isinstance(optimizer, mx_optimizer.Optimizer) and optimizer.lr_scheduler is not None:
        raise InvalidValueError(f"the {argument}'s optimizer has its own lr_scheduler "
                                f"({optimizer.lr_scheduler!r}); fine_tune sets the rates "
                                f"itself (base_lr and one-cycle schedules): give one without",
                                argument=argument)


def _make_trainer(net, optimizer, optimizer_params, base_lr) -> LayerwiseTrainer:
    if optimizer_params is not None and not isinstance(optimizer_params, dict):
        raise InvalidTypeError(f"optimizer_params must be a dict, got "
                               f"{type(optimizer_params).__name__}: {optimizer_params!r}",
                               argument="optimizer_params")
    params = dict(optimizer_params or {})
    for key in ("learning_rate", "lr_scheduler"):
        if key in params:
            raise InvalidValueError(f"optimizer_params must not contain {key!r}: fine_tune "
                                    f"sets the rates (base_lr) and their schedules",
                                    argument="optimizer_params")
    params = with_default_momentum(optimizer, params)
    if isinstance(optimizer, str):
        params["learning_rate"] = base_lr
    _check_no_scheduler(optimizer, "optimizer")
    return LayerwiseTrainer(net, optimizer, params)


def with_default_momentum(optimizer: Any, optimizer_params: Optional[dict]) -> dict:
    """``optimizer_params`` with ``momentum`` 0.9 added for ``'sgd'`` and ``'nag'`` (MXNet
    names them in any case) unless it is given; other optimizers get them unchanged.

    The one place of this default: ``fine_tune`` and the command line both use it.

    Examples
    --------
    >>> with_default_momentum("SGD", {"wd": 1e-4})
    {'wd': 0.0001, 'momentum': 0.9}
    >>> with_default_momentum("adam", None)
    {}
    """
    params = dict(optimizer_params or {})
    if isinstance(optimizer, str) and optimizer.lower() in _MOMENTUM_OPTIMIZERS:
        params.setdefault("momentum", DEFAULT_MOMENTUM)
    return params


def _context(net):
    contexts = next(iter(net.collect_params().values())).list_ctx()
    if len(contexts) != 1:
        raise InvalidValueError(f"fine_tune trains on one context (fit's loop); the network "
                                f"is on {contexts}: pass ctx=", argument="ctx")
    return contexts[0]


def fine_tune(net: gluon.Block, train_data: gluon.data.DataLoader, epochs: int, *,
              loss_fn: Optional[Callable] = None, optimizer: Any = "sgd",
              base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100.0,
              pct_start: float = 0.3, val_data: Optional[gluon.data.DataLoader] = None,
              layers=None, trainer: Optional[LayerwiseTrainer] = None,
              optimizer_params: Optional[dict] = None, no_decay: bool = True, ctx=None,
              progress: bool = True) -> List[EpochResult]:
    """Fine-tune ``net`` as fastai's ``fine_tune`` does: the head, then everything.

    First ``freeze_epochs`` epochs with only the head (the last block)
    training, on a one-cycle schedule peaking at ``base_lr`` (``pct_start``
    0.99, from ``base_lr/25``); the rest of the network is frozen, BatchNorm
    layers included (running statistics too: ``bn='frozen'``). Then
    ``epochs`` epochs with every block trainable, block ``i`` of ``L`` on its
    own one-cycle schedule (``pct_start``, from peak/5, down to peak/1e5)
    peaking at ``lo * (hi / lo) ** (i / (L - 1))`` with ``lo = base_lr /
    lr_mult`` and ``hi = base_lr / 2``. (fastai's ``slice`` starts at
    ``base_lr / (2 * lr_mult)``; this recipe starts at ``base_lr / lr_mult``.)
    Each phase starts with fresh optimizer state and its schedules at step 1.
    Biases and normalization layers get no weight decay (``no_weight_decay``;
    ``no_decay=False`` to keep it).

    Parameters
    ----------
    net : Block
        The network; its head is the last block of its block list.
    train_data : DataLoader
        ``(x, label)`` batches.
    epochs : int
        Epochs of the thawed phase (may be 0).
    loss_fn : callable, optional
        Default: softmax cross-entropy.
    optimizer : str or Optimizer
        For the trainer fine_tune builds ('sgd' and 'nag' get momentum 0.9
        unless ``optimizer_params`` says otherwise).
    base_lr : float
        The head's peak rate in the head-only phase.
    freeze_epochs : int
        Epochs of the head-only phase (may be 0).
    lr_mult : float
        How much lower the first block's peak is than ``base_lr`` in the thawed phase.
    pct_start : float
        The thawed phase's warm-up fraction, in (0, 1).
    val_data : DataLoader, optional
        ``(x, label)`` batches; adds a validation accuracy per epoch.
    layers : dict or list of (key, value), optional
        Extra rules: a rate they give replaces the recipe's in both phases (``{0:
        0}`` keeps block 0 frozen throughout); a rule with only ``wd_mult``
        composes with ``no_weight_decay`` by the usual resolution.
    trainer : LayerwiseTrainer, optional
        Use this trainer (built with ``net``, without an ``lr_scheduler`` of its
        own) instead of building one; its rules and trainable-blocks limit are
        replaced by the recipe's, and its learning rate is set to ``base_lr``
        (a multiplier in ``layers`` means ``multiplier * base_lr``, whatever
        rate the trainer or an ``Optimizer`` instance had).
    optimizer_params : dict, optional
        More optimizer arguments (``wd``, ``momentum``, ...) for the trainer
        fine_tune builds; not ``learning_rate`` (that is ``base_lr``).
    no_decay : bool
        No weight decay on biases and normalization layers.
    ctx : Context, optional
        Where to train (default: the network's one context).
    progress : bool
        tqdm progress bars.

    Returns
    -------
    list of dict
        fit's per-epoch results for both phases in order (``epoch`` counts
        on), each with ``phase`` ('head' or 'all').

    Raises
    ------
    InvalidValueError
        A count or rate out of range, a trainer built without ``net`` or over
        part of it, rules that clash with the recipe's (before anything trains).
    InvalidTypeError
        An argument of the wrong kind.

    Examples
    --------
    >>> from gluon_finetune import fine_tune
    >>> before = net.features[0].weight.data().copy()
    >>> history = fine_tune(net, train_loader, epochs=2, val_data=val_loader, progress=False)
    >>> [(h["epoch"], h["phase"]) for h in history]
    [(0, 'head'), (1, 'all'), (2, 'all')]
    >>> bool((net.features[0].weight.data() == before).min())  # the thawed phase trained it
    False
    """
    _check_args(net, train_data, epochs, freeze_epochs, base_lr, lr_mult, pct_start, val_data,
                loss_fn, progress, no_decay)
    _check_trainer(net, trainer, optimizer_params)
    ctx = ctx if ctx is not None else _context(net)
    phases = plan_phases(net, len(train_data), epochs, freeze_epochs, trainer=trainer,
                         base_lr=base_lr, lr_mult=lr_mult, pct_start=pct_start, layers=layers,
                         no_decay=no_decay)
    if trainer is None:
        trainer = _make_trainer(net, optimizer, optimizer_params, base_lr)
    if trainer.learning_rate != base_lr:  # a multiplier in layers is relative to base_lr
        trainer.set_learning_rate(base_lr)
    schedule = FineTuneSchedule(trainer, phases)
    history = fit(net, trainer, train_data, schedule.epochs, val_data, loss=loss_fn, ctx=ctx,
                  on_epoch=schedule.on_epoch, progress=progress, desc="fine_tune")
    return [{**result, "phase": schedule.phase_at(result["epoch"])} for result in history]
