"""{"features": 0} in a BatchNorm network is more than grad_req='null': explain says so, and
bn='stats' is the setting that equals plain Gluon's grad_req='null' (d2l.ai's exercise)."""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer, explain


class Small(gluon.HybridBlock):
    """``features`` (Dense, BatchNorm, relu) and ``output``, as a zoo model names them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Dense(8, in_units=4), nn.BatchNorm(in_channels=8),
                              nn.Activation("relu"))
            self.output = nn.Dense(3, in_units=8)

    def hybrid_forward(self, f, x):
        return self.output(self.features(x))


def small(seed=0):
    mx.random.seed(seed)
    net = Small(prefix="small_")
    net.initialize(mx.init.Xavier())
    return net


def train(net, trainer, steps=3):
    rng = np.random.RandomState(0)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        x = mx.nd.array(rng.randn(8, 4) * 3 + 1)
        y = mx.nd.array(rng.randint(0, 3, size=8))
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(8)
    return [p.data().asnumpy() for p in net.collect_params().values()]


def test_explain_of_a_trainer_says_frozen_batchnorm_runs_on_running_statistics():
    # on main: no note; the table shows only grad_req ('frozen')
    trainer = LayerwiseTrainer(small(), "sgd", {"learning_rate": 0.1}, layers={"features": 0})
    notes = explain(trainer).notes
    assert len(notes) == 1
    assert notes[0].startswith("1 BatchNorm layer frozen by the rules runs on running "
                               "statistics (use_global_stats=True, bn='frozen', the default), "
                               "as at inference: freezing BatchNorm is more than "
                               "grad_req='null'")
    assert "use bn='stats'" in notes[0] and notes[0] in str(explain(trainer))
    stats = LayerwiseTrainer(small(), "sgd", {"learning_rate": 0.1}, layers={"features": 0},
                             bn="stats")
    assert explain(stats).notes == []
    limited = LayerwiseTrainer(small(), "sgd", {"learning_rate": 0.1})
    limited.set_trainable_blocks(1)  # the limit follows the trainer's bn: no note
    assert limited.block_list[-1][0] == "output" and explain(limited).notes == []


def test_explain_of_rules_on_a_network_says_it_before_training():
    net = small()
    notes = explain(net, {"features": 0}).notes
    assert len(notes) == 1 and notes[0].startswith(
        "1 BatchNorm layer frozen by these rules would run on running statistics under the "
        "default bn='frozen' (use_global_stats=True)")
    assert explain(net, {"output": 0}).notes == []  # no BatchNorm frozen: nothing to say
    net.features.collect_params().setattr("grad_req", "null")  # frozen by hand, not by a rule
    assert explain(net).notes == []


def test_bn_stats_equals_plain_gluon_grad_req_null_and_bn_frozen_does_not():
    plain = small()
    plain.features.collect_params().setattr("grad_req", "null")
    expected = train(plain, gluon.Trainer(plain.collect_params(), "sgd",
                                          {"learning_rate": 0.1}))
    for bn, same in (("stats", True), ("frozen", False)):
        net = small()
        got = train(net, LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                                          layers={"features": 0}, bn=bn))
        assert all(np.array_equal(a, b) for a, b in zip(expected, got)) is same, bn
