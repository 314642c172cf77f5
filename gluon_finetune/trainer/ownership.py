"""Who owns a Parameter's ``lr_mult``, ``wd_mult`` and ``grad_req``: the user, the rules,
or the trainer.

Gluon has one attribute for each, and plain Gluon code reads them, so the
trainer writes what it computes into them. Three owners share them:

- **The user's own values**: what a parameter had before the trainer (set by
  the model, by ``get_model(unfreeze=)`` or by hand) and what the user sets
  by hand afterwards. A hand edit is found where an attribute no longer holds
  what the trainer wrote; from then on it is the parameter's own value.
- **The rules** own the fields they set (the rate with its freeze, or the
  weight decay) for the parameters they match, and **the limit**
  (``set_trainable_blocks``) owns the freeze of what lies outside it.
- **The trainer** owns what it wrote; a new trainer on the same parameters
  asks the old one (``Parameter._trainer``, which MXNet sets) for their own
  values, so it never takes the old trainer's output for the user's.

A hand edit beats a multiplier rule (a number or ``lr_mult``, and
``wd_mult``) until the rules are replaced (``set_layers``), and a hand
freeze beats any rule; an edit that a declaration owns (the ``lr_mult`` of a
rule with its own rate or schedule, the thaw of a parameter a rule or the
limit freezes) is an error at the next step or refresh, unless that refresh
declares the owner again (``set_layers`` for rules, ``set_trainable_blocks``
for the limit): then the new declaration wins. ``docs/guide/ownership.md``
shows it from the user's side.
"""
from __future__ import annotations

from typing import Callable, Collection, Dict, List, Optional, Sequence, Set, Tuple

from mxnet import gluon

from .._compat import param_trainer
from ..errors import InvalidValueError
from ..optim.rates import HAND_RULE, LIMIT_RULE, Own, Rate
from .freezing import trainable_req

__all__ = ["Ownership", "FIELDS"]

FIELDS = ("lr_mult", "wd_mult", "grad_req")
Values = Tuple[float, float, str]
_LIMIT = LIMIT_RULE.split("=")[0]


def _values(param: gluon.Parameter) -> Values:
    return (param.lr_mult, param.wd_mult, param.grad_req)


def _previous_own(param: gluon.Parameter) -> Optional[Values]:
    """The own values a previous trainer of ``param`` knows (None: it wrote nothing)."""
    ownership = getattr(param_trainer(param), "ownership", None)
    return ownership.own_values(param) if isinstance(ownership, Ownership) else None


class Ownership:
    """The own values of a trainer's parameters, what the trainer wrote, and hand edits.

    Parameters
    ----------
    params : sequence of Parameter
        The trainer's parameters, in its index order.
    can_train : callable
        Parameter -> whether it can ever train (``BlockIndex.can_train``).
    """

    def __init__(self, params: Sequence[gluon.Parameter], can_train: Callable):
        self.params = list(params)
        self._where = {id(p): i for i, p in enumerate(self.params)}
        # what is on the parameters now: their own values, or a previous trainer's output
        self.written: List[Values] = [_values(p) for p in self.params]
        own = [_previous_own(p) or w for p, w in zip(self.params, self.written)]
        self.taken_over = own != self.written  # a previous trainer's output is on them
        self.own = [Own(*v, can_train(p)) for p, v in zip(self.params, own)]
        self.edited: List[Set[str]] = [set() for _ in self.params]
        self._watched: Dict[int, Rate] = {}

    # ------------------------------------------------------------ reading

    def _changed(self, i: int) -> Dict[str, object]:
        return {f: v for f, v, w in zip(FIELDS, _values(self.params[i]), self.written[i])
                if v != w}

    def edits(self) -> Dict[int, Dict[str, object]]:
        """Fields changed by hand since the trainer wrote them: index -> {field: value}."""
        out = {}
        for i in range(len(self.params)):
            changed = self._changed(i)
            if changed:
                out[i] = changed
        return out

    def own_now(self) -> List[Own]:
        """The own values, hand edits not yet taken in included (reads only)."""
        return [o._replace(**self._changed(i)) for i, o in enumerate(self.own)]

    def own_values(self, param: gluon.Parameter) -> Optional[Values]:
        """``param``'s own values as this trainer knows them (None: not one of its own)."""
        i = self._where.get(id(param))
        if i is None:
            return None
        return tuple(self.own[i]._replace(**self._changed(i)))[:3]

    # ------------------------------------------------------------ hand edits

    def check(self, redeclared: Collection[str] = ()) -> None:
        """Raise for a hand edit that a declaration owns (see the module docstring), unless
        ``redeclared`` (``"rules"``, ``"limit"``) declares that owner again now."""
        for i, rate in self._watched.items():
            param = self.params[i]
            if rate.frozen:
                owner = "limit" if (rate.rule or "").startswith(_LIMIT) else "rules"
                if param.grad_req != "null" and owner not in redeclared:
                    raise InvalidValueError(_thaw_message(param, rate, owner),
                                            argument="grad_req")
            elif param.lr_mult != rate.lr_mult and "rules" not in redeclared:
                raise InvalidValueError(
                    f"{param.name}: lr_mult was changed by hand to {param.lr_mult!r}, but its "
                    f"rule {rate.rule!r} gives it its own rate or schedule (lr_mult "
                    f"{rate.lr_mult!r}), which an edit cannot change; change the rule with "
                    f"set_layers instead", argument="lr_mult")

    def take_edits(self, rules_replaced: bool) -> None:
        """Make hand edits the parameters' own values. They beat the rules' multipliers
        until the rules are replaced (``rules_replaced``: now)."""
        for i, changed in self.edits().items():
            self.own[i] = self.own[i]._replace(**changed)
            self.edited[i] |= set(changed)
        if rules_replaced:
            self.edited = [set() for _ in self.params]

    # ------------------------------------------------------------ writing

    def write(self, rates: Dict[int, Rate]) -> List[int]:
        """Write a rate table into the parameters; returns the indices whose freeze changed.

        Frozen means ``grad_req='null'``; trainable, the parameter's own
        ``grad_req`` (``'write'`` if its own is ``'null'``; never-trainable ones
        such as running statistics stay ``'null'``)."""
        changed = []
        for i, param in enumerate(self.params):
            rate = rates.get(i)
            if rate is None:
                continue
            wanted = "null" if rate.frozen else trainable_req(self.own[i].grad_req,
                                                               self.own[i].differentiable)
            if param.grad_req != wanted:
                param.grad_req = wanted
                changed.append(i)
            param.lr_mult, param.wd_mult = rate.lr_mult, rate.wd_mult
            self.written[i] = _values(param)
        self._watched = {i: r for i, r in rates.items() if r.governed or (
            r.frozen and r.rule not in (None, HAND_RULE) and self.own[i].differentiable)}
        return changed

    def restore(self) -> List[int]:
        """Give every parameter its own values back (a new trainer without rules taking over
        from one that wrote to them); returns the indices whose freeze changed."""
        changed = self.write({i: Rate(None, o.lr_mult, o.wd_mult, frozen=o.frozen)
                              for i, o in enumerate(self.own)})
        self._watched = {}
        return changed


def _thaw_message(param, rate: Rate, owner: str) -> str:
    if owner == "limit":
        return (f"{param.name}: grad_req was changed by hand to {param.grad_req!r}, but the "
                f"trainable-blocks limit ({rate.rule}) freezes it, which an edit cannot "
                f"change; change the limit with set_trainable_blocks instead")
    return (f"{param.name}: grad_req was changed by hand to {param.grad_req!r}, but its rule "
            f"{rate.rule!r} freezes it, which an edit cannot change; change the rule with "
            f"set_layers instead")
