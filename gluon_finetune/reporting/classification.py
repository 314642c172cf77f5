"""A classifier's report: accuracy, top-5, per-class precision/recall/F1, confusion matrix.

The numbers come from scikit-learn's ``sklearn.metrics`` (the ``eval`` extra);
the picture from matplotlib. Rows of the confusion matrix are the true
classes, columns the predicted ones, both in the run's class order.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

import numpy as np

from ..checks import InvalidTypeError, InvalidValueError, require

__all__ = ["classification_report", "format_report", "plot_confusion_matrix"]

TOP_K = 5  # top-5 accuracy is reported where there are more classes than this


def _metrics():
    return require("sklearn.metrics", extra="eval", needed_for="the evaluation report")


def _checked(labels, probabilities, classes) -> tuple:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        raise InvalidTypeError(f"classes must be a list of names, got {classes!r}",
                               argument="classes")
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise InvalidValueError(f"probabilities must be (images, {len(classes)} classes), got "
                                f"shape {probabilities.shape}", argument="probabilities")
    if labels.shape != (probabilities.shape[0],) or probabilities.shape[0] == 0:
        raise InvalidValueError(f"labels must be one class index per image ({len(probabilities)}"
                                f" images, at least one), got shape {labels.shape}",
                                argument="labels")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise InvalidValueError(f"labels must be in 0..{len(classes) - 1}", argument="labels")
    return labels.astype(np.int64), probabilities


def classification_report(labels: Sequence[int], probabilities, classes: List[str]
                          ) -> Dict[str, Any]:
    """The report of a classifier's predictions, as plain data (``report.json``).

    Parameters
    ----------
    labels : sequence of int
        The true class index of each image.
    probabilities : array (images, classes)
        The predicted probabilities; the predicted class is the highest.
    classes : list of str

    Returns
    -------
    dict
        ``images``, ``accuracy``, ``top5_accuracy`` (more than 5 classes only),
        ``per_class`` (name -> precision, recall, f1, support), ``macro_avg``,
        ``confusion_matrix`` (rows: true class, columns: predicted).

    Examples
    --------
    >>> report = classification_report([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
    ...                                ["cat", "dog"])
    >>> report["accuracy"], report["confusion_matrix"]
    (0.6666666666666666, [[1, 0], [1, 1]])
    >>> report["per_class"]["dog"]
    {'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'support': 2}
    """
    labels, probabilities = _checked(labels, probabilities, classes)
    metrics, every = _metrics(), list(range(len(classes)))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        labels, predicted, labels=every, zero_division=0)
    report: Dict[str, Any] = {"images": int(len(labels)),
                              "accuracy": float(metrics.accuracy_score(labels, predicted))}
    if len(classes) > TOP_K:
        report["top5_accuracy"] = float(metrics.top_k_accuracy_score(
            labels, probabilities, k=TOP_K, labels=every))
    report["per_class"] = {name: {"precision": float(p), "recall": float(r), "f1": float(f),
                                  "support": int(s)}
                           for name, p, r, f, s in zip(classes, precision, recall, f1, support)}
    report["macro_avg"] = {"precision": float(np.mean(precision)),
                           "recall": float(np.mean(recall)), "f1": float(np.mean(f1))}
    report["confusion_matrix"] = metrics.confusion_matrix(labels, predicted,
                                                          labels=every).tolist()
    return report


def format_report(report: Dict[str, Any]) -> str:
    """The report as text: accuracy (and top-5), then a per-class table."""
    right = sum(row[i] for i, row in enumerate(report["confusion_matrix"]))
    lines = [f"accuracy {report['accuracy']:.4f} ({right}/{report['images']} images)"]
    if "top5_accuracy" in report:
        lines[0] += f"  top-5 {report['top5_accuracy']:.4f}"
    width = max(len("macro avg"), *(len(name) for name in report["per_class"]))
    lines.append(f"{'class':<{width}}  precision  recall      f1  support")
    for name, row in report["per_class"].items():
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:6.4f}  {row['support']:7d}")
    macro = report["macro_avg"]
    lines.append(f"{'macro avg':<{width}}  {macro['precision']:9.4f}  {macro['recall']:6.4f}  "
                 f"{macro['f1']:6.4f}  {report['images']:7d}")
    return "\n".join(lines)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: List[str], path: str,
                          title: str = "confusion matrix") -> str:
    """Write the confusion matrix (rows: true class, columns: predicted) as an image, each
    cell with its count; returns ``path``."""
    matrix = np.asarray(matrix)
    if matrix.shape != (len(classes), len(classes)):
        raise InvalidValueError(f"matrix must be {len(classes)}x{len(classes)}, got "
                                f"{matrix.shape}", argument="matrix")
    import matplotlib
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt
    side = min(16.0, 2.5 + 0.45 * len(classes))
    fig, ax = plt.subplots(figsize=(side, side * 0.85), dpi=100)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
           yticklabels=classes, xlabel="predicted class", ylabel="true class", title=title)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    if len(classes) <= 30:  # beyond that the counts would not be legible
        high = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > high else "black")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
