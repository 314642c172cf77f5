"""LeNet-style transfer: a new head on a pretrained trunk, only the head training.

A LeNet-style conv net is trained on scikit-learn's digits 0-4. Its
classifier is then replaced by a new one for digits 5-9 and trained with the
rules ``{"output": 1, "*": None}``: the new head at the full rate, everything
else frozen (``None`` and ``0`` both freeze). The more specific rule wins, so
the order of the two does not matter.

The script checks that every trunk weight is bit-identical to the pretrained
one, that the head moved, and reports the accuracy on held-out digits 5-9.
Run: ``python examples/lenet_transfer.py [--epochs N] [--per-class K]``.
"""
import argparse

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer, evaluate, explain, fit
from gluon_finetune.demo import digits_split, loader


class LeNet(gluon.HybridBlock):
    """conv-pool-conv-pool-dense trunk (``features``) and a classifier (``output``)."""

    def __init__(self, classes, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Conv2D(8, 3, padding=1, in_channels=1, activation="tanh"),
                              nn.MaxPool2D(2),
                              nn.Conv2D(16, 3, padding=1, in_channels=8, activation="tanh"),
                              nn.MaxPool2D(2),
                              nn.Dense(64, in_units=16 * 4, activation="tanh"))
            self.output = nn.Dense(classes, in_units=64)

    def hybrid_forward(self, F, x):  # noqa: N803 (Gluon's signature)
        return self.output(self.features(x.reshape((0, 1, 8, 8))))


def new_head(net, classes):
    """Replace the classifier in place (the trunk keeps its trained weights)."""
    with net.name_scope():
        net.output = nn.Dense(classes, in_units=64)
    net.output.initialize(mx.init.Xavier())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs on the new task")
    parser.add_argument("--per-class", type=int, default=20, help="labelled images per class")
    args = parser.parse_args(argv)
    mx.random.seed(0)
    np.random.seed(0)
    source, train, test = digits_split(0, args.per_class)
    net = LeNet(classes=5)
    net.initialize(mx.init.Xavier())
    fit(net, gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 3e-3}),
        loader(source, 32, shuffle=True), 5, progress=False)
    mx.nd.waitall()
    trunk = {p.name: p.data().asnumpy().copy() for p in net.features.collect_params().values()}

    new_head(net, 5)
    head_before = net.output.weight.data().asnumpy().copy()
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 1e-2},
                               layers={"output": 1, "*": None})
    print(explain(trainer))
    fit(net, trainer, loader(train, 16, shuffle=True), args.epochs, progress=False)
    mx.nd.waitall()
    trunk_kept = all(np.array_equal(p.data().asnumpy(), trunk[p.name])
                     for p in net.features.collect_params().values())
    head_moved = not np.array_equal(net.output.weight.data().asnumpy(), head_before)
    accuracy = evaluate(net, loader(test, 256))
    print(f"\ntrunk bit-identical to the pretrained one: {trunk_kept}")
    print(f"new head trained: {head_moved}")
    print(f"accuracy on held-out digits 5-9 ({len(test[0])} images): {accuracy:.3f}")
    return {"trunk_kept": trunk_kept, "head_moved": head_moved, "accuracy": accuracy}


if __name__ == "__main__":
    main()
