"""Block lists shipped for GluonCV's detectors: the head is every class-dependent layer.

A detector keeps its classes in several layers that GluonCV's ``reset_class``
remakes together: SSD's class predictor at each scale, YOLOv3's output at each
scale, Faster R-CNN's class and box predictors (and Mask R-CNN's mask predictor).
In forward order they sit among other blocks (SSD's class predictors between its
feature scales), so the automatic list made one of them "the head": ``unfreeze=1``,
the rule key ``-1``, ``fine_tune``'s head phase and gradual unfreezing trained that
one and left the others frozen, remade with random weights by ``get_model(...,
classes=)``. Here they are one block, the last. CenterNet needs no declaration:
its heatmap layer, the one it remakes, is already last.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

from .._compat import children
from .declared import declare_builtin
from .listing import automatic_blocks

__all__ = ["HEADS", "head_last"]

Spec = List[Union[str, Tuple[str, ...]]]

# GluonCV class (module.qualified name) -> the structural paths of its class-dependent
# layers, as its reset_class remakes them (GluonCV 0.10). A subclass's entry wins.
HEADS = {
    "gluoncv.model_zoo.ssd.ssd.SSD": ("class_predictors",),
    "gluoncv.model_zoo.yolo.yolo3.YOLOV3": ("yolo_outputs",),
    "gluoncv.model_zoo.rcnn.rcnn.RCNN": ("box_predictor", "class_predictor"),
    "gluoncv.model_zoo.rcnn.mask_rcnn.mask_rcnn.MaskRCNN":
        ("box_predictor", "class_predictor", "mask.mask"),
}


def _inside(path: str, head: str) -> bool:
    return path == head or path.startswith(head + ".")


def _child(net, path: str):
    for part in path.split("."):
        net = children(net).get(part) if net is not None else None
    return net


def _around(net, path: str, heads: Sequence[str]) -> List[str]:
    """The children of block ``path`` (which holds a head layer) that hold parameters,
    the head layers left out: the rest of that block."""
    block = _child(net, path)
    out = []
    for name, child in children(block).items():
        sub = f"{path}.{name}"
        if any(_inside(sub, h) for h in heads) or not child.collect_params().keys():
            continue
        out.extend(_around(net, sub, heads) if any(_inside(h, sub) for h in heads) else [sub])
    return out


def head_last(net, granularity: str, heads: Sequence[str]) -> Spec:
    """The automatic list of ``net`` with the layers ``heads`` (paths) taken out of the
    blocks that hold them and put together as one last block."""
    heads = [h for h in heads if _child(net, h) is not None]
    out: Spec = []
    for entry in automatic_blocks(net, granularity):
        kept = []
        for path in (entry,) if isinstance(entry, str) else entry:
            if any(_inside(path, h) for h in heads):
                continue
            kept.extend(_around(net, path, heads) if any(_inside(h, path) for h in heads)
                        else [path])
        if kept:
            out.append(kept[0] if len(kept) == 1 else tuple(kept))
    if heads:
        out.append(heads[0] if len(heads) == 1 else tuple(heads))
    return out


for _name, _heads in HEADS.items():
    declare_builtin(_name, lambda net, granularity, heads=_heads: head_last(net, granularity,
                                                                            heads))
