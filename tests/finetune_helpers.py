"""Small networks and measuring tools shared by the trainer tests."""
import math

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn


class HeadFirst(gluon.HybridBlock):
    """Registers the head before the body, uses the body first."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.head = nn.Dense(2, in_units=4)
            self.body = nn.Dense(4, in_units=3)

    def hybrid_forward(self, f, x):
        return self.head(self.body(x))


class ThreeLayers(gluon.Block):
    """The RFC's recurrent-style seed case: attributes l1, l2, l3."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.l1 = nn.Dense(6, in_units=4, activation="tanh")
            self.l2 = nn.Dense(5, in_units=6, activation="tanh")
            self.l3 = nn.Dense(3, in_units=5)

    def forward(self, x):
        return self.l3(self.l2(self.l1(x)))


def three_layers(seed=0, ctx=None):
    mx.random.seed(seed)
    net = ThreeLayers()
    net.initialize(mx.init.Xavier(), ctx=ctx or mx.cpu())
    return net


def bn_chain(seed=0, hybridize=False, ctx=None):
    """Dense -> BN -> Dense -> BN -> Dense: BN layers sit behind trainable layers.
    Blocks: 0 Dense, 1 BN, 2 Dense (path "3"), 3 BN, 4 the head (path "6")."""
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Dense(8, in_units=4), nn.BatchNorm(in_channels=8), nn.Activation("relu"),
            nn.Dense(8, in_units=8), nn.BatchNorm(in_channels=8), nn.Activation("relu"),
            nn.Dense(3, in_units=8))
    net.initialize(mx.init.Xavier(), ctx=ctx)
    if hybridize:
        net.hybridize()
    return net


def batch(seed=0, n=8, features=4, ctx=None):
    rng = np.random.RandomState(seed)
    x = nd.array(rng.randn(n, features), ctx=ctx or mx.cpu())
    y = nd.array(rng.randint(0, 3, size=n), ctx=ctx or mx.cpu())
    return x, y


def four_blocks(seed=0):
    """Four Dense layers in a HybridSequential: blocks 0..3, the head last."""
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Dense(8, in_units=4, activation="tanh"), nn.Dense(8, in_units=8, activation="tanh"),
            nn.Dense(6, in_units=8, activation="tanh"), nn.Dense(3, in_units=6))
    net.initialize(mx.init.Xavier())
    return net


def trainable_names(net):
    return {p.name for p in net.collect_params().values() if p.grad_req != "null"}


LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def train_batches(net, trainer, batches):
    """The plain Gluon loop over ``(x, y)`` batches: record, backward, step."""
    for x, y in batches:
        with autograd.record():
            loss = LOSS(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])


def train_step(net, trainer, seed, n=8):
    train_batches(net, trainer, [batch(seed, n)])


def sgd_step(net, trainer, seed, n=8, params=None):
    """One step on ``batch(seed, n)``: weights before, gradients, weights after."""
    params = params or dict(net.collect_params().items())
    x, y = batch(seed, n)
    with autograd.record():
        loss = LOSS(net(x), y)
    loss.backward()
    before = {k: p.data().asnumpy().copy() for k, p in params.items()}
    grads = {k: p.grad().asnumpy().copy() for k, p in params.items() if p.grad_req != "null"}
    trainer.step(n)
    after = {k: p.data().asnumpy() for k, p in params.items()}
    return before, grads, after


def snapshot(net):
    """name-independent copy of every parameter (structural order)."""
    return [p.data().asnumpy().copy() for p in net.collect_params().values()]


def weights(net):
    return {name: p.data().asnumpy().copy() for name, p in net.collect_params().items()}


def observed_lr(before, after, grad, rescale):
    """The rate SGD used: delta = -lr * rescale * grad (elements with a usable gradient)."""
    g = grad.astype(np.float64) * rescale
    mask = np.abs(g) > 1e-4
    assert mask.any(), "no usable gradient to measure a rate from"
    lrs = -(after.astype(np.float64) - before.astype(np.float64))[mask] / g[mask]
    return float(np.median(lrs))


def sgd_rates(net, trainer, steps, n=8, params=None):
    """Per step, per parameter name: the learning rate the update actually used."""
    out = []
    for step in range(steps):
        before, grads, after = sgd_step(net, trainer, step, n, params)
        out.append({k: observed_lr(before[k], after[k], grads[k], 1.0 / n) for k in grads})
    return out


def straddle_name_counter():
    """Push Gluon's global ``dense`` name counter to just below a power of ten, so that
    the next unscoped layers are named e.g. dense98, dense99, dense100: sorted names
    (gluon.Trainer's parameter order) then differ from the layer order."""
    current = int(nn.Dense(1).prefix[len("dense"):-1])
    target = 10 ** len(str(current + 3)) - 2
    while current < target - 1:
        current = int(nn.Dense(1).prefix[len("dense"):-1])


def ramp(t):
    """A plain (module-level, picklable) schedule."""
    return 0.01 * min(t, 5)


def cosine(t):
    """A plain callable schedule: absolute rate at update t."""
    return 0.05 * (1 + math.cos(math.pi * min(t, 10) / 10)) / 2


def exported_symbolblock(folder, prefix="exp_"):
    """Conv -> BatchNorm -> Dense, exported and loaded back as a ``gluon.SymbolBlock``
    (inputs: 3x8x8 images)."""
    net = nn.HybridSequential(prefix=prefix)
    with net.name_scope():
        net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Flatten(),
                nn.Dense(2, in_units=4 * 6 * 6))
    net.initialize()
    net.hybridize()
    net(nd.ones((1, 3, 8, 8)))
    net.export(str(folder / "m"))
    return gluon.SymbolBlock.imports(str(folder / "m-symbol.json"), ["data"],
                                     str(folder / "m-0000.params"))


def tiny_convnet(seed=0, classes=2):
    """Conv -> BatchNorm -> ReLU -> global pooling -> Dense: an image classifier in
    milliseconds (blocks 0 conv, 1 BatchNorm, 2 the head at path "4")."""
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Activation("relu"),
            nn.GlobalAvgPool2D(), nn.Dense(classes, in_units=4))
    net.initialize(mx.init.Xavier())
    return net


def exported_every_norm(folder, prefix="norms_"):
    """Every normalization layer MXNet 1.9.1 has (BatchNorm, BatchNormReLU, GroupNorm,
    InstanceNorm, LayerNorm) between convolutions, exported and loaded back as a
    ``gluon.SymbolBlock`` (inputs: 3x8x8 images). Returns the block and the names of its
    bias and normalization parameters (running statistics included)."""
    net = nn.HybridSequential(prefix=prefix)
    with net.name_scope():
        net.add(nn.Conv2D(4, 3, in_channels=3, use_bias=False), nn.BatchNorm(in_channels=4),
                nn.Conv2D(4, 1, in_channels=4), nn.BatchNormReLU(in_channels=4),
                nn.GroupNorm(2), nn.InstanceNorm(in_channels=4), nn.LayerNorm(in_channels=6),
                nn.Flatten(), nn.Dense(3, in_units=4 * 6 * 6))
    net.initialize()
    net.hybridize()
    net(nd.ones((1, 3, 8, 8)))
    net.export(str(folder / "norms"))
    names = {n for n in net.collect_params()
             if n.endswith(("_gamma", "_beta", "_running_mean", "_running_var", "_bias"))}
    return gluon.SymbolBlock.imports(str(folder / "norms-symbol.json"), ["data"],
                                     str(folder / "norms-0000.params")), names


# A small GluonNLP BERT (get_model("bert_12_768_12", vocab=..., **SMALL_BERT)) and its words
SMALL_BERT = {"units": 16, "embed_size": 16, "hidden_size": 32, "num_heads": 2, "max_length": 16}
BERT_WORDS = "the a movie film good bad great awful plot acting".split()
