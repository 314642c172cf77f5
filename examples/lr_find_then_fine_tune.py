"""Find a learning rate with ``lr_find``, then ``fine_tune`` with it (fastai's workflow).

The demo's small conv net is pretrained on scikit-learn's digits 0-4 and gets
a new head for digits 5-9, learnt from a few labelled images per class.

1. ``lr_find`` on the head alone (the first phase of ``fine_tune``), SGD with
   momentum as ``fine_tune`` uses it: the base rate grows from 1e-5 to 10
   over 100 batches; the plot goes to ``--out``. The network and the trainer
   are bit-identical afterwards (checked and printed).
2. ``fine_tune`` from the same pretrained weights twice: at the suggested
   base rate and at ``fine_tune``'s default (2e-3); validation accuracy of
   each on the other digits 5-9, per seed and the mean over ``--seeds``.

Run: ``python examples/lr_find_then_fine_tune.py [--seeds N] [--per-class K]
[--epochs N] [--num-iter N] [--out docs/lr_find_digits.png]``.
"""
import argparse

import mxnet as mx
import numpy as np

from gluon_finetune import LayerwiseTrainer, evaluate, fine_tune, lr_find
from gluon_finetune.demo import digits_split, loader, pretrain, transferred


def arrays(net):
    mx.nd.waitall()
    return [p.data().asnumpy().copy() for p in net.collect_params().values()]


def find_rate(base, train, num_iter, seed):
    """The range test on the head alone; (result, network and trainer left as they were)."""
    net = transferred(base, seed)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 2e-3, "momentum": 0.9})
    trainer.set_trainable_blocks(1)
    before, rate = arrays(net), trainer.learning_rate
    result = lr_find(net, trainer, loader(train, shuffle=True), start_lr=1e-5, end_lr=10.0,
                     num_iter=num_iter, progress=False)
    kept = all(np.array_equal(a, b) for a, b in zip(before, arrays(net))) and \
        trainer.learning_rate == rate and trainer.optimizer.num_update == 0
    return result, kept


def tuned_accuracy(base, train, val, base_lr, epochs, seed):
    net = transferred(base, seed)
    np.random.seed(seed)
    fine_tune(net, loader(train, shuffle=True), epochs, base_lr=base_lr, progress=False)
    return evaluate(net, loader(val, 256))


def run(seed, per_class, epochs, num_iter):
    """One seed: the range test, then fine_tune at the suggestion and at the default."""
    mx.random.seed(seed)
    np.random.seed(seed)
    source, train, val = digits_split(seed, per_class)
    base = pretrain(source, seed=seed, progress=False)
    result, kept = find_rate(base, train, num_iter, seed)
    rates = {"suggested": result.suggestion, "default": 2e-3}
    accuracy = {name: tuned_accuracy(base, train, val, lr, epochs, seed)
                for name, lr in rates.items()}
    return result, kept, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--num-iter", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default="lr_find_digits.png", help="the first seed's plot")
    args = parser.parse_args(argv)
    runs = [run(seed, args.per_class, args.epochs, args.num_iter) for seed in range(args.seeds)]
    runs[0][0].plot(args.out, title="lr_find: the digits net's new head (SGD, momentum 0.9)")
    print(f"wrote {args.out}\nseed  suggestion  kept  val acc at suggestion  at default 2e-3")
    for seed, (result, kept, accuracy) in enumerate(runs):
        print(f"{seed:4d}  {result.suggestion:10.3g}  {str(kept):>4}  "
              f"{accuracy['suggested']:21.3f}  {accuracy['default']:15.3f}")
    means = {name: float(np.mean([acc[name] for _, _, acc in runs]))
             for name in ("suggested", "default")}
    print(f"mean                    {means['suggested']:21.3f}  {means['default']:15.3f}")
    return {"runs": runs, "means": means}


if __name__ == "__main__":
    main()
