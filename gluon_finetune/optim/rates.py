"""From resolved rules to what the optimizer uses: the per-parameter rate table.

Pure arithmetic over plain data (``Setting`` rows in, ``Rate`` rows out) and
``LayerwiseState``, the one object that owns the per-parameter state that
travels with the optimizer (into ``save_states`` files and to kvstore
servers). Nothing here imports ``mxnet.gluon``: a kvstore server unpickles
this module while ``import mxnet`` is still running.

A rule's schedule is evaluated on the parameter's own clock ``t``: its update
count since it joined, plus the step it joined at (``Rate.start``), so that
``t`` equals MXNet's ``num_update`` for a parameter that trained from the
start (``begin_num_update`` included once).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set

from ..errors import InvalidValueError, StatesError
from .schedules import Unsaved, describe_schedule, private_copy, rebased_copy, scheduled_rate
from .schedules import fingerprint as _fingerprint
from .schedules import picklable as _picklable

__all__ = ["Rate", "Own", "Clock", "Unsaved", "LayerwiseState", "base_lr", "rates_from",
           "limit_to", "keep_clocks", "declarations", "rate_at", "check_hand_edits", "LIMIT_RULE"]

LIMIT_RULE = "trainable_blocks={}"  # the rule label of a parameter frozen by the limit


class Own(NamedTuple):
    """A parameter's own settings, from before any rule: what it keeps without one."""

    lr_mult: float
    wd_mult: float
    grad_req: str
    differentiable: bool

    @property
    def frozen(self) -> bool:
        return self.differentiable and self.grad_req == "null"


class Clock:
    """A rule's schedule on one clock, evaluated as declared at any step ``t``.

    MXNet's schedulers change themselves when called (``FactorScheduler``
    decays ``base_lr`` in place as ``t`` grows), so a used copy is right only
    for a ``t`` at or after the last one it saw. Asked for an earlier step
    (a block that thawed with ``restart``), it starts again from the
    declared (never called) copy. Each clock that can differ gets its own.
    """

    def __init__(self, declared: Callable):
        self.declared = declared
        self._live: Optional[Callable] = None
        self._last = 0

    def __call__(self, t: int) -> float:
        if self._live is None or t < self._last:
            self._live = private_copy(self.declared)
        self._last = t
        return self._live(t)

    def __repr__(self) -> str:
        return describe_schedule(self.declared)

    def __eq__(self, other: object) -> bool:  # the same schedule as declared
        return isinstance(other, Clock) and \
            _fingerprint(self.declared) == _fingerprint(other.declared)

    def __hash__(self) -> int:
        return hash(_fingerprint(self.declared))


class Rate(NamedTuple):
    """What one parameter index gets from the optimizer.

    With ``lr_scheduler`` (a :class:`Clock`) the rate is its value at the
    parameter's clock. Else ``fixed_lr`` (a rule's absolute rate) holds while
    the trainer has no scheduler of its own, so that 0.001 stays exactly
    0.001. Else the rate is the trainer's rate times ``Parameter.lr_mult``
    (``lr_mult`` on a kvstore server, which has no Parameters). Both were set
    when the trainer's rate was ``ref_lr``; ``set_learning_rate`` rescales them
    by ``lr / ref_lr``. ``rule`` gave the rate, ``wd_rule`` the weight decay;
    ``thawed`` marks a parameter frozen before the trainer that a rule thaws.
    """

    rule: Optional[str]
    lr_mult: float
    wd_mult: float
    lr_scheduler: Optional[Callable] = None
    ref_lr: Optional[float] = None
    start: int = 0
    frozen: bool = False
    fixed_lr: Optional[float] = None
    wd_rule: Optional[str] = None
    thawed: bool = False

    @property
    def governed(self) -> bool:
        """Whether the rule fixes the rate itself (schedule or absolute rate); a frozen
        parameter's rate is 0 whatever its rule would give."""
        return not self.frozen and (self.lr_scheduler is not None or self.fixed_lr is not None)


def base_lr(optimizer) -> Optional[float]:
    """The trainer's base rate: ``optimizer.lr``, or its scheduler's ``base_lr``."""
    if optimizer.lr is not None:
        return optimizer.lr
    return getattr(optimizer.lr_scheduler, "base_lr", None)


# ----------------------------------------------------------------- the table

def rates_from(table: Sequence[Any], own: Sequence[Own], base: Optional[float],
               ref_lr: Optional[float], bn_train: Set[str] = frozenset()) -> Dict[int, Rate]:
    """One ``Rate`` per index from resolved rules (``rules.Setting`` rows).

    A parameter no rate rule matches keeps its own multiplier and freeze
    state; ``bn_train`` names BatchNorm scale/shift parameters that train
    (at multiplier 1) even when a rule freezes them (``bn='train'``). One
    declared schedule copy per rule, peaking at the rule's rate.
    """
    declared: Dict[str, Callable] = {}
    rates = {}
    for i, s in enumerate(table):
        wd = own[i].wd_mult if s.wd_mult is None else s.wd_mult
        if s.rule is None:
            rates[i] = Rate(None, own[i].lr_mult, wd, frozen=own[i].frozen, wd_rule=s.wd_rule)
        elif s.frozen and s.name in bn_train:
            rates[i] = Rate("bn='train'", 1.0, wd, wd_rule=s.wd_rule, thawed=own[i].frozen)
        else:
            mult = s.lr_mult if s.lr_mult is not None else 1.0
            clock = None
            if s.lr_scheduler is not None:
                peak = s.learning_rate if s.learning_rate is not None else base * mult
                if s.rule not in declared:
                    declared[s.rule] = rebased_copy(s.lr_scheduler, peak, s.rule)
                clock = Clock(declared[s.rule])
            rates[i] = Rate(s.rule, mult, wd, clock, ref_lr, 0, s.frozen, s.learning_rate,
                            s.wd_rule, own[i].frozen and not s.frozen)
    return rates


def limit_to(rates: Mapping[int, Rate], allowed: Sequence[bool], n: int) -> Dict[int, Rate]:
    """Freeze every index not ``allowed`` (outside the last ``n`` blocks), naming the limit
    as its rule; its rate is 0 until it thaws (the schedule it keeps is its rule's)."""
    label = LIMIT_RULE.format(n)
    return {i: r if allowed[i] or r.frozen else
            r._replace(rule=label, lr_mult=0.0, frozen=True, thawed=False)
            for i, r in rates.items()}


def keep_clocks(old: Mapping[int, Rate], new: Mapping[int, Rate], now: int, begin: int,
                restart: bool) -> Dict[int, Rate]:
    """Give each rate its clock's start, and each (rule, start) its own :class:`Clock`.

    A parameter keeps its start; a new one starts at ``begin`` (its clock is
    then MXNet's ``num_update``). One that thaws gets fresh optimizer state
    (its count restarts), so it joins the running schedule at step ``now``,
    or with ``restart`` starts it again from 0.
    """
    clocks: Dict[tuple, Clock] = {}
    out = {}
    for i, rate in new.items():
        before = old.get(i)
        start = before.start if before is not None else begin
        if before is not None and before.frozen and not rate.frozen:
            start = 0 if restart else now
        clock = rate.lr_scheduler
        if clock is not None:
            clock = clocks.setdefault((id(clock.declared), start), Clock(clock.declared))
        out[i] = rate._replace(start=start, lr_scheduler=clock)
    return out


def rate_at(rate: Rate, count: int, begin: int, optimizer_lr: Optional[float],
            trainer_scheduled: bool) -> Optional[float]:
    """A governed rate at the parameter's update ``count``; None when the trainer's rate
    times the multiplier applies instead."""
    if rate.lr_scheduler is not None:
        t = count - begin + rate.start
        lr = rate.lr_scheduler(t)
        if type(lr) is not float or not math.isfinite(lr):  # the fast path: a finite float
            lr = scheduled_rate(rate.rule, t, lr)
    elif rate.fixed_lr is not None and not trainer_scheduled:
        lr = rate.fixed_lr
    else:
        return None
    if rate.ref_lr and optimizer_lr is not None and optimizer_lr != rate.ref_lr:
        lr = lr * (optimizer_lr / rate.ref_lr)
    return lr


def check_hand_edits(rates: Mapping[int, Rate], params: Sequence[Any]) -> None:
    """A hand edit of ``Parameter.lr_mult`` takes effect for multiplier rules (as in
    Gluon); for a rule with its own rate or schedule it cannot, so it is an error."""
    for i, rate in rates.items():
        param = params[i]
        if rate.governed and param.lr_mult != rate.lr_mult:
            raise InvalidValueError(
                f"{param.name}: lr_mult was changed by hand to {param.lr_mult!r}, but its "
                f"rule {rate.rule!r} gives it its own rate or schedule (lr_mult "
                f"{rate.lr_mult!r}), which an edit cannot change; change the rule with "
                f"set_layers instead")


def declarations(table: Sequence[Any], bn: str) -> List[str]:
    """What the rules declare for each parameter, as text: two trainers (or a trainer
    and a states file) have the same rules exactly when these agree."""
    out = []
    for s in table:
        if s.rule is None and s.wd_rule is None:
            out.append("no rule")
            continue
        parts = [f"rule {s.rule!r}" if s.rule else "no rate rule"]
        if s.frozen:
            parts.append("frozen" + (f" (bn={bn!r})" if bn == "train" else ""))
        elif s.learning_rate is not None:
            parts.append(f"learning_rate={s.learning_rate!r}")
        elif s.rule is not None:
            parts.append(f"lr_mult={s.lr_mult!r}")
        if s.lr_scheduler is not None:
            parts.append(f"lr_scheduler={_fingerprint(s.lr_scheduler)}")
        if s.wd_rule is not None:
            parts.append(f"wd rule {s.wd_rule!r}: wd_mult={s.wd_mult!r}")
        out.append(", ".join(parts))
    return out


# ----------------------------------------------------------------- the owner

class LayerwiseState:
    """The per-parameter state that travels with the optimizer.

    ``rates`` (index -> :class:`Rate`, clocks included), ``trainable_blocks``
    (the limit), ``rules`` (the rule set the rates came from, None without
    rules) with ``declared`` (its :func:`declarations`, to compare with a
    file), ``resend`` (indices that start fresh on a kvstore server),
    ``signature`` and ``names`` (the parameters' names, so that rules keyed by
    name follow a rebuilt network; both set only inside a states file). Pickling it is the one
    place this state is (de)serialized: a schedule that cannot be pickled is
    replaced by an :class:`Unsaved` marker (see ``restore_unsaved``).
    """

    def __init__(self) -> None:
        self.rates: Dict[int, Rate] = {}
        self.trainable_blocks: Optional[int] = None
        self.rules: Any = None
        self.declared: List[str] = []
        self.resend: Optional[tuple] = None
        self.signature: Optional[list] = None
        self.names: Optional[List[str]] = None
        self._governed: Dict[int, Rate] = {}

    def lrs(self, optimizer, indices: Sequence[int], lrs: List[float]) -> List[float]:
        """Replace, in ``lrs`` (the stock rates), those that a rule governs."""
        if not self.rates:
            return lrs
        params, begin = optimizer.param_dict, optimizer.begin_num_update
        counts, scheduled = optimizer._index_update_count, optimizer.lr_scheduler is not None
        governed = self._governed
        for k, index in enumerate(indices):
            rate = governed.get(index)
            lr = None if rate is None else \
                rate_at(rate, counts.get(index, begin), begin, optimizer.lr, scheduled)
            if lr is not None:
                lrs[k] = lr
            elif index not in params and index in self.rates:
                # a kvstore server has no Parameter.lr_mult to read: the table's
                lrs[k] = lrs[k] * self.rates[index].lr_mult
        return lrs

    def check_schedules(self, optimizer, params: Sequence[Any]) -> None:
        """Evaluate, before a step changes anything, each rule's schedule at the step the
        coming update asks it for, so that one returning no rate fails with no weight
        updated (once per clock and step: asked again at that step, it gives the same)."""
        begin, counts = optimizer.begin_num_update, optimizer._index_update_count
        seen = set()
        for index, rate in self._governed.items():
            if rate.lr_scheduler is None or params[index].grad_req == "null":
                continue
            count = counts.get(index, begin) + 1
            key = (id(rate.lr_scheduler), count - begin + rate.start)
            if key not in seen:
                seen.add(key)
                rate_at(rate, count, begin, optimizer.lr, optimizer.lr_scheduler is not None)

    def wds(self, optimizer, indices: Sequence[int], wds: List[float]) -> List[float]:
        """Weight decays: stock (``Parameter.wd_mult``), or the table's on a server."""
        for k, index in enumerate(indices):
            rate = self.rates.get(index)
            if rate is not None and index not in optimizer.param_dict:
                wds[k] = wds[k] * rate.wd_mult
        return wds

    def set_rates(self, rates: Mapping[int, Rate]) -> None:
        """Install a rate table (and note which rates a rule governs: the hot path)."""
        self.rates = dict(rates)
        self._governed = {i: r for i, r in self.rates.items() if r.governed}

    def __deepcopy__(self, memo: dict) -> LayerwiseState:
        # not through __getstate__: a copy keeps schedules that cannot be pickled
        twin = LayerwiseState.__new__(LayerwiseState)
        twin.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return twin

    def restore_unsaved(self, current: Mapping[int, Rate]) -> None:
        """Put back, from ``current`` rates, the schedules a file could not hold."""
        for i, rate in self.rates.items():
            if isinstance(rate.lr_scheduler, Unsaved):
                mine = current.get(i)
                if mine is None or mine.lr_scheduler is None:
                    raise StatesError(f"these states need the schedule of rule {rate.rule!r} (it "
                                      "could not be saved); give this trainer that rule first")
                self.rates[i] = rate._replace(lr_scheduler=mine.lr_scheduler)
        self.set_rates(self.rates)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        lost = dict(self.unsaved())
        state["rates"] = {i: r._replace(lr_scheduler=Unsaved(r.rule, lost[r.rule]))
                          if r.lr_scheduler is not None and r.rule in lost else r
                          for i, r in self.rates.items()}
        state["rules"] = _picklable_rules(self.rules)
        del state["_governed"]  # derived from the rates
        return state

    def unsaved(self) -> List[tuple]:
        """``(rule, what its schedule is)`` for each rule whose schedule cannot be pickled
        (a lambda, a local function): a states file cannot hold it."""
        out, seen = {}, set()
        for rate in self.rates.values():
            clock = rate.lr_scheduler
            if clock is not None and rate.rule not in seen:
                seen.add(rate.rule)  # one schedule per rule: its copies pickle alike
                if not _picklable(clock):
                    out[rate.rule] = _fingerprint(getattr(clock, "declared", clock))
        return sorted(out.items(), key=lambda item: str(item[0]))

    def __setstate__(self, state: dict) -> None:
        self.__init__()
        rates = state.pop("rates", {})
        state.pop("_governed", None)
        self.__dict__.update(state)
        self.set_rates(rates)


def _picklable_rules(rules: Any) -> Any:
    """The rule set with schedules that cannot be pickled replaced by markers."""
    if rules is None or _picklable(rules):
        return rules
    pairs = rules.items() if isinstance(rules, Mapping) else rules
    out = []
    for key, value in pairs:
        if isinstance(value, Mapping) and not _picklable(value.get("lr_scheduler")):
            value = dict(value, lr_scheduler=Unsaved(str(key), _fingerprint(value["lr_scheduler"])))
        out.append((key, value))
    return out
