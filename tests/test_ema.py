"""ModelEMA: timm's ModelEmaV2 average of the trainable weights only, switched in and out
bit for bit."""
import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import batch, bn_chain
from mxnet import autograd, gluon

from gluon_finetune.recipes.ema import ModelEMA


def step(net, trainer, seed):
    x, y = batch(seed)
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()
    trainer.step(x.shape[0])


def weights(net):
    return {name: p.data().asnumpy().copy() for name, p in net.collect_params().items()}


def test_the_average_is_timms_and_leaves_frozen_weights_and_statistics_alone():
    """ema = decay * ema + (1 - decay) * w after each step, from the weights at the start
    (float32 arithmetic, as MXNet does it); BatchNorm 1 (frozen) and every running
    statistic keep their own values."""
    net = bn_chain(hybridize=True)
    for p in net[1].collect_params().values():
        p.grad_req = "null"
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    ema, decay = ModelEMA(net, decay=0.75), np.float32(0.75)
    expected = weights(net)
    for seed in range(3):
        step(net, trainer, seed)
        ema.update()
        now = weights(net)
        for name, p in net.collect_params().items():
            if p.grad_req != "null":
                expected[name] = expected[name] * decay + now[name] * (np.float32(1) - decay)
    trained = weights(net)
    with ema.average():
        averaged = weights(net)
    for name, p in net.collect_params().items():
        if p.grad_req == "null":  # frozen gamma/beta and all running statistics
            assert np.array_equal(averaged[name], trained[name]), name
        else:
            assert np.allclose(averaged[name], expected[name], rtol=0, atol=1e-7), name
    assert sorted(ema._updated) == ["0.bias", "0.weight", "3.bias", "3.weight", "4.beta",
                                    "4.gamma", "6.bias", "6.weight"]


def test_switching_back_is_bit_identical_and_training_goes_on_unchanged():
    net, twin = bn_chain(), bn_chain()
    trainers = [gluon.Trainer(n.collect_params(), "sgd", {"learning_rate": 0.1,
                                                           "momentum": 0.9}) for n in (net, twin)]
    ema = ModelEMA(net, decay=0.9)
    for seed in range(4):
        for n, t in zip((net, twin), trainers):
            step(n, t, seed)
        ema.update()
        before = weights(net)
        with ema.average():
            net(batch(9)[0])  # an evaluation with the averages
        assert all(np.array_equal(before[k], v) for k, v in weights(net).items())
    assert all(np.array_equal(a, b) for a, b in zip(weights(net).values(), weights(twin).values()))


def test_save_and_load(tmp_path):
    net = bn_chain()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    ema = ModelEMA(net, decay=0.9)
    step(net, trainer, 0)
    ema.update()
    ema.save(str(tmp_path / "ema.params"))
    other = ModelEMA(net, decay=0.9)
    other.load(str(tmp_path / "ema.params"))
    with ema.average():
        a = weights(net)
    with other.average():
        assert all(np.array_equal(a[k], v) for k, v in weights(net).items())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        other.load(str(tmp_path / "none.params"))
    mx.nd.save(str(tmp_path / "bad.params"), {"9.weight": mx.nd.zeros(2)})
    with pytest.raises(ValueError, match="unknown: \\['9.weight'\\]"):
        other.load(str(tmp_path / "bad.params"))


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="net must be a gluon.Block"):
        ModelEMA("net")
    with pytest.raises(ValueError, match="decay must be in \\(0, 1\\), got 1"):
        ModelEMA(bn_chain(), decay=1)
    deferred = gluon.nn.Dense(3)
    deferred.initialize()
    with pytest.raises(ValueError, match="must be initialised \\(and have run once\\)"):
        ModelEMA(deferred)
