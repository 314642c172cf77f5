"""``explain()``: what every parameter gets, as text or a pandas DataFrame.

A trainer's table and a preview (``explain(net, rules)``) are built from the
same ``RuleScope``: a parameter that can never train (a running statistic, a
constant) shows frozen in both, whatever rule matches it (its ``lr`` column
is what its rule gives, which the trainer writes into ``lr_mult``).
"""
from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

from mxnet import gluon

from .._compat import uses_global_stats
from ..checks import require
from ..errors import InvalidTypeError, InvalidValueError, UnknownNameError
from ..optim.rates import HAND_RULE, LIMIT_RULE
from ..optim.schedules import describe_schedule
from ..rules.scope import rule_scope
from ..structure.index import BlockIndex, param_shape
from ..structure.normalization import batchnorm_deciders

__all__ = ["explain", "Explanation", "COLUMNS", "replaced_notes"]

COLUMNS = ("parameter", "shape", "block", "rule", "lr_mult", "wd_rule", "wd_mult", "lr",
           "schedule", "frozen")


class Explanation:
    """The rule table: one row (a dict with ``COLUMNS``) per parameter.

    ``str(table)`` prints it; ``table.to_pandas()`` gives a DataFrame;
    ``table["name"]`` is the row of one parameter; iterating gives the rows.
    ``explain`` makes it.

    Parameters
    ----------
    rows : list of dict
        One per parameter, with the keys ``parameter``, ``shape``, ``block``,
        ``rule``, ``lr_mult``, ``wd_rule``, ``wd_mult``, ``lr``, ``schedule``,
        ``frozen``.

    Attributes
    ----------
    rows : list of dict
        The rows.
    notes : list of str
        Notes printed under the table (a rule that thaws what ``unfreeze=`` froze).

    Raises
    ------
    UnknownNameError
        ``table[name]`` for a name that is not in the table (also a ``KeyError``).

    Examples
    --------
    >>> from gluon_finetune import explain
    >>> table = explain(net, {"*": 0.1, "features.0": 0}, learning_rate=0.01)
    >>> row = table["net_conv1_weight"]
    >>> row["block"], row["rule"], row["lr_mult"], row["lr"], row["frozen"]
    ('2:features.3', '*', 0.1, 0.001, False)
    >>> [row["parameter"] for row in table if row["frozen"] and "running" not in row["parameter"]]
    ['net_conv0_weight', 'net_conv0_bias']
    >>> table["net_batchnorm0_running_mean"]["frozen"]  # never trains, as in the trainer's table
    True
    """

    def __init__(self, rows: List[Dict], notes: Sequence[str] = ()):
        self.rows = rows
        self.notes = _thaw_notes(rows) + list(notes) + _lora_notes(rows)

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
        """The table as a pandas DataFrame, one row per parameter (needs the ``plot`` extra).

        Returns
        -------
        pandas.DataFrame
            Columns as the text table's.

        Raises
        ------
        MissingDependencyError
            pandas is not installed.

        Examples
        --------
        >>> from gluon_finetune import explain
        >>> frame = explain(net, {"*": 0.1}, learning_rate=0.01).to_pandas()
        >>> frame.loc[0, ["parameter", "lr"]].tolist()
        ['net_conv0_weight', 0.001]
        """
        pd = require("pandas", needed_for="Explanation.to_pandas")
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


def replaced_notes(table: Sequence[Any], own: Sequence[Any],
                   by_hand: Sequence[Any] = ()) -> List[str]:
    """One note per rule that replaces a multiplier parameters had of their own.

    ``table``: resolved ``Setting`` rows; ``own``: each parameter's own values
    (``lr_mult``, ``wd_mult``, ``differentiable``), e.g. GluonCV's FCN head
    with ``lr_mult`` 10. A rule wins over the parameter's own value (as an
    explicit ``lr_mult`` wins in MXNet's optimizer); the note says so. Where
    a hand edit beats the rule instead (``by_hand``: per index, the fields
    ``"lr_mult"``/``"wd_mult"`` edited since the rules), nothing is replaced.
    """
    found: Dict[Tuple[str, str], List[str]] = {}
    for i, (s, mine) in enumerate(zip(table, own)):
        hand = by_hand[i] if by_hand else ()
        if not mine.differentiable:
            continue
        if s.rule is not None and not s.frozen and mine.lr_mult != 1.0 \
                and s.lr_mult != mine.lr_mult and "lr_mult" not in hand:
            found.setdefault((s.rule, "lr_mult"), []).append(f"{s.name}: {mine.lr_mult!r}")
        if s.wd_mult is not None and mine.wd_mult != 1.0 and s.wd_mult != mine.wd_mult \
                and "wd_mult" not in hand:
            found.setdefault((s.wd_rule, "wd_mult"), []).append(f"{s.name}: {mine.wd_mult!r}")
    notes = []
    for (rule, field), had in sorted(found.items()):
        shown = ", ".join(had[:3]) + (f", ... ({len(had)} in all)" if len(had) > 3 else "")
        their = "its" if len(had) == 1 else "their"
        notes.append(f"rule {rule!r} replaces the {field} that {len(had)} parameter"
                     f"{'s' if len(had) > 1 else ''} had of {their} own ({shown}), set by the "
                     f"model or by hand: the rule wins. To keep {their} own value, give "
                     f"{'it' if len(had) == 1 else 'them'} a rule of {their} own (a key that "
                     f"matches a subset wins) or narrow rule {rule!r}")
    return notes


def _lora_notes(rows: List[Dict]) -> List[str]:
    """A note on LoRA-adapted weights (``NAME`` beside ``NAME_lora_a``/``NAME_lora_b``)."""
    names = {row["parameter"] for row in rows}
    adapted = [n for n in names if f"{n}_lora_a" in names and f"{n}_lora_b" in names]
    if not adapted:
        return []
    return [f"{len(adapted)} weight{'s are' if len(adapted) > 1 else ' is'} adapted by LoRA: "
            f"frozen whatever the rules say, each trains through its NAME_lora_a and "
            f"NAME_lora_b at its block's rate (merge_lora folds them in)"]


_BATCH_STATISTICS = (
    "as at inference: freezing BatchNorm is more than grad_req='null'. grad_req='null' alone "
    "(plain Gluon's collect_params().setattr('grad_req', 'null'), as in d2l.ai's fine-tuning "
    "exercise) keeps normalising each batch by its own statistics; for that, use bn='stats'")


def _frozen_batchnorms(net, frozen: Set[str]) -> List:
    """BatchNorm layers of ``net`` that count as frozen when ``frozen`` is (the trainer's
    test: ``structure.normalization.batchnorm_deciders``)."""
    return [layer for layer, names in batchnorm_deciders(net) if names and names <= frozen]


def _batchnorm_notes(net, rows: List[Dict], preview: bool) -> List[str]:
    """A note where BatchNorm layers frozen by a layer rule run (trainer) or would run
    (preview, under the default bn='frozen') on their running statistics. Layers frozen
    otherwise (``get_model(unfreeze=)``, ``freeze``, the trainable-blocks limit) follow
    the ``bn`` given there."""
    if net is None:
        return []
    limit = LIMIT_RULE.format("")
    by_rules = {row["parameter"] for row in rows if row["frozen"]
                and row["rule"] not in (None, HAND_RULE) and not str(row["rule"]).startswith(limit)}
    frozen = _frozen_batchnorms(net, by_rules)
    if not preview:
        frozen = [layer for layer in frozen if uses_global_stats(layer)]
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
    table = trainer.settings
    by_hand = [{f for f, label in (("lr_mult", r.rule), ("wd_mult", r.wd_rule))
                if label == HAND_RULE} for _, r in sorted(rates.items())]
    notes = replaced_notes(table, trainer.own_settings, by_hand) if table else []
    return Explanation(rows, notes + _batchnorm_notes(trainer.net, rows, preview=False))


def _from_net(net, rules, learning_rate, strict: bool, granularity, blocks) -> Explanation:
    params = list(net.collect_params().values())
    scope = rule_scope(params, BlockIndex(net), granularity=granularity, blocks=blocks)
    table = scope.resolve(rules or {}, base_lr=learning_rate, strict=strict)
    where = block_labels(scope.block_list)
    rows = []
    for param, s in zip(params, table):
        fixed = param.name in scope.fixed
        mult = s.lr_mult if s.rule is not None else param.lr_mult
        wd = s.wd_mult if s.wd_mult is not None else param.wd_mult
        frozen = fixed or (s.frozen if s.rule is not None else param.name in scope.frozen)
        if s.learning_rate is not None and not s.frozen:
            lr = s.learning_rate
        else:
            lr = None if learning_rate is None or mult is None else learning_rate * mult
        rows.append(_row(param, where.get(param.name), s.rule, mult, s.wd_rule, wd, lr,
                         s.lr_scheduler, frozen, param.name in scope.frozen and not frozen))
    own = [_Own(p.lr_mult, p.wd_mult, p.name not in scope.fixed) for p in params]
    return Explanation(rows, replaced_notes(table, own) +
                       _batchnorm_notes(net, rows, preview=True))


class _Own(NamedTuple):
    lr_mult: float
    wd_mult: float
    differentiable: bool


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
    strict : bool
        For a network: a rule that matches nothing raises (False: warns).
    granularity : {'unit', 'stage'}, optional
        For a network: what a block is; by default the net's own, the one a
        trainer on it numbers. A trainer shows its own.
    blocks : list, optional
        For a network: an explicit block list.

    Returns
    -------
    Explanation
        Prints as a text table, then its ``notes``: rules that thaw what was
        frozen before, and BatchNorm layers that a rule freezes, which the
        default ``bn='frozen'`` also runs on running statistics (more than
        ``grad_req='null'``; ``bn='stats'`` is that alone). ``.to_pandas()``
        gives a DataFrame.

    Raises
    ------
    InvalidTypeError
        ``obj`` is neither a trainer nor a Block.
    InvalidValueError
        ``rules``, ``granularity`` or ``blocks`` given with a trainer (it shows
        its own).
    RuleError
        Rules that do not resolve (a conflict, a rule that matches nothing).

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, explain
    >>> print(explain(net, {"*": 0.1, "output": 1.0}, learning_rate=0.01))  # doctest: +ELLIPSIS
    parameter                    shape     block         rule    lr_mult  wd_rule  wd_mult  ...
    ---------------------------  --------  ------------  ------  -------  -------  -------  ...
    net_conv0_weight             8x3x3x3   0:features.0  *       0.1      -        1        0.001
    ...
    net_dense0_weight            2x16      4:output      output  1        -        1        0.01
    net_dense0_bias              2         4:output      output  1        -        1        0.01
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={0: 0})
    >>> explain(trainer)["net_conv0_weight"]["frozen"]
    True
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
