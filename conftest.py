"""What the examples may assume: docstrings (doctests) and the docs pages' code blocks.

Every doctest and every page of ``tests/test_docs.py`` starts from a fresh
:func:`example_namespace`, in a temporary working folder (examples write their
plots and files there), with ``MXNET_HOME`` pointing at a model store that holds
``resnet18_v1.params`` (random weights saved under the zoo's name), so that
``get_model("resnet18_v1", pretrained=True)`` runs offline as it would with the
zoo's download. docs/contributing.md lists these names for writers of examples.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from _pytest.doctest import DoctestItem
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

IMAGE_SHAPE = (3, 32, 32)


class SmallNet(gluon.HybridBlock):
    """A small conv net laid out like the zoo's: ``features`` (a chain), then ``output``.

    Blocks: ``features.0`` (conv), ``features.1`` (BatchNorm), ``features.3`` (conv),
    ``features.4`` (BatchNorm), ``output`` (the head): five blocks.
    """

    def __init__(self, classes: int = 2, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Conv2D(8, 3, padding=1, in_channels=3),
                              nn.BatchNorm(in_channels=8), nn.Activation("relu"),
                              nn.Conv2D(16, 3, strides=2, padding=1, in_channels=8),
                              nn.BatchNorm(in_channels=16), nn.Activation("relu"),
                              nn.GlobalAvgPool2D(), nn.Flatten())
            self.output = nn.Dense(classes, in_units=16)

    def hybrid_forward(self, F, x):  # noqa: N803 (Gluon's signature)
        return self.output(self.features(x))


def image_dataset(count: int, seed: int) -> gluon.data.ArrayDataset:
    """Two classes of random images, the second brighter in its first channel."""
    rng = np.random.RandomState(seed)
    labels = np.arange(count) % 2
    images = rng.rand(count, *IMAGE_SHAPE).astype("float32")
    images[:, 0] += labels[:, None, None]
    return gluon.data.ArrayDataset(nd.array(images), nd.array(labels.astype("float32")))


def _tests_module(name: str):
    """A helper module of ``tests/`` (not a package: not importable from here by name)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "tests" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_image_folder = _tests_module("image_folder").make_image_folder


def example_namespace(tmp_path) -> dict:
    """The names every example may use without defining them."""
    mx.random.seed(0)
    np.random.seed(0)
    net = SmallNet(prefix="net_")
    net.initialize(mx.init.Xavier())
    train_dataset, val_dataset = image_dataset(16, 0), image_dataset(8, 1)
    return {
        "mx": mx, "np": np, "nd": nd, "gluon": gluon, "nn": nn, "autograd": autograd,
        "net": net, "epochs": 1,
        "train_dataset": train_dataset, "val_dataset": val_dataset,
        "train_loader": gluon.data.DataLoader(train_dataset, batch_size=8, shuffle=True),
        "val_loader": gluon.data.DataLoader(val_dataset, batch_size=8),
        "loss_fn": gluon.loss.SoftmaxCrossEntropyLoss(),
        "data_dir": str(make_image_folder(tmp_path / "images")),
    }


@pytest.fixture(scope="session")
def model_store(tmp_path_factory):
    """An MXNET_HOME whose model store holds resnet18_v1 weights (random, saved once)."""
    home = tmp_path_factory.mktemp("mxnet_home")
    (home / "models").mkdir()
    source = gluon.model_zoo.vision.resnet18_v1(prefix="resnet18store_")
    source.initialize(mx.init.Xavier())
    source(nd.zeros((1,) + IMAGE_SHAPE))  # the shapes: the model-zoo layers defer them
    source.save_parameters(str(home / "models" / "resnet18_v1.params"))
    return home


@pytest.fixture
def examples(tmp_path, monkeypatch, model_store):
    """A fresh :func:`example_namespace`, run in ``tmp_path`` with the model store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MXNET_HOME", str(model_store))
    return example_namespace(tmp_path)


@pytest.fixture(autouse=True)
def _doctest_examples(request):
    """Give each doctest its own fresh names (other tests do not pay for them)."""
    if isinstance(request.node, DoctestItem):
        request.getfixturevalue("doctest_namespace").update(request.getfixturevalue("examples"))
