"""MXNet's NumPy mode (``npx.set_np()``, as d2l.ai uses it): everything works and gives the
numbers classic mode gives (issue 21, item 18).

``set_np`` is global state: the ``numpy_mode`` fixture turns it on for one test and always
back off (``npx.reset_np()``), and every test here checks that it starts in classic mode.
Networks are built inside the mode they run in, as Gluon requires.
"""
import warnings

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import HeadFirst
from mxnet import gluon, npx
from mxnet.gluon import nn
from mxnet.util import is_np_array

from gluon_finetune import (
    GradualUnfreezing,
    LayerwiseTrainer,
    blocks,
    cache_features,
    evaluate,
    fine_tune,
    fit,
    get_model,
    lr_find,
)
from gluon_finetune.models.input_size import check_input_size


@pytest.fixture
def numpy_mode():
    assert not is_np_array(), "a test left NumPy mode on"
    npx.set_np()
    try:
        yield
    finally:
        npx.reset_np()


@pytest.fixture(autouse=True)
def classic_mode_around():
    assert not is_np_array()
    yield
    assert not is_np_array(), "NumPy mode leaked out of a test"


def small_net(weights=None):
    """Dense -> BatchNorm -> Dense -> Dense, in the current mode, with ``weights`` (NumPy
    arrays in collect_params order) if given."""
    mx.random.seed(0)
    net = nn.HybridSequential(prefix="small_")
    with net.name_scope():
        net.add(nn.Dense(8, in_units=4, activation="relu"), nn.BatchNorm(in_channels=8),
                nn.Dense(8, in_units=8, activation="tanh"), nn.Dense(3, in_units=8))
    net.initialize(mx.init.Xavier())
    array = mx.np.array if is_np_array() else mx.nd.array
    for param, value in zip(net.collect_params().values(), weights or []):
        param.set_data(array(value))
    return net


def loader(n=24, batch_size=8):
    rng = np.random.RandomState(0)
    x = rng.randn(n, 4).astype("float32")
    y = rng.randint(0, 3, size=n).astype("float32")
    return gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size=batch_size)


def weights_of(net):
    return [p.data().asnumpy().copy() for p in net.collect_params().values()]


def trained(epochs=2):
    """Weights, history and accuracy after ``fit`` in the current mode."""
    start = weights_of(small_net())
    net = small_net(start)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                               layers={-1: 10, 0: 0.5})
    history = fit(net, trainer, loader(), epochs, loader(), progress=False)
    return weights_of(net), history, evaluate(net, loader())


# ----------------------------------------------------------------- the block list

def test_the_block_order_is_traced_in_numpy_mode(numpy_mode):
    # on main: the trace failed, registration order put the head first and {-1: 10} on the body
    net = HeadFirst(prefix="hf_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [path for path, _ in blocks(net)] == ["body", "head"]
    net.initialize()
    LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={-1: 10})
    assert net.head.weight.lr_mult == 10 and net.body.weight.lr_mult == 1


def test_a_zoo_model_in_numpy_mode(numpy_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        net = get_model("resnet18_v2", classes=2, unfreeze=1)
    assert [path for path, _ in blocks(net)][-1] == "output"
    out = net(mx.np.zeros((1, 3, 32, 32)))
    assert isinstance(out, mx.np.ndarray) and out.shape == (1, 2)


# ----------------------------------------------------------------- training loops

def test_fit_and_evaluate_in_numpy_mode_match_classic_mode(numpy_mode):
    npx.reset_np()
    expected, expected_history, expected_accuracy = trained()
    npx.set_np()
    got, history, accuracy = trained()
    for a, b in zip(expected, got):
        assert np.array_equal(a, b)
    assert [r["train_loss"] for r in history] == [r["train_loss"] for r in expected_history]
    assert [r["val_acc"] for r in history] == [r["val_acc"] for r in expected_history]
    assert accuracy == expected_accuracy


def test_gradual_unfreezing_in_numpy_mode(numpy_mode):
    net = small_net()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    schedule = GradualUnfreezing(trainer, every=1)
    statistics = net[1].running_mean.data().asnumpy().copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as_in_context warned at every batch
        fit(net, trainer, loader(), 2, loader(), on_epoch=schedule.on_epoch, progress=False)
    assert net[3].weight.grad_req == "write" and net[2].weight.grad_req == "write"
    assert net[0].weight.grad_req == "null"
    assert np.array_equal(net[1].running_mean.data().asnumpy(), statistics)  # bn='frozen'


def test_lr_find_in_numpy_mode_leaves_the_network_as_it_was(numpy_mode):
    net = small_net()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={-1: 10})
    before = weights_of(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # split_and_load's as_in_context warned at every batch
        result = lr_find(net, trainer, loader(), num_iter=6, progress=False)
    assert len(result.lrs) == 6 and all(np.isfinite(result.raw_losses))
    for a, b in zip(before, weights_of(net)):
        assert np.array_equal(a, b)


def test_fine_tune_in_numpy_mode(numpy_mode):
    net = small_net()
    first = weights_of(net)
    history = fine_tune(net, loader(), epochs=1, freeze_epochs=1, base_lr=0.01,
                        val_data=loader(), progress=False)
    assert len(history) == 2 and all(np.isfinite(r["train_loss"]) for r in history)
    assert not np.array_equal(first[0], weights_of(net)[0])  # the second phase trained all


def test_states_round_trip_in_numpy_mode(numpy_mode, tmp_path):
    net = small_net()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                               layers={-1: 10})
    fit(net, trainer, loader(), 1, progress=False)
    path = str(tmp_path / "np.states")
    trainer.save_states(path)
    trainer.load_states(path)
    fit(net, trainer, loader(), 1, progress=False)


# ----------------------------------------------------------------- features and input sizes

def test_cache_features_in_numpy_mode_match_classic_mode(numpy_mode):
    npx.reset_np()
    x = np.random.RandomState(1).randn(10, 4).astype("float32")
    y = np.arange(10, dtype="float32") % 3

    def cached():
        net = small_net(start)
        LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={(0, 1, 2): 0})
        return cache_features(net, gluon.data.ArrayDataset(x, y), batch_size=4)

    start = weights_of(small_net())
    expected = cached()
    npx.set_np()
    got = cached()
    assert isinstance(got.features, mx.np.ndarray) and got.split == expected.split
    assert np.array_equal(got.features.asnumpy(), expected.features.asnumpy())
    assert np.array_equal(got.labels.asnumpy(), y)
    features, labels = next(iter(got.loader(5, shuffle=False)))
    assert got.suffix(features).shape == (5, 3)


def test_check_input_size_in_numpy_mode(numpy_mode):
    net = gluon.model_zoo.vision.alexnet()  # MXNet's SqueezeNet cannot run in NumPy mode
    check_input_size(net, 224)
    with pytest.raises(ValueError, match=r"cannot take 32x32 images .*the smallest size above "
                                         r"32 that works is"):
        check_input_size(net, 32)


# ----------------------------------------------------------------- imported models

def imported_behind_a_conv(folder):
    """A trainable 1x1 convolution, then Conv -> BatchNorm -> Dense exported and imported
    as a SymbolBlock, all in NumPy mode (GluonCV's transfer-learning form)."""
    inner = nn.HybridSequential(prefix="inner_")
    with inner.name_scope():
        inner.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Flatten(),
                  nn.Dense(2, in_units=4 * 6 * 6))
    inner.initialize()
    inner.hybridize()
    inner(mx.np.ones((1, 3, 8, 8)))
    inner.export(str(folder / "m"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MXNet warns about the unused data names
        block = gluon.SymbolBlock.imports(str(folder / "m-symbol.json"), ["data"],
                                          str(folder / "m-0000.params"))
    net = nn.HybridSequential(prefix="outer_")
    with net.name_scope():
        net.add(nn.Conv2D(3, 1, in_channels=3))
    net.add(block)
    net[0].initialize()
    return net, block


def test_an_imported_model_in_numpy_mode(numpy_mode, tmp_path):
    """Issue 21 item 18, variant: tracing a network that holds a SymbolBlock in NumPy mode
    composed the trace's input into the block's own graph (MXNet 1.9.1 copies a NumPy
    symbol shallowly), then fell back to registration order; every later forward failed
    ("Unknown input to HybridBlock: __finetune_trace_input0")."""
    net, block = imported_behind_a_conv(tmp_path)
    inputs = block._cached_graph[1].list_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to registration order
        listed = [path for path, _ in blocks(net)]
    assert block._cached_graph[1].list_inputs() == inputs
    assert listed[0] == "0" and listed[-1] == "1.inner_dense0"
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"1": 0})
    statistics = {n: p.data().asnumpy().copy() for n, p in block.collect_params().items()
                  if "running" in n}
    upstream = net[0].weight.data().asnumpy().copy()
    x = mx.np.random.uniform(size=(2, 3, 8, 8))
    with mx.autograd.record():
        loss = (net(x) ** 2).sum()
    loss.backward()
    trainer.step(2)
    assert not np.array_equal(net[0].weight.data().asnumpy(), upstream)
    for name, value in statistics.items():  # bn='frozen' reached the graph's BatchNorm
        assert np.array_equal(block.collect_params()[name].data().asnumpy(), value)
