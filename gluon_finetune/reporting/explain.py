"""``explain()``: what every parameter gets, as text or a pandas DataFrame."""
from __future__ import annotations

from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Set, Tuple

from mxnet import gluon

from ..errors import InvalidTypeError, InvalidValueError, UnknownNameError
from ..optim.rates import LIMIT_RULE
from ..optim.schedules import describe_schedule
from ..rules.resolution import resolve
from ..structure.index import block_names, can_train, param_shape, structural_paths
from ..structure.normalization import batchnorm_layers

__all__ = ["explain", "Explanation", "COLUMNS"]

COLUMNS = ("parameter", "shape", "block", "rule", "lr_mult", "wd_rule", "wd_mult", "lr",
           "schedule", "frozen")


class Explanation:
    """The rule table: one row (a dict with ``COLUMNS``) per parameter.

    ``str(table)`` prints it; ``table.to_pandas()`` gives a DataFrame;
    ``table["name"]`` is the row of one parameter.
    """

    def __init__(self, rows: List[Dict], notes: Sequence[str] = ()):
        self.rows = rows
        self.notes = _thaw_notes(rows) + list(notes)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Dict]:
        return iter(self.rows)

    def __getitem__(self, name: str) -> Dict:
        for row in self.rows:
            if row["parameter"] == name:
                return row
        raise UnknownNameError(f"no parameter {name!r} in this table")

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    to_dataframe = to_pandas

    def __str__(self) -> str:
        cells = [list(COLUMNS)] + [[_cell(row[c]) for c in COLUMNS] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + [f"note: {note}" for note in self.notes])

    __repr__ = __str__


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "x".join(str(d) for d in value)
    return str(value)


def block_labels(block_list: Optional[Sequence[Tuple[str, FrozenSet[str]]]]) -> Dict[str, str]:
    """Parameter name -> ``"i:path"`` of its block in ``block_list`` (empty for None)."""
    out = {}
    for i, (path, names) in enumerate(block_list or ()):
        for name in names:
            out[name] = f"{i}:{path}"
    return out


def _thaw_notes(rows: List[Dict]) -> List[str]:
    """One note per rule that thaws parameters frozen before it applied."""
    counts: Dict[str, int] = {}
    for row in rows:
        if row.get("thawed"):
            counts[row["rule"]] = counts.get(row["rule"], 0) + 1
    return [f"rule {rule!r} thaws {n} parameter{'s' if n > 1 else ''} that were frozen before "
            f"(by get_model(unfreeze=...) or by hand); to leave them frozen, key the rule "
            f"{'trainable:' + rule!r} (only what is trainable), or limit training with "
            f"trainer.set_trainable_blocks(n)" for rule, n in sorted(counts.items())]


_BATCH_STATISTICS = (
    "as at inference: freezing BatchNorm is more than grad_req='null'. grad_req='null' alone "
    "(plain Gluon's collect_params().setattr('grad_req', 'null'), as in d2l.ai's fine-tuning "
    "exercise) keeps normalising each batch by its own statistics; for that, use bn='stats'")


def _frozen_batchnorms(net, frozen: Set[str]) -> List:
    """BatchNorm layers of ``net`` all of whose trainable parameters are in ``frozen``."""
    out = []
    for layer in batchnorm_layers(net):
        names = {p.name for p in layer.collect_params().values() if can_train(p, net)}
        if names and names <= frozen:
            out.append(layer)
    return out


def _batchnorm_notes(net, rows: List[Dict], preview: bool) -> List[str]:
    """A note where BatchNorm layers frozen by a layer rule run (trainer) or would run
    (preview, under the default bn='frozen') on their running statistics. Layers frozen
    otherwise (``get_model(unfreeze=)``, ``freeze``, the trainable-blocks limit) follow
    the ``bn`` given there."""
    if net is None:
        return []
    limit = LIMIT_RULE.format("")
    by_rules = {row["parameter"] for row in rows if row["frozen"] and row["rule"] is not None
                and not str(row["rule"]).startswith(limit)}
    frozen = _frozen_batchnorms(net, by_rules)
    if not preview:
        frozen = [layer for layer in frozen if layer._kwargs["use_global_stats"]]
    if not frozen:
        return []
    n, s = len(frozen), "s" if len(frozen) > 1 else ""
    if preview:
        what = (f"{n} BatchNorm layer{s} frozen by these rules would run on running "
                f"statistics under the default bn='frozen' (use_global_stats=True)")
    else:
        what = (f"{n} BatchNorm layer{s} frozen by the rules run{'' if s else 's'} on running "
                f"statistics (use_global_stats=True, bn='frozen', the default)")
    return [f"{what}, {_BATCH_STATISTICS}"]


def _row(param, block: Optional[str], rule, lr_mult, wd_rule, wd_mult, lr, schedule,
         frozen, thawed: bool = False) -> Dict:
    return {"parameter": param.name, "shape": param_shape(param), "block": block,
            "rule": rule, "lr_mult": lr_mult, "wd_rule": wd_rule, "wd_mult": wd_mult, "lr": lr,
            "schedule": describe_schedule(schedule), "frozen": frozen, "thawed": thawed}


def _from_trainer(trainer) -> Explanation:
    rates = trainer.rates
    lrs = trainer.current_lrs()
    where = block_labels(trainer.block_list)
    rows = []
    for i, param in enumerate(trainer.params):
        rate = rates.get(i)
        schedule = rate.lr_scheduler.declared if rate and rate.lr_scheduler is not None \
            else None
        rows.append(_row(param, where.get(param.name), rate.rule if rate else None,
                         param.lr_mult, rate.wd_rule if rate else None, param.wd_mult, lrs[i],
                         schedule, param.grad_req == "null", bool(rate and rate.thawed)))
    return Explanation(rows, _batchnorm_notes(trainer.net, rows, preview=False))


def _from_net(net, rules, learning_rate, strict: bool, granularity, blocks) -> Explanation:
    params = list(net.collect_params().values())
    was_frozen = {p.name for p in params if can_train(p, net) and p.grad_req == "null"}
    listed = block_names(net, granularity, blocks)
    table = resolve(rules or {}, [p.name for p in params], paths=structural_paths(net),
                    block_list=listed, base_lr=learning_rate, strict=strict,
                    trainable=[p.name for p in params if p.name not in was_frozen])
    where = block_labels(listed)
    rows = []
    for param, s in zip(params, table):
        mult = s.lr_mult if s.rule is not None else param.lr_mult
        wd = s.wd_mult if s.wd_mult is not None else param.wd_mult
        frozen = s.frozen if s.rule is not None else param.grad_req == "null"
        if s.learning_rate is not None and not s.frozen:
            lr = s.learning_rate
        else:
            lr = None if learning_rate is None or mult is None else learning_rate * mult
        rows.append(_row(param, where.get(param.name), s.rule, mult, s.wd_rule, wd, lr,
                         s.lr_scheduler, frozen, param.name in was_frozen and not frozen))
    return Explanation(rows, _batchnorm_notes(net, rows, preview=True))


def explain(obj, rules=None, *, learning_rate: Optional[float] = None, strict: bool = True,
            granularity: Optional[str] = None, blocks=None) -> Explanation:
    """What each parameter gets: block, winning rule, multipliers, rate, schedule, frozen.

    Parameters
    ----------
    obj : LayerwiseTrainer or Block
        A trainer (its live table, with each parameter's current rate) or a
        network (then ``rules`` are resolved against it without training).
    rules : dict or list of (key, value), optional
        Rules to explain for a network (not allowed with a trainer). The
        ``rule`` column names the rule that gave each parameter its rate,
        ``wd_rule`` the one that gave its weight decay.
    learning_rate : float, optional
        For a network: the base rate, so that the ``lr`` column can be filled.
    strict, granularity, blocks
        As for ``LayerwiseTrainer`` (for a network; a trainer shows its own):
        by default the net's own block list, the one a trainer on it numbers.

    Returns
    -------
    Explanation
        Prints as a text table, then its ``notes``: rules that thaw what was
        frozen before, and BatchNorm layers that a rule freezes, which the
        default ``bn='frozen'`` also runs on running statistics (more than
        ``grad_req='null'``; ``bn='stats'`` is that alone). ``.to_pandas()``
        gives a DataFrame.

    Examples
    --------
    >>> print(explain(net, {"*": 0.1, "output": 1.0}, learning_rate=0.01))  # doctest: +SKIP
    """
    if isinstance(obj, gluon.Trainer) and hasattr(obj, "rates"):  # a LayerwiseTrainer
        if rules is not None or granularity is not None or blocks is not None:
            raise InvalidValueError("explain(trainer) shows the trainer's own rules and block "
                                    "list; to try others use trainer.set_layers or explain(net, "
                                    "rules, ...)")
        return _from_trainer(obj)
    if isinstance(obj, gluon.Block):
        return _from_net(obj, rules, learning_rate, strict, granularity, blocks)
    raise InvalidTypeError("explain expects a LayerwiseTrainer or a gluon Block, got "
                           f"{type(obj).__name__}: {obj!r}")
