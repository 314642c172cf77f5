"""A trained network as a deployable graph: MXNet's symbol and params files, and ONNX.

The graph is inference only: every BatchNorm uses its running statistics
(``use_global_stats``, so the model behaves the same in a training-mode call)
and Dropout is taken out. The files are those of ``HybridBlock.export``
(``PREFIX-symbol.json``, ``PREFIX-0000.params``), so
``gluon.SymbolBlock.imports`` and MXNet Model Server read them. The network
itself is not changed (no ``hybridize``).

ONNX goes through MXNet's own exporter (``mx.onnx``; the ``onnx`` extra:
onnx 1.16.2 and onnxruntime 1.18.1 work with MXNet 1.9.1). The exporter takes
the installed onnx's newest opset, where its LayerNorm converter writes an
invalid ReduceMean, so opset 17 is pinned while it runs. The weights it lists
as graph inputs are removed (they are initializers), and the file is checked
with ``onnx.checker`` (``full_check``).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from ..checks import InvalidTypeError, InvalidValueError, check_positive_int, require

__all__ = ["inference_symbol", "export_network", "export_onnx", "onnx_outputs", "ONNX_OPSET"]

ONNX_OPSET = 17
INPUT = "data"


def _rewired(graph: Dict[str, Any]) -> Dict[str, Any]:
    """The graph without Dropout nodes (each replaced by its input), BatchNorm on its
    running statistics."""
    nodes, where = [], {}

    def entry(e):
        return [*where[(e[0], e[1])], e[2]]
    for i, node in enumerate(graph["nodes"]):
        inputs = [entry(e) for e in node.get("inputs", [])]
        if node["op"] == "Dropout":
            where[(i, 0)] = tuple(inputs[0][:2])
            continue
        if node["op"] == "BatchNorm":
            node = dict(node, attrs={**node.get("attrs", {}), "use_global_stats": "True"})
        nodes.append(dict(node, inputs=inputs))
        where.update({(i, k): (len(nodes) - 1, k) for k in range(16)})
    return {"nodes": nodes, "heads": [entry(e) for e in graph["heads"]],
            "arg_nodes": [i for i, node in enumerate(nodes) if node["op"] == "null"],
            "attrs": graph.get("attrs", {})}


def inference_symbol(net: gluon.HybridBlock) -> mx.sym.Symbol:
    """``net``'s graph on the input ``data``, for inference only (module docstring).

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="example_")
    >>> with net.name_scope():
    ...     net.add(nn.Dense(4, in_units=3), nn.Dropout(0.5), nn.BatchNorm(in_channels=4))
    >>> [n["op"] for n in json.loads(inference_symbol(net).tojson())["nodes"]
    ...  if n["op"] != "null"]
    ['FullyConnected', 'BatchNorm']
    """
    if not isinstance(net, gluon.HybridBlock):
        raise InvalidTypeError(f"only a HybridBlock can be exported as a graph, got "
                               f"{type(net).__name__}", argument="net")
    symbol = net(mx.sym.var(INPUT))
    if isinstance(symbol, (list, tuple)):
        raise InvalidValueError(f"the network has {len(symbol)} outputs; export takes one",
                                argument="net")
    return mx.sym.load_json(json.dumps(_rewired(json.loads(symbol.tojson()))))


def export_network(net: gluon.HybridBlock, folder: str, prefix: str = "model"
                   ) -> Tuple[str, str]:
    """Write ``folder/PREFIX-symbol.json`` and ``folder/PREFIX-0000.params``.

    The graph is for inference: BatchNorm on its running statistics, Dropout
    taken out; its input is ``data``. The files are those of
    ``HybridBlock.export`` (MXNet Model Server reads them); ``net`` itself is
    not changed (not hybridized).

    Parameters
    ----------
    net : HybridBlock
        An initialised network with one output.
    folder : str
        Made if needed; files of the same names are replaced.
    prefix : str
        The files' name before ``-symbol.json`` and ``-0000.params``.

    Returns
    -------
    (str, str)
        The symbol file and the params file. ``gluon.SymbolBlock.imports(
        symbol_file, ["data"], params_file)`` loads them back.

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.HybridBlock``.
    InvalidValueError
        If ``net`` has more than one output.

    Examples
    --------
    >>> symbol_file, params_file = export_network(net, "exported")
    >>> symbol_file, params_file
    ('exported/model-symbol.json', 'exported/model-0000.params')
    >>> back = gluon.SymbolBlock.imports(symbol_file, ["data"], params_file)
    >>> x = nd.random.uniform(shape=(2, 3, 32, 32))
    >>> float((back(x) - net(x)).abs().max().asscalar()) < 1e-6
    True
    """
    symbol = inference_symbol(net)
    params = {p.name: p for p in net.collect_params().values()}
    arrays = {}
    for kind, names in (("arg", symbol.list_arguments()), ("aux",
                                                           symbol.list_auxiliary_states())):
        for name in names:
            if name != INPUT:
                arrays[f"{kind}:{name}"] = params[name].data().copyto(mx.cpu())
    os.makedirs(folder, exist_ok=True)
    symbol_file = os.path.join(folder, f"{prefix}-symbol.json")
    params_file = os.path.join(folder, f"{prefix}-0000.params")
    symbol.save(symbol_file)
    nd.save(params_file, arrays)
    return symbol_file, params_file


def _onnx():
    """onnx and onnxruntime, both (export checks its model by running it)."""
    return (require("onnx", extra="onnx", needed_for="ONNX export"),
            require("onnxruntime", extra="onnx", needed_for="ONNX export"))


@contextmanager
def _opset(onnx, version: int) -> Iterator[None]:
    """The exporter and the checker at opset ``version`` (the exporter has no argument)."""
    newest, imports = onnx.defs.onnx_opset_version, onnx.checker.DEFAULT_CONTEXT.opset_imports
    onnx.defs.onnx_opset_version = lambda: version
    onnx.checker.DEFAULT_CONTEXT.opset_imports = {"": version}
    try:
        yield
    finally:
        onnx.defs.onnx_opset_version = newest
        onnx.checker.DEFAULT_CONTEXT.opset_imports = imports


def export_onnx(symbol_file: str, params_file: str, image_size: int, path: str) -> str:
    """Convert exported MXNet files to ONNX (input ``data``: ``(N, 3, size, size)``
    float32, any N), remove the weights from the graph inputs and check the file.

    MXNet's own exporter (``mx.onnx``) writes opset 17, and ``onnx.checker``
    checks the result in full (their errors, for a layer the exporter cannot
    convert, pass through unchanged); ``onnx_outputs(path, x)`` runs the file
    with ONNX Runtime.

    Parameters
    ----------
    symbol_file, params_file : str
        Written by :func:`export_network`.
    image_size : int
        The input's height and width.
    path : str
        The ``.onnx`` file to write (replaced if it exists).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    MissingDependencyError
        If onnx or onnxruntime is not installed (the ``onnx`` extra).
    InvalidValueError
        If ``image_size`` is not a positive int.

    Examples
    --------
    >>> files = export_network(net, "exported")
    >>> export_onnx(*files, 32, "exported/model.onnx")
    'exported/model.onnx'
    >>> x = np.random.uniform(size=(2, 3, 32, 32)).astype("float32")
    >>> expected = net(nd.array(x)).asnumpy()
    >>> float(abs(onnx_outputs("exported/model.onnx", x) - expected).max()) < 1e-4
    True
    """
    onnx, _ = _onnx()
    size = check_positive_int("image_size", image_size)
    with _opset(onnx, ONNX_OPSET):
        mx.onnx.export_model(symbol_file, params_file, in_shapes=[(1, 3, size, size)],
                             in_types=[np.float32], onnx_file_path=path, dynamic=True,
                             dynamic_input_shapes=[(None, 3, size, size)])
        model = onnx.load(path)
        weights = {init.name for init in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)
    return path


def onnx_outputs(path: str, x: np.ndarray) -> np.ndarray:
    """Run the ONNX model at ``path`` on ``x`` with ONNX Runtime (CPU)."""
    _, onnxruntime = _onnx()
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT: np.asarray(x, dtype=np.float32)})[0]
