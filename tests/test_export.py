"""Export: an inference-only MXNet graph that SymbolBlock.imports runs to the same outputs,
and ONNX (checked, run with ONNX Runtime) within 1e-4; a run exported with its classes and
preprocessing."""
import json

import mxnet as mx
import numpy as np
import onnx
import pytest
from finetune_helpers import tiny_convnet
from image_folder import make_image_folder
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune.models.export import (
    ONNX_OPSET,
    export_network,
    export_onnx,
    inference_symbol,
    onnx_outputs,
)
from gluon_finetune.recipes.data import epoch_data
from gluon_finetune.runs import export_run, train_run
from gluon_finetune.trainer import LayerwiseTrainer


def with_dropout_and_statistics():
    """Conv, BatchNorm (with running statistics of its own), Dropout, Dense."""
    mx.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Activation("relu"),
            nn.GlobalAvgPool2D(), nn.Dropout(0.5), nn.Dense(2, in_units=4))
    net.initialize(mx.init.Xavier())
    net[1].running_mean.set_data(mx.nd.array([0.1, -0.2, 0.3, 0.0]))
    net[1].running_var.set_data(mx.nd.array([0.5, 2.0, 1.5, 1.0]))
    return net


def test_the_graph_is_inference_only_and_imports_to_the_same_outputs(tmp_path):
    net = with_dropout_and_statistics()
    ops = [n for n in json.loads(inference_symbol(net).tojson())["nodes"] if n["op"] != "null"]
    assert "Dropout" not in [n["op"] for n in ops]
    assert [n["attrs"]["use_global_stats"] for n in ops if n["op"] == "BatchNorm"] == ["True"]
    symbol_file, params_file = export_network(net, str(tmp_path))
    assert symbol_file.endswith("model-symbol.json") and params_file.endswith("model-0000.params")
    back = gluon.SymbolBlock.imports(symbol_file, ["data"], params_file)
    x = mx.nd.random.normal(shape=(3, 3, 8, 8))
    expected = net(x).asnumpy()
    assert np.array_equal(back(x).asnumpy(), expected)
    with autograd.record(train_mode=True):  # still inference: no batch statistics, no dropout
        assert np.array_equal(back(x).asnumpy(), expected)
    assert not net._active  # the network itself was not hybridized


def test_onnx_is_checked_and_runs_to_the_same_outputs_for_any_batch(tmp_path):
    net = with_dropout_and_statistics()
    path = export_onnx(*export_network(net, str(tmp_path)), 8, str(tmp_path / "model.onnx"))
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["data"]  # weights are initializers only
    assert model.opset_import[0].version == ONNX_OPSET
    for n in (1, 5):
        x = np.random.RandomState(n).standard_normal((n, 3, 8, 8)).astype(np.float32)
        assert np.abs(onnx_outputs(path, x) - net(mx.nd.array(x)).asnumpy()).max() <= 1e-4


def test_a_layer_norm_network_exports_at_opset_17(tmp_path):
    """Left to itself, the exporter takes onnx 1.16's opset 21, where its LayerNorm's
    ReduceMean (with an axes attribute) is invalid; export_onnx pins opset 17."""
    mx.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.LayerNorm(axis=-1, in_channels=6),
            nn.GlobalAvgPool2D(), nn.Dense(2, in_units=4))
    net.initialize(mx.init.Xavier())
    files = export_network(net, str(tmp_path))
    with pytest.raises(Exception, match="axes"):
        mx.onnx.export_model(*files, [(1, 3, 8, 8)], [np.float32], str(tmp_path / "plain.onnx"))
        onnx.checker.check_model(onnx.load(str(tmp_path / "plain.onnx")), full_check=True)
    path = export_onnx(*files, 8, str(tmp_path / "model.onnx"))
    x = np.random.RandomState(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert np.abs(onnx_outputs(path, x) - net(mx.nd.array(x)).asnumpy()).max() <= 1e-4
    assert onnx.defs.onnx_opset_version() > ONNX_OPSET  # the pin is undone afterwards


def test_a_run_exports_with_its_classes_and_preprocessing(tmp_path):
    images = make_image_folder(tmp_path / "images")
    net = tiny_convnet()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    train_run(net, trainer, epoch_data(images, image_size=16, batch_size=4), 1,
              tmp_path / "run", progress=False)
    result = export_run(str(tmp_path / "run"), str(tmp_path / "out"), onnx=True, net=net)
    assert sorted(result.files) == ["classes", "onnx", "params", "preprocessing", "symbol"]
    with open(result.files["classes"]) as f:
        assert json.load(f) == ["blue", "red"]
    with open(result.files["preprocessing"]) as f:
        preprocessing = json.load(f)
    assert (preprocessing["image_size"], preprocessing["resize"], preprocessing["input"]) == \
        (16, 18, "data")
    assert result.symbol_difference == 0.0 and result.onnx_difference <= 1e-4
