"""Shared timing for the benchmarks: interleaved rounds, warm-up, medians, ratio tables.

Every case runs once per round, in an order that rotates from round to round,
so that load from other processes and drifting clocks hit all cases alike.
Both wall-clock and process CPU time are kept: on a machine whose cores are
shared, wall time also counts the time other processes held the core, while
CPU time counts only this process's work (MXNet's engine threads included).
"""
import statistics
import time
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import mxnet as mx


class Median(NamedTuple):
    wall: float  # seconds
    cpu: float


def samples(cases: Dict[str, Callable[[], None]], repeats: int, warmup: int = 1,
            before: Optional[Callable[[str], None]] = None) -> Dict[str, list]:
    """Every (wall, CPU) seconds of each case, in interleaved rounds after a warm-up;
    ``before(name)`` runs untimed ahead of each call."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            _once(name, cases[name], before)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(_once(name, cases[name], before))
    return times


def interleaved(cases: Dict[str, Callable[[], None]], repeats: int, warmup: int = 1,
                before: Optional[Callable[[str], None]] = None) -> Dict[str, Median]:
    """Median seconds of each case; ``before(name)`` runs untimed ahead of each call."""
    return {name: Median(statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
            for name, t in samples(cases, repeats, warmup, before).items()}


def _once(name, case, before) -> Tuple[float, float]:
    if before is not None:
        before(name)
    mx.nd.waitall()
    wall, cpu = time.perf_counter(), time.process_time()
    case()
    mx.nd.waitall()
    return time.perf_counter() - wall, time.process_time() - cpu


def table(rows, headers) -> str:
    """Rows of equal length as a fixed-width text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if num else c.ljust(w)
                               for c, w, num in zip(row, widths, numeric)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(cell) -> str:
    return f"{cell:.2f}" if isinstance(cell, float) else str(cell)


STEP_HEADERS = ["optimizer", "variant", "update path", "wall ms", "ratio", "CPU ms", "ratio"]


def step_rows(optimizer: str, rows, medians: Dict[str, Median], base: str = "gluon.Trainer"):
    """Table rows (optimizer, variant, path, wall ms, ratio, CPU ms, ratio) for the cases
    ``rows`` ((variant, update path) in the order of ``medians``), against ``base``."""
    ref = medians[base]
    return [(optimizer, name, path, m.wall * 1e3, m.wall / ref.wall, m.cpu * 1e3,
             m.cpu / ref.cpu) for (name, path), m in zip(rows, medians.values())]
