"""Gradual unfreezing + discriminative rates vs plain fine-tuning, epoch by epoch.

The demo's small conv net is pretrained on scikit-learn's digits 0-4, then
fine-tuned on digits 5-9 from a few labelled images per class, twice from the
same pretrained weights:

- plain: every layer at the same rate from the first epoch;
- gradual: rates spread geometrically from 1e-3 (first block) to 1e-2 (head)
  with ``spread``, the head alone first, one more block thawed every epoch
  (``GradualUnfreezing(every=1)``).

(Per-layer schedules combine with this: give the rules an ``lr_scheduler``
and ``GradualUnfreezing(..., restart="schedule")`` restarts a block's
schedule when it thaws; ``make demo`` does.)

Prints the validation accuracy of both after every epoch.
Run: ``python examples/gradual_unfreezing.py [--epochs N] [--per-class K]``.
"""
import argparse

import mxnet as mx
import numpy as np

from gluon_finetune import GradualUnfreezing, LayerwiseTrainer, evaluate, fit, spread
from gluon_finetune.demo import digits_split, loader, pretrain, transferred


def compare(epochs=6, per_class=10, seed=0):
    """Per epoch: (plain accuracy, gradual accuracy) on the held-out digits 5-9."""
    mx.random.seed(seed)
    np.random.seed(seed)
    source, train, test = digits_split(seed, per_class)
    base = pretrain(source, seed=seed, progress=False)
    plain = transferred(base, seed)
    plain_trainer = LayerwiseTrainer(plain, "adam", {"learning_rate": 1e-3})
    gradual = transferred(base, seed)
    gradual_trainer = LayerwiseTrainer(gradual, "adam", {"learning_rate": 1e-3},
                                       layers=spread(gradual, 1e-3, 1e-2))
    unfreezer = GradualUnfreezing(gradual_trainer, every=1)
    train_loader, test_loader = loader(train, shuffle=True), loader(test, 256)
    history = []
    for e in range(epochs):
        unfreezer.on_epoch(e)
        fit(plain, plain_trainer, train_loader, 1, progress=False)
        fit(gradual, gradual_trainer, train_loader, 1, progress=False)
        history.append((evaluate(plain, test_loader), evaluate(gradual, test_loader)))
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
