"""Adapter files: ``save_lora`` writes what LoRA training changed, ``load_lora`` reads it back.

The file is MXNet's own ``.params`` format (``mx.nd.save``): the adapters,
every other parameter that can train (the head, asked-for biases), the
running statistics that still move (BatchNorm layers not on their running
statistics), each under its structural path (``"classifier.1.weight"``),
which is the same in every build of the network, unlike parameter names.
A ``__lora__`` entry (JSON text as bytes) records each adapted weight with its
rank, alpha and shape, so that a file for another network or another rank is
refused before anything is loaded.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..checks import InvalidTypeError, InvalidValueError, MissingFileError, last_line
from ..structure import can_train
from ..structure.adapted import is_locked
from ..structure.index import check_block
from ..structure.listing import param_paths
from ..trainer import batchnorm_layers
from ._blocks import contexts, global_stats, has_data
from .adapters import Adapter
from .network import lora_adapters

__all__ = ["save_lora", "load_lora", "FORMAT"]

FORMAT = "gluon-finetune LoRA adapters"
_META = "__lora__"


def _adapters_by_path(net) -> Tuple[Dict[str, Adapter], Dict[str, str]]:
    paths = param_paths(net)
    adapters = lora_adapters(net)
    if not adapters:
        raise InvalidValueError(f"{type(net).__name__} has no LoRA adapters: call "
                                f"add_lora(net, ...) first (with the targets and rank the "
                                f"adapters were trained with, to load them)", argument="net")
    return {paths[name]: adapter for name, adapter in adapters.items()}, paths


def _saved_params(net) -> List[gluon.Parameter]:
    """The adapters, what can train besides, and running statistics that move."""
    moving = {p.name for layer in batchnorm_layers(net) if not global_stats(layer)
              for p in layer.collect_params().values()}
    return [p for p in net.collect_params().values()
            if can_train(p, net) or (p.name in moving and not is_locked(p))]


def _describe(adapters: Dict[str, Adapter]) -> Dict[str, Dict]:
    return {path: {"rank": a.rank, "alpha": a.alpha, "shape": list(a.weight.shape)}
            for path, a in adapters.items()}


def save_lora(net: gluon.Block, path: str) -> str:
    """Write ``net``'s adapters and its other trainable parameters to ``path``.

    A small file (the base weights stay where they came from): loading it
    with :func:`load_lora` into the same network, rebuilt and given the same
    ``add_lora``, reproduces this one's outputs exactly. It holds the
    adapters, every other parameter that can train (the head, asked-for
    biases) and the running statistics of BatchNorm layers that still update
    them, each under its structural path, and a record of each adapter's
    rank, alpha and shape. The file is written whole or not at all (a
    temporary file, then a rename); its folder is made if needed.

    Parameters
    ----------
    net : Block
        A network given adapters by ``add_lora``, initialised, its shapes
        known (after one forward pass where they were deferred).
    path : str or os.PathLike
        The file to write (MXNet's ``.params`` format), replaced if it exists.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.Block`` or ``path`` not a file name.
    InvalidValueError
        If ``net`` has no adapters, or a parameter to save has no data yet.

    Examples
    --------
    >>> from gluon_finetune import add_lora
    >>> add_lora(net, rank=2)
    ['net_conv0_weight', 'net_conv1_weight']
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> for x, y in train_loader:     # trains the adapters and the head
    ...     with autograd.record():
    ...         loss = loss_fn(net(x), y)
    ...     loss.backward(); trainer.step(len(y))
    >>> save_lora(net, "adapters.params")
    'adapters.params'
    >>> sorted(k for k in mx.nd.load("adapters.params") if k != "__lora__")
    ['features.0.weight_lora_a', 'features.0.weight_lora_b', 'features.3.weight_lora_a', \
'features.3.weight_lora_b', 'output.bias', 'output.weight']
    """
    check_block(net)
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a file name, got {type(path).__name__}: {path!r}",
                               argument="path")
    path = os.fspath(path)
    adapters, paths = _adapters_by_path(net)
    missing = [p.name for p in _saved_params(net) if not has_data(p)]
    if missing:
        raise InvalidValueError(f"{missing[0]} has no data yet (initialise the network and run "
                                f"one forward pass before saving)", argument="net")
    arrays = {paths[p.name]: p.data(p.list_ctx()[0]).copyto(mx.cpu())
              for p in _saved_params(net)}
    meta = json.dumps({"format": FORMAT, "version": 1, "adapters": _describe(adapters)})
    arrays[_META] = mx.nd.array(np.frombuffer(meta.encode(), dtype=np.uint8), dtype="uint8")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = f"{path}.partial-{os.getpid()}"
    mx.nd.save(partial, arrays)
    os.replace(partial, path)  # a reader never sees half a file
    return path


def _read(path) -> Tuple[Dict, Dict[str, mx.nd.NDArray]]:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a file name, got {type(path).__name__}: {path!r}",
                               argument="path")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"adapter file {path!r} does not exist", argument="path")
    try:
        arrays = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise InvalidValueError(f"cannot read {path!r}: {last_line(err)} (expected a file "
                                f"written by save_lora)", argument="path") from None
    meta = arrays.pop(_META, None) if isinstance(arrays, dict) else None
    try:
        info = json.loads(bytes(meta.asnumpy().astype(np.uint8)).decode()) \
            if meta is not None else None
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise InvalidValueError(f"{path!r} is not an adapter file written by save_lora (no "
                                f"{_META!r} record)", argument="path")
    return info, arrays


def _check_adapters(path: str, theirs: Dict[str, Dict], ours: Dict[str, Adapter]) -> None:
    extra, absent = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    if extra or absent:
        raise InvalidValueError(
            f"{path!r} is for another network or other targets: it adapts {len(theirs)} "
            f"weights, the network {len(ours)}"
            + (f"; only in the file: {extra[:3]}" if extra else "")
            + (f"; only in the network: {absent[:3]}" if absent else ""), argument="path")
    for where, adapter in ours.items():
        saved = theirs[where]
        if saved.get("rank") != adapter.rank or saved.get("alpha") != adapter.alpha:
            raise InvalidValueError(
                f"{path!r} was trained with rank {saved.get('rank')}, alpha {saved.get('alpha')} "
                f"for {where}; the network's adapters have rank {adapter.rank}, alpha "
                f"{adapter.alpha}: call add_lora with the file's rank and alpha",
                argument="path")


def _fits(param: gluon.Parameter, shape) -> bool:
    own = tuple(param.shape or ())
    return len(own) == len(shape) and all(a in (0, b) for a, b in zip(own, shape))


def _targets(path: str, arrays, net) -> List[Tuple[gluon.Parameter, mx.nd.NDArray]]:
    paths = param_paths(net)
    by_path = {paths[p.name]: p for p in net.collect_params().values() if p.name in paths}
    out = []
    for where, value in arrays.items():
        param = by_path.get(where)
        if param is None or not _fits(param, value.shape):
            what = "no such parameter" if param is None else \
                f"shape {value.shape} in the file, {param.shape} in the network"
            raise InvalidValueError(f"{path!r} does not fit this network: {where}: {what}",
                                    argument="path")
        if contexts(param) is None:
            raise InvalidValueError(f"initialise the network before load_lora ({param.name} "
                                    f"has not been initialised)", argument="net")
        out.append((param, value))
    return out


def load_lora(net: gluon.Block, path: str) -> List[str]:
    """Load an adapter file written by :func:`save_lora` into ``net``.

    ``net`` must be the network the file was trained on, built again, with
    the base weights it started from and ``add_lora`` applied with the same
    targets, rank and alpha; anything else (another network, other targets,
    another rank) is an error before anything changes. Each array is loaded
    into the parameter at its structural path, cast to its dtype.

    Parameters
    ----------
    net : Block
        The rebuilt, initialised network with its adapters.
    path : str or os.PathLike
        A file written by :func:`save_lora`.

    Returns
    -------
    list of str
        The names of the parameters loaded.

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.Block`` or ``path`` not a file name.
    MissingFileError
        If ``path`` does not exist.
    InvalidValueError
        If ``path`` is not a file of ``save_lora``'s, ``net`` has no adapters,
        the file adapts other weights or another rank or alpha, a saved
        parameter is not in ``net`` or has another shape, or ``net`` is not
        initialised.

    Examples
    --------
    >>> from gluon_finetune import add_lora
    >>> net.save_parameters("base.params")              # the weights LoRA starts from
    >>> add_lora(net, rank=2)
    ['net_conv0_weight', 'net_conv1_weight']
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> for x, y in train_loader:
    ...     with autograd.record():
    ...         loss = loss_fn(net(x), y)
    ...     loss.backward(); trainer.step(len(y))
    >>> save_lora(net, "adapters.params")
    'adapters.params'
    >>> again = type(net)(prefix="again_")               # the same network, built anew
    >>> again.load_parameters("base.params")
    >>> add_lora(again, rank=2)
    ['again_conv0_weight', 'again_conv1_weight']
    >>> len(load_lora(again, "adapters.params"))
    6
    >>> x = nd.ones((1, 3, 32, 32))
    >>> bool((again(x) == net(x)).min())
    True
    >>> other = type(net)(prefix="other_"); other.initialize()
    >>> _ = add_lora(other, rank=4)
    >>> load_lora(other, "adapters.params")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    gluon_finetune.errors.InvalidValueError: 'adapters.params' was trained with rank 2, ...
    """
    check_block(net)
    info, arrays = _read(path)
    ours, _ = _adapters_by_path(net)
    _check_adapters(os.fspath(path), info.get("adapters") or {}, ours)
    loads = _targets(os.fspath(path), arrays, net)
    for param, value in loads:
        param.set_data(value.astype(param.dtype, copy=False))
    return [param.name for param, _ in loads]
