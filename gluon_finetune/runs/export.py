"""Export a run's network for deployment, and check that the export computes the same.

``DIR/model-symbol.json`` and ``DIR/model-0000.params`` (inference graph:
``models.export``), ``DIR/classes.json`` (the class names, in output order),
``DIR/preprocessing.json`` (how an image becomes the input ``data``) and,
with ONNX, ``DIR/model.onnx``. The exported files are loaded back
(``gluon.SymbolBlock.imports``; ONNX Runtime) and run on the same inputs as the
trained network: the largest absolute difference of their outputs is
reported, and ONNX's must be at most ``ONNX_TOLERANCE``.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, NamedTuple, Optional, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..checks import InvalidTypeError, check_bool
from ..errors import UnsupportedError
from ..models.export import INPUT, ONNX_OPSET, export_network, export_onnx, onnx_outputs
from .folder import RunFolder, write_json
from .inference import load_network, run_folder

__all__ = ["ExportResult", "export_run", "ONNX_TOLERANCE"]

ONNX_TOLERANCE = 1e-4
_CHECK_IMAGES = 4  # inputs the check runs through both networks


class ExportResult(NamedTuple):
    """The files written (name -> path) and the largest absolute output difference of the
    MXNet export and of the ONNX model (None without ONNX) to the trained network."""

    files: Dict[str, str]
    symbol_difference: float
    onnx_difference: Optional[float]


def _check_input(size: int) -> np.ndarray:
    """Inputs like normalised images: standard normal, the same every time."""
    return np.random.RandomState(0).standard_normal((_CHECK_IMAGES, 3, size, size)).astype(
        np.float32)


def export_run(run: Union[str, RunFolder], out: str, params: str = "best", onnx: bool = False,
               net: Optional[gluon.HybridBlock] = None) -> ExportResult:
    """Write the run's network (with ``params``: ``"best"``, ``"last"`` or a file) to ``out``.

    ``out`` gets ``model-symbol.json`` and ``model-0000.params`` (an
    inference graph: ``export_network``), ``classes.json`` (the class names,
    in output order), ``preprocessing.json`` (how an image becomes the input
    ``data``) and, with ``onnx``, ``model.onnx``. The files are loaded back
    (``gluon.SymbolBlock.imports``, ONNX Runtime) and run on four fixed
    inputs beside the network, to measure how far their outputs differ.

    Parameters
    ----------
    run : str or RunFolder
    out : str
        The folder to write (made if needed; files of the same names replaced).
    params : str
        ``"best"``, ``"last"`` or a ``.params`` file (ignored with ``net``).
    onnx : bool
        Also write and check ``model.onnx`` (needs the ``onnx`` extra).
    net : HybridBlock, optional
        The network to export instead of rebuilding the run's.

    Returns
    -------
    ExportResult
        ``files`` (name -> path), ``symbol_difference`` and
        ``onnx_difference`` (None without ONNX): the largest absolute output
        difference of each export to the network.

    Raises
    ------
    InvalidTypeError
        If ``run`` or ``out`` is not a folder name, ``onnx`` not a bool, or the
        network not a ``HybridBlock``.
    MissingFileError
        If the run folder or the parameters file does not exist.
    InvalidValueError
        If ``run`` is not a run folder, (without ``net``) records no zoo model,
        or the network has more than one output.
    MissingDependencyError
        If ``onnx`` and onnx or onnxruntime is not installed.
    UnsupportedError
        A RuntimeError: if the ONNX model's outputs differ from the network's
        by more than ``ONNX_TOLERANCE`` (1e-4); the files stay written.

    Examples
    --------
    >>> from gluon_finetune import epoch_data, train_run
    >>> data = epoch_data(data_dir, image_size=16, batch_size=4)
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> _ = train_run(net, trainer, data, 1, "run", progress=False)
    >>> result = export_run("run", "deploy", net=net, onnx=True)
    >>> sorted(os.listdir("deploy"))
    ['classes.json', 'model-0000.params', 'model-symbol.json', 'model.onnx', \
'preprocessing.json']
    >>> result.symbol_difference < 1e-6, result.onnx_difference < 1e-4
    (True, True)
    """
    folder = run_folder(run)
    if not isinstance(out, (str, os.PathLike)):
        raise InvalidTypeError(f"out must be a folder name, got {out!r}", argument="out")
    check_bool("onnx", onnx)
    net = net if net is not None else load_network(folder, params)
    preprocessing = folder.record["preprocessing"]
    size = preprocessing["image_size"]
    out = os.fspath(out)
    symbol_file, params_file = export_network(net, out)
    files = {"symbol": symbol_file, "params": params_file,
             "classes": os.path.join(out, "classes.json"),
             "preprocessing": os.path.join(out, "preprocessing.json")}
    write_json(files["classes"], folder.classes)
    write_json(files["preprocessing"], {**preprocessing, "input": INPUT,
                                        "steps": ["resize the shorter side to resize",
                                                  "centre crop image_size x image_size",
                                                  "to float in [0, 1], RGB, CHW",
                                                  "subtract mean, divide by std"]})
    x = _check_input(size)
    expected = net(mx.nd.array(x)).asnumpy()
    with warnings.catch_warnings():  # "cannot decide type for data": it is float32
        warnings.simplefilter("ignore", UserWarning)
        back = gluon.SymbolBlock.imports(symbol_file, [INPUT], params_file)
    symbol_difference = float(np.abs(back(mx.nd.array(x)).asnumpy() - expected).max())
    onnx_difference = None
    if onnx:
        files["onnx"] = export_onnx(symbol_file, params_file, size,
                                    os.path.join(out, "model.onnx"))
        onnx_difference = float(np.abs(onnx_outputs(files["onnx"], x) - expected).max())
        if onnx_difference > ONNX_TOLERANCE:
            raise UnsupportedError(f"the ONNX model (opset {ONNX_OPSET}) differs from the "
                                   f"network by up to {onnx_difference:.3g} (more than "
                                   f"{ONNX_TOLERANCE:g}): MXNet's exporter does not convert "
                                   f"this network faithfully", argument="onnx")
    return ExportResult(files, symbol_difference, onnx_difference)
