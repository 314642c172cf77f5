"""Detectors in ``get_model``: new classes through GluonCV's own ``reset_class``.

A detector has no single head to swap: its classes live in several layers
that must change together (Faster R-CNN's class and box predictors, SSD's
class predictors, CenterNet's heatmap beside its class-free width/height and
offset heads, YOLO's outputs). Replacing one of them (what ``get_model`` does
for a classifier) leaves the others sized for the zoo's classes. GluonCV's
detectors (SSD, YOLOv3, Faster/Mask R-CNN, CenterNet) each have a
``reset_class(classes)`` that rebuilds exactly the class-dependent layers;
``get_model`` calls it.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

from mxnet import gluon

from ..checks import InvalidTypeError, InvalidValueError, check_int

__all__ = ["is_detector", "check_classes", "class_names", "reset_detector", "load_detector",
           "refuse_names"]

Classes = Union[int, Tuple[str, ...]]


def is_detector(net: gluon.Block) -> bool:
    """A GluonCV detector: it resets its classes itself (``reset_class``)."""
    return callable(getattr(net, "reset_class", None))


def check_classes(classes) -> Optional[Classes]:
    """``classes`` as an int, or as a tuple of distinct class names (for a detector)."""
    if classes is None or isinstance(classes, (str, bytes)) or \
            not isinstance(classes, (list, tuple)):
        return None if classes is None else check_int("classes", classes, minimum=1)
    names = tuple(classes)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidTypeError(f"classes must be a number of classes, or a non-empty list of "
                               f"class names (str) for a detector, got {classes!r}",
                               argument="classes")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidValueError(f"classes lists {repeated} more than once; class names must "
                                f"be distinct", argument="classes")
    return names


def class_names(classes: Classes) -> list:
    """The names ``reset_class`` gets: the given ones, or ``class0``, ``class1`` ... for a
    number (GluonCV shows them in its plots; ``net.classes`` keeps them)."""
    return list(classes) if isinstance(classes, tuple) else [f"class{i}" for i in range(classes)]


def reset_detector(net: gluon.Block, classes: Classes, clear: Callable) -> None:
    """GluonCV's ``reset_class`` with ``classes``: every class-dependent layer made afresh
    (initialised by GluonCV, on the contexts of the layers they replace)."""
    net.reset_class(class_names(classes))
    clear(net)  # reset_class clears the root's graph only; children may keep theirs


def load_detector(net: gluon.Block, path: str, classes: Optional[Classes],
                  load: Callable, clear: Callable) -> None:
    """Load ``path`` (written with the zoo's classes, or with ``classes``: one's own
    fine-tuned detector) and reset the classes where ``classes`` asks for it."""
    try:
        load(net, path)
    except InvalidValueError:
        if classes is None:
            raise
        reset_detector(net, classes, clear)  # a file with the new classes loads after it
        load(net, path)
        return
    if classes is not None:
        reset_detector(net, classes, clear)


def refuse_names(classes: Sequence[str], name: str) -> None:
    """Class names are for detectors (``reset_class`` keeps them); others take a count."""
    raise InvalidTypeError(f"{name} is not a detector: classes must be the number of classes "
                           f"(classes={len(classes)}), not their names {list(classes)!r}",
                           argument="classes")
