"""structure.arrays.save_parameters writes Gluon's own file, byte for byte."""
import mxnet as mx
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune.structure.arrays import save_parameters


def _conv_net(ctx=None, shared=False):
    net = nn.HybridSequential()
    second = nn.Conv2D(4, 3, padding=1, in_channels=4)
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), second,
            nn.Activation("relu"))
    net.add(nn.Conv2D(4, 3, padding=1, in_channels=4, params=second.params) if shared else
            nn.Conv2D(4, 3, padding=1, in_channels=4))
    net.add(nn.Dense(3, in_units=144))
    net.initialize(mx.init.Xavier(), ctx=ctx)
    return net


def _same_bytes(net, tmp_path):
    save_parameters(net, str(tmp_path / "ours.params"))
    net.save_parameters(str(tmp_path / "gluon.params"))
    return (tmp_path / "ours.params").read_bytes() == (tmp_path / "gluon.params").read_bytes()


@pytest.mark.parametrize("forward", ["inference", "training"])
def test_the_file_is_gluons_byte_for_byte(tmp_path, forward):
    net = _conv_net()
    x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
    if forward == "training":   # a step: the weights are the optimizer's output
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
        with autograd.record():
            loss = net(x).sum()
        loss.backward()
        trainer.step(2)
    else:   # oneDNN may keep convolution weights in its own layout after inference
        net(x)
    assert _same_bytes(net, tmp_path)
    loaded = _conv_net()
    loaded.load_parameters(str(tmp_path / "ours.params"))
    assert (loaded(x) == net(x)).min() == 1


def test_shared_parameters_and_hybridized_nets(tmp_path):
    net = _conv_net(shared=True)
    net.hybridize()
    net(mx.nd.ones((1, 3, 8, 8)))
    assert _same_bytes(net, tmp_path)


def test_several_contexts_go_through_gluon(tmp_path):
    net = _conv_net(ctx=[mx.cpu(0), mx.cpu(1)])
    assert _same_bytes(net, tmp_path)


def test_numpy_mode(tmp_path):
    mx.npx.set_np()
    try:
        net = _conv_net()
        net(mx.np.ones((1, 3, 8, 8)))
        assert _same_bytes(net, tmp_path)
    finally:
        mx.npx.reset_np()


def test_deferred_parameters_fail_as_in_gluon(tmp_path):
    net = nn.Dense(3)
    net.initialize()
    with pytest.raises(mx.gluon.parameter.DeferredInitializationError):
        save_parameters(net, str(tmp_path / "x.params"))
