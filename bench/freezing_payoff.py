"""Freezing payoff: what a training iteration costs with more or less of the network frozen.

resnet18_v1 and resnet50_v1 (random init), batch 16, hybridized, SGD with
momentum; one iteration = recorded forward, loss, backward, ``step``:

- full fine-tune (nothing frozen)
- last stage + head trainable (``get_model(..., granularity="stage", unfreeze=2)``)
- head only (``unfreeze=1``)
- naive freeze: everything trainable, ``lr_mult=0`` on all but the head in a
  ``gluon.Trainer``, so the full backward still runs
- recorded forward only (no backward, no step) of the full and the head-only net
- inference forward of the head-only net

All in one process, interleaved, warm-up, median. Ratios: to the full
fine-tune, and to the recorded forward of the same head-only net.
Run: ``.venv/bin/python bench/freezing_payoff.py [--repeats N] [--size S]``.
"""
import argparse
import warnings

import mxnet as mx
from mxnet import autograd, gluon
from timing import interleaved, table

from gluon_finetune import LayerwiseTrainer, get_model

warnings.filterwarnings("ignore")
BATCH, CLASSES = 16, 10
SGD = {"learning_rate": 0.01, "momentum": 0.9}
LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def model(name, **kwargs):
    net = get_model(name, classes=CLASSES, **kwargs)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def iteration(net, trainer, x, y):
    def run():
        with autograd.record():
            loss = LOSS(net(x), y)
        loss.backward()
        trainer.step(BATCH)
    return run


def recorded_forward(net, x):
    def run():
        with autograd.record():
            net(x)
    return run


def naive(name):
    """Everything trainable; lr_mult=0 on all but the head: no update, full backward."""
    net = model(name)
    head = {p.name for p in net.output.collect_params().values()}
    for p in net.collect_params().values():
        if p.name not in head:
            p.lr_mult = 0.0
    return net, gluon.Trainer(net.collect_params(), "sgd", dict(SGD))


def trained(net, x, y):
    return iteration(net, LayerwiseTrainer(net, "sgd", dict(SGD)), x, y)


def cases(name, x, y):
    """One network per case: oneDNN keeps weights in a layout per mode (training or
    inference), so running both modes on one network would make each pay for the other."""
    inference = model(name, unfreeze=1)
    return {
        "full fine-tune": trained(model(name), x, y),
        "last stage + head (unfreeze=2, stage)": trained(
            model(name, granularity="stage", unfreeze=2), x, y),
        "head only (unfreeze=1)": trained(model(name, unfreeze=1), x, y),
        "naive freeze (lr_mult=0, full backward)": iteration(*naive(name), x, y),
        "recorded forward, full net": recorded_forward(model(name), x),
        "recorded forward, head-only net": recorded_forward(model(name, unfreeze=1), x),
        "inference forward, head-only net": lambda: inference(x),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224, help="image side")
    parser.add_argument("--models", default="resnet18_v1,resnet50_v1")
    args = parser.parse_args(argv)
    x = mx.nd.random.uniform(shape=(BATCH, 3, args.size, args.size))
    y = mx.nd.array([i % CLASSES for i in range(BATCH)])
    rows = []
    for name in args.models.split(","):
        medians = interleaved(cases(name, x, y), args.repeats, warmup=1)
        full = medians["full fine-tune"]
        forward = medians["recorded forward, head-only net"]
        rows += [(name, variant, m.wall * 1e3, m.cpu * 1e3, m.cpu / full.cpu,
                  m.cpu / forward.cpu) for variant, m in medians.items()]
    print(f"batch {BATCH}, {args.size}x{args.size}, hybridized, median of {args.repeats} "
          f"interleaved repeats; ratios of CPU time")
    print(table(rows, ["model", "iteration", "wall ms", "CPU ms", "to full",
                       "to recorded fwd (head-only net)"]))


if __name__ == "__main__":
    main()
