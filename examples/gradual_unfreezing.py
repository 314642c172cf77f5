"""Gradual unfreezing + discriminative rates vs plain fine-tuning, epoch by epoch.

A small conv net is pretrained on scikit-learn's digits 0-4, then fine-tuned
on digits 5-9 from a few labelled images per class, twice from the same
pretrained weights:

- plain: every layer at the same rate from the first epoch;
- gradual: rates spread geometrically from 1e-3 (first block) to 1e-2 (head)
  with ``spread``, the head alone first, one more block thawed every epoch
  (``GradualUnfreezing(every=1)``).

(Per-layer schedules combine with this: give the rules an ``lr_scheduler``
and ``GradualUnfreezing(..., restart="schedule")`` restarts a block's
schedule when it thaws.)

Prints the validation accuracy of both after every epoch.
Run: ``python examples/gradual_unfreezing.py [--epochs N] [--per-class K]``.
"""
import argparse

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune import GradualUnfreezing, LayerwiseTrainer, spread
from gluon_finetune.demo import accuracy, digits_split


class ConvDigits(gluon.HybridBlock):
    def __init__(self, classes, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Conv2D(16, 3, padding=1, in_channels=1, activation="relu"),
                              nn.Conv2D(32, 3, padding=1, in_channels=16, activation="relu"),
                              nn.MaxPool2D(2),
                              nn.Dense(64, in_units=32 * 16, activation="relu"))
            self.output = nn.Dense(classes, in_units=64)

    def hybrid_forward(self, F, x):  # noqa: N803 (Gluon's signature)
        return self.output(self.features(x.reshape((0, 1, 8, 8))))


def epoch(net, trainer, data, batch_size=16):
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(*data), batch_size=batch_size,
                                   shuffle=True)
    for x, y in loader:
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])


def pretrained_copy(source):
    net = ConvDigits(classes=5)
    net.initialize(mx.init.Xavier())
    for mine, theirs in zip(net.features.collect_params().values(),
                            source.features.collect_params().values()):
        mine.set_data(theirs.data())
    return net


def compare(epochs=6, per_class=10, seed=0):
    """Per epoch: (plain accuracy, gradual accuracy) on the held-out digits 5-9."""
    mx.random.seed(seed)
    np.random.seed(seed)
    source, train, test = digits_split(seed, per_class)
    base = ConvDigits(classes=5)
    base.initialize(mx.init.Xavier())
    base_trainer = gluon.Trainer(base.collect_params(), "adam", {"learning_rate": 3e-3})
    for _ in range(5):
        epoch(base, base_trainer, source)

    plain = pretrained_copy(base)
    plain_trainer = LayerwiseTrainer(plain, "adam", {"learning_rate": 1e-3})
    gradual = pretrained_copy(base)
    gradual_trainer = LayerwiseTrainer(gradual, "adam", {"learning_rate": 1e-3},
                                       layers=spread(gradual, 1e-3, 1e-2))
    unfreezer = GradualUnfreezing(gradual_trainer, every=1)
    history = []
    for e in range(epochs):
        unfreezer.on_epoch(e)
        epoch(plain, plain_trainer, train)
        epoch(gradual, gradual_trainer, train)
        history.append((accuracy(plain, test), accuracy(gradual, test)))
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=10)
    args = parser.parse_args(argv)
    history = compare(args.epochs, args.per_class)
    print(f"validation accuracy on digits 5-9, {args.per_class} labelled images per class")
    print("epoch  plain fine-tuning  gradual unfreezing + discriminative rates")
    for e, (plain, gradual) in enumerate(history):
        print(f"{e:5d}  {plain:17.3f}  {gradual:41.3f}")
    return history


if __name__ == "__main__":
    main()
