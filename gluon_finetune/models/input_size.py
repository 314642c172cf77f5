"""``check_input_size``: whether a network can take images of a given size, said early.

A model-zoo network given images that are too small fails deep inside MXNet
(a pooling kernel larger than its input) after training has started. The
check infers shapes on the network's graph (no data runs) and names the
failing layer and the nearest size that works.
"""
from __future__ import annotations

import contextlib
import io
import re
from typing import Dict, Optional

import mxnet as mx
from mxnet import gluon

from ..checks import InvalidValueError, check_positive_int, last_line
from ..structure.arrays import symbol_input, symbolic_call

__all__ = ["check_input_size"]

_USUAL_SIZES = (224, 227, 299, 331)  # tried first when looking for a size that works
_LARGEST = 4096


def _failure(graph, size: int, shapes: Dict[str, tuple]) -> Optional[str]:
    """Why ``graph`` cannot take a ``size`` x ``size`` image, or None if it can."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # infer_shape prints on failure
            graph.infer_shape(data=(1, 3, size, size), **shapes)
    except mx.base.MXNetError as err:
        operator = re.search(r"Error in operator (\w+?)(?:_fwd)?:", str(err))
        detail = last_line(err).rsplit(": ", 1)[-1]
        return f"{operator.group(1)}: {detail}" if operator else detail
    return None


def _nearest(graph, size: int, shapes, up: bool) -> Optional[int]:
    """The size nearest to the failing ``size``, above it (``up``) or below, that works:
    candidates first, then bisection between the last failing one and the first that
    works (the sizes between are assumed to fail, then work)."""
    doubling = {size * 2 ** k if up else size // 2 ** k for k in range(1, 12)}
    candidates = sorted(c for c in doubling | set(_USUAL_SIZES)
                        if (size < c <= _LARGEST if up else 0 < c < size))
    failing = size
    for works in candidates if up else reversed(candidates):
        if _failure(graph, works, shapes) is None:
            while abs(works - failing) > 1:
                middle = (works + failing) // 2
                if _failure(graph, middle, shapes) is None:
                    works = middle
                else:
                    failing = middle
            return works
        failing = works
    return None


def check_input_size(net: gluon.HybridBlock, image_size: int, name: Optional[str] = None
                     ) -> None:
    """Raise InvalidValueError if ``net`` cannot take ``image_size`` x ``image_size``
    images, naming the layer that fails and the nearest size that works.

    Shapes are inferred on the network's graph (no data runs), with the
    shapes its parameters already have (loaded weights fix a Dense layer's
    input size). A network that is not a HybridBlock is not checked.

    Parameters
    ----------
    net : HybridBlock
        The network, e.g. from ``get_model`` (3-channel images).
    image_size : int
        The side of the square images it will get.
    name : str, optional
        How the network is called in the message (default: its class name).

    Raises
    ------
    InvalidValueError
        A ``ValueError`` whose ``argument`` is ``"image_size"``.

    Examples
    --------
    >>> import textwrap
    >>> from gluon_finetune import get_model
    >>> try:
    ...     check_input_size(get_model("squeezenet1.1"), 32)
    ... except ValueError as err:
    ...     print(textwrap.fill(str(err), 80))
    SqueezeNet cannot take 32x32 images (squeezenet0_pool3: kernel size (13) exceeds
    input (1 padded to 1)); the smallest size above 32 that works is 209
    """
    image_size = check_positive_int("image_size", image_size)
    if not isinstance(net, gluon.HybridBlock):
        return
    graph = symbolic_call(net, symbol_input("data"))
    arguments = set(graph.list_arguments())
    shapes = {p.name: p.shape for p in net.collect_params().values()
              if p.name in arguments and p.shape and all(d > 0 for d in p.shape)}
    reason = _failure(graph, image_size, shapes)
    if reason is None:
        return
    above = _nearest(graph, image_size, shapes, up=True)
    below = None if above else _nearest(graph, image_size, shapes, up=False)
    if above:
        fix = f"the smallest size above {image_size} that works is {above}"
    elif below:
        fix = f"no larger size works; the largest smaller one that does is {below}"
    else:
        fix = f"no size up to {_LARGEST} works"
    raise InvalidValueError(f"{name or type(net).__name__} cannot take {image_size}x"
                            f"{image_size} images ({reason}); {fix}", argument="image_size")
