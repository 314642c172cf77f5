"""Learning-rate curves per layer (recorded or previewed) and accuracy curves, as PNGs.

A curve is a label and a list of rates, one per step. Labels are blocks of
the block list (``"3:features.3"``); a block whose parameters follow
different rules gets one curve per rule. Frozen parameters are at rate 0.
"""
from __future__ import annotations

import copy
import os
from typing import Dict, List, Mapping, Optional, Sequence

from .checks import check_positive_int
from .report import block_labels

__all__ = ["RateRecorder", "lr_curves", "merged_curves", "plot_lr_curves", "plot_accuracy",
           "plot_schedules"]

Curves = Dict[str, List[float]]


def _param_blocks(trainer) -> List[str]:
    """The block label of each parameter index (its name where no block holds it)."""
    where = block_labels(trainer.net, trainer._granularity, trainer._blocks)
    return [where.get(p.name, p.name) for p in trainer._params]


def _labels(trainer, block: Optional[List[str]] = None) -> List[str]:
    """One curve label per parameter index of ``trainer`` (``block``: its _param_blocks)."""
    rates = trainer.rates
    block = block if block is not None else _param_blocks(trainer)
    rule = [rates[i].rule if i in rates else None for i in range(len(block))]
    mixed = {b for b in block if len({r for r, b2 in zip(rule, block) if b2 == b}) > 1}
    return [f"{b} [{r or 'no rule'}]" if b in mixed else b for b, r in zip(block, rule)]


def _rates_by_label(labels: Sequence[str], lrs: Sequence[float], params) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for label, lr, param in zip(labels, lrs, params):
        out.setdefault(label, 0.0 if param.grad_req == "null" else float(lr))
    return out


class RateRecorder:
    """Records each layer's learning rate after every step: pass it as ``on_step``.

    Examples
    --------
    >>> recorder = RateRecorder()
    >>> fit(net, trainer, loader, epochs=3, on_step=recorder)   # doctest: +SKIP
    >>> plot_lr_curves(recorder.curves, "lr.png")                 # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.curves: Curves = {}
        self.steps = 0
        self._blocks: Dict[int, List[str]] = {}  # per trainer: the block list walk, done once

    def __call__(self, trainer) -> None:
        blocks = self._blocks.get(id(trainer))
        if blocks is None:
            blocks = self._blocks[id(trainer)] = _param_blocks(trainer)
        labels = _labels(trainer, blocks)
        rates = _rates_by_label(labels, trainer.current_lrs(), trainer._params)
        for label, lr in rates.items():
            self.curves.setdefault(label, [0.0] * self.steps).append(lr)
        self.steps += 1
        for curve in self.curves.values():  # a label that vanished (set_layers) stays flat
            if len(curve) < self.steps:
                curve.append(curve[-1])


def _simulator(trainer):
    """A copy of the trainer's optimizer whose schedules can be run ahead freely."""
    opt = trainer._optimizer
    sim = copy.copy(opt)  # the pickle path: drops param_dict, shares the rest
    sim.param_dict = opt.param_dict
    sim.lr_scheduler = copy.deepcopy(opt.lr_scheduler)
    copies: Dict[int, object] = {}
    sim._layerwise_rates = {
        i: r._replace(lr_scheduler=copies.setdefault(id(r.lr_scheduler),
                                                     copy.deepcopy(r.lr_scheduler)))
        for i, r in opt._layerwise_rates.items()}
    return sim


def lr_curves(trainer, steps: int) -> Curves:
    """Each layer's learning rate at updates ``1..steps`` from the trainer's current rules.

    A preview: the trainer and its schedules are left as they are, and
    freezing stays as it is now (no gradual unfreezing).
    """
    check_positive_int("steps", steps)
    from .trainer import LayerwiseTrainer
    if not isinstance(trainer, LayerwiseTrainer):
        raise TypeError(f"lr_curves expects a LayerwiseTrainer, got {type(trainer).__name__}")
    sim, labels = _simulator(trainer), _labels(trainer)
    indices = list(range(len(trainer._params)))
    curves: Curves = {}
    for t in range(1, steps + 1):
        sim.num_update = t
        sim._index_update_count = dict.fromkeys(indices, t)
        for label, lr in _rates_by_label(labels, sim._get_lrs(indices), trainer._params).items():
            curves.setdefault(label, []).append(lr)
    return curves


def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def _save(plt, fig, ax, path: str) -> str:
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _block_order(label: str):
    head = label.split(":", 1)[0]
    return (0, int(head), label) if head.lstrip("-").isdigit() else (1, 0, label)


def merged_curves(curves: Mapping[str, Sequence[float]]) -> Curves:
    """Layers with the very same rates share one curve (``"2:a ... 8:b (7 layers)"``),
    in block order; a layer at rate 0 throughout is marked frozen."""
    groups: Dict[tuple, List[str]] = {}
    for label in sorted(curves, key=_block_order):
        groups.setdefault(tuple(curves[label]), []).append(label)
    out: Curves = {}
    for values, labels in groups.items():
        name = labels[0] if len(labels) == 1 else \
            f"{labels[0]} ... {labels[-1]} ({len(labels)} layers)"
        if not any(values):
            name += " (frozen)"
        out[name] = list(values)
    return out


def _check_curves(curves: Mapping[str, Sequence[float]], what: str) -> None:
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"{what} must be a non-empty mapping of label -> values, got "
                         f"{curves!r}")
    for label, values in curves.items():
        if len(values) == 0:
            raise ValueError(f"{what}: the curve {label!r} has no values")


def plot_lr_curves(curves: Mapping[str, Sequence[float]], path: str,
                   title: str = "learning rate per layer", log: Optional[bool] = None) -> str:
    """Write a PNG with one learning-rate curve per layer; returns ``path``.

    Layers with identical curves are drawn once (see ``merged_curves``).
    ``log`` (default: when the positive rates span more than 10x) draws the
    rate axis on a log scale; rates of 0 (frozen) then stay off the plot.
    """
    _check_curves(curves, "curves")
    curves = merged_curves(curves)
    plt, fig, ax = _figure(title, "step", "learning rate")
    palette = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    ax.set_prop_cycle(color=[palette(i % palette.N) for i in range(len(curves))])
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=label, linewidth=1.2)
    positive = [v for values in curves.values() for v in values if v > 0]
    if log is None:
        log = bool(positive) and max(positive) > 10 * min(positive)
    if log:
        ax.set_yscale("log")
    return _save(plt, fig, ax, path)


def plot_accuracy(curves: Mapping[str, Sequence[float]], path: str,
                  title: str = "validation accuracy") -> str:
    """Write a PNG with one accuracy-per-epoch curve per method; returns ``path``."""
    _check_curves(curves, "curves")
    plt, fig, ax = _figure(title, "epoch", "accuracy")
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    return _save(plt, fig, ax, path)


def plot_schedules(trainer, steps: int, path: str) -> str:
    """Preview the trainer's per-layer rates for ``steps`` updates as a PNG (see lr_curves)."""
    return plot_lr_curves(lr_curves(trainer, steps), path,
                          title=f"learning rate per layer, {steps} steps")
