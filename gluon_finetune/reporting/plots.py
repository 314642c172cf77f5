"""Learning-rate curves per layer (recorded or previewed) and accuracy curves, as PNGs.

A curve is a label and a list of rates, one per step. Labels are blocks of
the block list (``"3:features.3"``); a block whose parameters follow
different rules gets one curve per rule. Frozen parameters are at rate 0.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Mapping, Optional, Sequence

from ..checks import check_positive_int, require
from ..errors import InvalidTypeError, InvalidValueError
from .explain import block_labels

__all__ = ["RateRecorder", "lr_curves", "merged_curves", "plot_lr_curves", "plot_accuracy",
           "plot_schedules", "plot_lr_find", "image_path"]

Curves = Dict[str, List[float]]


def _param_blocks(trainer) -> List[str]:
    """The block label of each parameter index (its name where no block holds it)."""
    where = block_labels(trainer.block_list)
    return [where.get(p.name, p.name) for p in trainer.params]


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

    What training really used, gradual unfreezing and ``set_layers`` included
    (``lr_curves`` previews instead). Call it with the trainer after each step;
    ``fit(..., on_step=recorder)`` does.

    Attributes
    ----------
    curves : dict of str to list of float
        One curve per block label (``"i:path"``): its rate after each step, 0
        while frozen.
    steps : int
        How many steps it has recorded.

    Examples
    --------
    >>> from gluon_finetune import (GradualUnfreezing, LayerwiseTrainer, RateRecorder, fit,
    ...                             plot_lr_curves)
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    >>> unfreezer = GradualUnfreezing(trainer, every=1)
    >>> recorder = RateRecorder()
    >>> history = fit(net, trainer, train_loader, epochs=2, on_epoch=unfreezer.on_epoch,
    ...               on_step=recorder, progress=False)
    >>> recorder.steps, recorder.curves["4:output"], recorder.curves["3:features.4"]
    (4, [0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.1, 0.1])
    >>> plot_lr_curves(recorder.curves, "lr.png")
    'lr.png'
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
        rates = _rates_by_label(labels, trainer.current_lrs(), trainer.params)
        for label, lr in rates.items():
            self.curves.setdefault(label, [0.0] * self.steps).append(lr)
        self.steps += 1
        for curve in self.curves.values():  # a label that vanished (set_layers) stays flat
            if len(curve) < self.steps:
                curve.append(curve[-1])


def lr_curves(trainer, steps: int) -> Curves:
    """Each layer's learning rate at each of the trainer's next ``steps`` updates.

    A preview of what training will use from here on, at any point of
    training (``trainer.preview_lrs``): the trainer and its schedules are left
    as they are, and freezing stays as it is now (no gradual unfreezing).

    Parameters
    ----------
    trainer : LayerwiseTrainer
        The trainer to preview.
    steps : int
        How many updates (>= 1).

    Returns
    -------
    dict of str to list of float
        One curve per block label (``"i:path"``), 0 where frozen.

    Raises
    ------
    InvalidTypeError
        ``trainer`` is not a ``LayerwiseTrainer``.
    InvalidValueError
        ``steps`` is not a positive integer.

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, lr_curves
    >>> halving = mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
    ...                            layers={"features": 0, -1: {"lr_scheduler": halving}})
    >>> curves = lr_curves(trainer, 5)
    >>> curves["4:output"], curves["0:features.0"]
    ([0.1, 0.1, 0.05, 0.05, 0.025], [0.0, 0.0, 0.0, 0.0, 0.0])
    """
    check_positive_int("steps", steps)
    # Reporting sits below the trainer (import contracts): it asks for what it reads.
    if not all(hasattr(trainer, name) for name in ("preview_lrs", "block_list", "rates")):
        raise InvalidTypeError("lr_curves expects a LayerwiseTrainer, got "
                               f"{type(trainer).__name__}")
    labels, params = _labels(trainer), trainer.params
    curves: Curves = {}
    for lrs in trainer.preview_lrs(steps):
        for label, lr in _rates_by_label(labels, lrs, params).items():
            curves.setdefault(label, []).append(lr)
    return curves


def _figure(title: str, xlabel: str, ylabel: str, size=(10, 4.5), dpi: int = 100):
    matplotlib = require("matplotlib", needed_for="drawing a plot")
    matplotlib.use("Agg")  # files only: works without a display
    plt = require("matplotlib.pyplot", needed_for="drawing a plot")
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def image_path(path: str, name: str = "path") -> str:
    """The file a plot given ``path`` is written to: ``path`` itself, or ``path`` with
    ``.png`` added where it has no extension (matplotlib would add one and write
    another name than the one given). A format matplotlib cannot write is refused
    here, before any work: the plots and the command line's ``--out`` check it so.

    Raises
    ------
    InvalidValueError
        For an extension matplotlib has no writer for, naming ``name``.

    Examples
    --------
    >>> image_path("plots/lr"), image_path("lr.svg")
    ('plots/lr.png', 'lr.svg')
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"{name} must be a file name, got {type(path).__name__}: "
                               f"{path!r}", argument=name)
    path = os.fspath(path)
    kind = os.path.splitext(path)[1][1:].lower()
    if not kind:
        return path + ("png" if path.endswith(".") else ".png")
    backends = require("matplotlib.backend_bases", needed_for="drawing a plot")
    if kind not in backends.FigureCanvasBase.get_supported_filetypes():
        raise InvalidValueError(f"{name} {path!r}: matplotlib cannot write .{kind} files; use "
                                f".png (or .pdf, .svg)", argument=name)
    return path


def _save(plt, fig, ax, path: str) -> str:
    path = image_path(path)
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
        raise InvalidValueError(f"{what} must be a non-empty mapping of label -> values, got "
                                f"{curves!r}")
    for label, values in curves.items():
        if len(values) == 0:
            raise InvalidValueError(f"{what}: the curve {label!r} has no values")


def plot_lr_curves(curves: Mapping[str, Sequence[float]], path: str,
                   title: str = "learning rate per layer", log: Optional[bool] = None) -> str:
    """Write an image with one learning-rate curve per layer; returns the file written.

    Layers with identical curves are drawn once, labelled by their first and last
    layer and a count; a layer at rate 0 throughout is marked frozen.

    Parameters
    ----------
    curves : mapping of str to sequence of float
        One curve per label, as ``lr_curves`` and ``RateRecorder.curves`` give them.
    path : str
        The file; ``.png`` is added to a name without an extension.
    title : str
        The plot's title.
    log : bool, optional
        A log rate axis (rates of 0 then stay off the plot); default: when the
        positive rates span more than 10x.

    Returns
    -------
    str
        The file written.

    Raises
    ------
    InvalidValueError
        No curves, an empty curve, or a format matplotlib cannot write.
    MissingDependencyError
        matplotlib is not installed (the ``plot`` extra).

    Examples
    --------
    >>> from gluon_finetune import plot_lr_curves
    >>> plot_lr_curves({"0:features": [0.0, 0.01, 0.01], "1:output": [0.1, 0.1, 0.05]}, "lr")
    'lr.png'
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
    """Write a PNG with one accuracy-per-epoch curve per method; returns the file
    written (``image_path(path)``)."""
    _check_curves(curves, "curves")
    plt, fig, ax = _figure(title, "epoch", "accuracy")
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    return _save(plt, fig, ax, path)


def plot_schedules(trainer, steps: int, path: str) -> str:
    """Draw the trainer's per-layer rates for its next ``steps`` updates as an image.

    ``plot_lr_curves(lr_curves(trainer, steps), path)``: the trainer and its
    schedules are left as they are.

    Parameters
    ----------
    trainer : LayerwiseTrainer
        The trainer to preview.
    steps : int
        How many updates (>= 1).
    path : str
        The file; ``.png`` is added to a name without an extension.

    Returns
    -------
    str
        The file written.

    Raises
    ------
    InvalidTypeError
        ``trainer`` is not a ``LayerwiseTrainer``.
    InvalidValueError
        ``steps`` is not a positive integer, or a format matplotlib cannot write.
    MissingDependencyError
        matplotlib is not installed (the ``plot`` extra).

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, SlantedTriangular, layer_decay
    >>> rules = {i: {**rule, "lr_scheduler": SlantedTriangular(200)}
    ...          for i, rule in layer_decay(net, 0.01).items()}
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01}, layers=rules)
    >>> plot_schedules(trainer, 200, "schedules.png")
    'schedules.png'
    """
    return plot_lr_curves(lr_curves(trainer, steps), path,
                          title=f"learning rate per layer, {steps} steps")


def plot_lr_find(result, path: str, title: str = "learning-rate range test") -> str:
    """Write an ``lr_find`` result as a PNG: loss against the base rate (log axis), each
    batch's loss faintly, the suggestion marked; returns the file written
    (``image_path(path)``)."""
    if not result.lrs:
        raise InvalidValueError("plot_lr_find: the result has no points")
    plt, fig, ax = _figure(title, "base learning rate", "loss", size=(9, 4), dpi=80)
    ax.plot(result.lrs, result.raw_losses, color="tab:blue", alpha=0.25, linewidth=0.8,
            label="loss per batch")
    ax.plot(result.lrs, result.losses, color="tab:blue", linewidth=1.8, label="smoothed loss")
    ax.set_xscale("log")
    finite = [v for v in result.losses if math.isfinite(v)]
    if finite:  # from the first loss down to the lowest: the divergent tail would squash it
        lowest, first = min(finite), finite[0]
        pad = 0.25 * (first - lowest) or 0.1 * abs(first) or 1.0
        ax.set_ylim(lowest - pad, max(first, lowest) + pad)
    if finite:
        k = result.losses.index(lowest)
        ax.plot([result.lrs[k]], [lowest], "x", color="0.3",
                label=f"lowest loss at {result.lrs[k]:.2g} (divergence near)")
    if result.suggestion is not None:
        k = result.lrs.index(result.suggestion)
        ax.axvline(result.suggestion, color="tab:red", linestyle="--", linewidth=1)
        ax.plot([result.suggestion], [result.losses[k]], "o", color="tab:red",
                label=f"suggestion {result.suggestion:.2g} (steepest descent)")
    return _save(plt, fig, ax, path)
