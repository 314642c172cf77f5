"""Auxiliary classifiers that ``get_model(classes=)`` leaves alone, said with a warning.

Some classifiers carry extra classifiers used in training (GluonCV's GoogLeNet
with ``aux_logits=True``). ``classes=`` replaces the head, the block the
network's output is computed from; a layer with the zoo's number of outputs
that the output does not use is such an auxiliary classifier, and it keeps the
zoo's classes unless the user replaces it too.
"""
from __future__ import annotations

import warnings
from typing import List, Optional

from mxnet.gluon import nn

from ..structure.index import walk
from ..structure.tracing import forward_trace

__all__ = ["outputs_of", "auxiliary_classifiers", "warn_auxiliary"]


def outputs_of(layer) -> Optional[int]:
    """The number of outputs of a Dense or Conv2D layer (None for other layers)."""
    if isinstance(layer, nn.Dense):
        return int(layer._units)
    if isinstance(layer, nn.Conv2D):
        return int(layer._channels)
    return None


def auxiliary_classifiers(net, head, outputs: Optional[int]) -> List[str]:
    """Paths of Dense/Conv2D layers other than ``head`` with ``outputs`` outputs that the
    network's output is not computed from (empty where the forward cannot be traced)."""
    if outputs is None:
        return []
    found, _ = forward_trace(net)
    if found is None:
        return []
    return [path for path, layer in walk(net) if layer is not head
            and outputs_of(layer) == outputs
            and not any(p.name in found.output for p in layer.collect_params().values())]


def warn_auxiliary(paths: List[str], head_path: str, outputs: int, classes: int) -> None:
    if paths:
        warnings.warn(f"classes={classes} replaced the head ({head_path}); {paths} also have "
                      f"the zoo's {outputs} outputs but the network's output is not computed "
                      f"from them (auxiliary classifiers, used in training): they keep the "
                      f"zoo's classes. Replace them too, or build the model without them "
                      f"(GoogLeNet: aux_logits=False)", UserWarning, stacklevel=4)
