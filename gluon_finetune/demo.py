"""``make demo``: a small, real transfer-learning run on scikit-learn's 8x8 digits.

A network is pretrained on digits 0-4; its head is replaced and it is
fine-tuned on digits 5-9 from 20 labelled images per class with
``LayerwiseTrainer``: the first layer frozen, the middle one at a tenth of
the rate, the new head at the full rate. It prints the rule table, checks
that the frozen layer is bit-identical to the pretrained one, and reports
test accuracy. Runs offline in a few seconds.
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from .report import explain
from .trainer import LayerwiseTrainer


def digits_split(seed: int = 0, per_class: int = 20):
    """(pretrain, finetune-train, finetune-test) arrays from sklearn's digits."""
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("float32")
    rng = np.random.RandomState(seed)
    source = y < 5
    target = np.flatnonzero(~source)
    rng.shuffle(target)
    few = np.concatenate([target[y[target] == c][:per_class] for c in range(5, 10)])
    test = np.setdiff1d(target, few)
    return (x[source], y[source]), (x[few], y[few] - 5), (x[test], y[test] - 5)


class DigitNet(gluon.HybridBlock):
    """features (two hidden layers) + output: the layout of the model-zoo nets."""

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Dense(64, activation="relu", in_units=64),
                              nn.Dense(32, activation="relu", in_units=64))
            self.output = nn.Dense(classes, in_units=32)

    def hybrid_forward(self, F, x):  # noqa: N803 (Gluon's own signature)
        return self.output(self.features(x))


def fit(net, trainer, data, epochs: int, batch_size: int = 32) -> None:
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(*data), batch_size=batch_size,
                                   shuffle=True)
    for _ in range(epochs):
        for x, y in loader:
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(x.shape[0])


def accuracy(net, data) -> float:
    x, y = data
    predicted = net(mx.nd.array(x)).argmax(axis=1).asnumpy()
    return float((predicted == y).mean())


def finetune(pretrained: DigitNet, train, epochs: int = 30):
    """A new 5-class head on the pretrained features, trained with per-layer rules."""
    net = DigitNet(classes=5)
    net.initialize(mx.init.Xavier())
    for mine, theirs in zip(net.features, pretrained.features):
        mine.weight.set_data(theirs.weight.data())
        mine.bias.set_data(theirs.bias.data())
    layers = {"features.0": 0, "features.1": 0.1, "output": 1.0}
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                               layers=layers)
    fit(net, trainer, train, epochs)
    return net, trainer


def main() -> None:
    mx.random.seed(0)
    np.random.seed(0)
    source, train, test = digits_split()
    print(f"pretraining on digits 0-4 ({len(source[0])} images) ...")
    base = DigitNet(classes=5)
    base.initialize(mx.init.Xavier())
    fit(base, gluon.Trainer(base.collect_params(), "sgd",
                            {"learning_rate": 0.1, "momentum": 0.9}), source, epochs=10)
    print(f"fine-tuning on digits 5-9 with {len(train[0])} labelled images\n")
    tuned, trainer = finetune(base, train)
    print(explain(trainer))
    same = np.array_equal(tuned.features[0].weight.data().asnumpy(),
                          base.features[0].weight.data().asnumpy())
    print(f"\nfrozen layer features.0 bit-identical to the pretrained one: {same}")
    print(f"test accuracy on digits 5-9 ({len(test[0])} images): {accuracy(tuned, test):.3f}")


if __name__ == "__main__":
    main()
