"""``explain()``: what every parameter gets, as text or a pandas DataFrame."""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional

from mxnet import gluon

from .rules import resolve
from .schedules import describe_schedule
from .structure import block_names, structural_paths

__all__ = ["explain", "Explanation", "COLUMNS"]

COLUMNS = ("parameter", "shape", "block", "rule", "lr_mult", "wd_mult", "lr", "schedule",
           "frozen")


class Explanation:
    """The rule table: one row (a dict with ``COLUMNS``) per parameter.

    ``str(table)`` prints it; ``table.to_pandas()`` gives a DataFrame;
    ``table["name"]`` is the row of one parameter.
    """

    def __init__(self, rows: List[Dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Dict]:
        return iter(self.rows)

    def __getitem__(self, name: str) -> Dict:
        for row in self.rows:
            if row["parameter"] == name:
                return row
        raise KeyError(f"no parameter {name!r} in this table")

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    to_dataframe = to_pandas

    def __str__(self) -> str:
        cells = [list(COLUMNS)] + [[_cell(row[c]) for c in COLUMNS] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

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


def block_labels(net, granularity: Optional[str] = None, blocks=None) -> Dict[str, str]:
    """Parameter name -> ``"i:path"`` of its block in the block list (empty without a net)."""
    if net is None:
        return {}
    out = {}
    for i, (path, names) in enumerate(block_names(net, granularity, blocks)):
        for name in names:
            out[name] = f"{i}:{path}"
    return out


def _row(param, block: Optional[str], rule, lr_mult, wd_mult, lr, schedule, frozen) -> Dict:
    return {"parameter": param.name, "shape": tuple(param.shape or ()), "block": block,
            "rule": rule, "lr_mult": lr_mult, "wd_mult": wd_mult, "lr": lr,
            "schedule": describe_schedule(schedule), "frozen": frozen}


def _from_trainer(trainer) -> Explanation:
    rates = trainer.rates
    lrs = trainer.current_lrs()
    where = block_labels(trainer.net, trainer._granularity, trainer._blocks)
    rows = []
    for i, param in enumerate(trainer._params):
        rate = rates.get(i)
        rows.append(_row(param, where.get(param.name), rate.rule if rate else None,
                         param.lr_mult, param.wd_mult, lrs[i],
                         rate.lr_scheduler if rate else None, param.grad_req == "null"))
    return Explanation(rows)


def _from_net(net, rules, learning_rate, strict: bool, granularity, blocks) -> Explanation:
    params = list(net.collect_params().values())
    table = resolve(rules or {}, [p.name for p in params], paths=structural_paths(net),
                    block_list=block_names(net, granularity, blocks), base_lr=learning_rate,
                    strict=strict)
    where = block_labels(net, granularity, blocks)
    rows = []
    for param, s in zip(params, table):
        mult = s.lr_mult if s.rule is not None else param.lr_mult
        wd = s.wd_mult if s.wd_mult is not None else param.wd_mult
        frozen = s.frozen if s.rule is not None else param.grad_req == "null"
        if s.learning_rate is not None and not s.frozen:
            lr = s.learning_rate
        else:
            lr = None if learning_rate is None or mult is None else learning_rate * mult
        rows.append(_row(param, where.get(param.name), s.rule, mult, wd, lr,
                         s.lr_scheduler, frozen))
    return Explanation(rows)


def explain(obj, rules=None, *, learning_rate: Optional[float] = None, strict: bool = True,
            granularity: Optional[str] = None, blocks=None) -> Explanation:
    """What each parameter gets: block, winning rule, multipliers, rate, schedule, frozen.

    Parameters
    ----------
    obj : LayerwiseTrainer or Block
        A trainer (its live table, with each parameter's current rate) or a
        network (then ``rules`` are resolved against it without training).
    rules : dict or list of (key, value), optional
        Rules to explain for a network (not allowed with a trainer).
    learning_rate : float, optional
        For a network: the base rate, so that the ``lr`` column can be filled.
    strict, granularity, blocks
        As for ``LayerwiseTrainer`` (for a network; a trainer shows its own):
        by default the net's own block list, the one a trainer on it numbers.

    Returns
    -------
    Explanation
        Prints as a text table; ``.to_pandas()`` gives a DataFrame.

    Examples
    --------
    >>> print(explain(net, {"*": 0.1, "output": 1.0}, learning_rate=0.01))  # doctest: +SKIP
    """
    from .trainer import LayerwiseTrainer
    if isinstance(obj, LayerwiseTrainer):
        if rules is not None or granularity is not None or blocks is not None:
            raise ValueError("explain(trainer) shows the trainer's own rules and block list; "
                             "to try others use trainer.set_layers or explain(net, rules, ...)")
        return _from_trainer(obj)
    if isinstance(obj, gluon.Block):
        return _from_net(obj, rules, learning_rate, strict, granularity, blocks)
    raise TypeError(f"explain expects a LayerwiseTrainer or a gluon Block, got "
                    f"{type(obj).__name__}: {obj!r}")
