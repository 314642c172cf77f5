"""Horovod step: LayerwiseTrainer with rules vs without, 2 workers under horovodrun.

Each worker times ``trainer.step`` (all-reduce of every gradient through Horovod,
then the update) on resnet18_v1's parameters, SGD with momentum and Adam, with
gradients set once and marked fresh before every step, as backward would (no
forward/backward): ``gluon.Trainer`` with the same kvstore, ``LayerwiseTrainer``
without rules, and with per-layer rules (``layer_decay`` over every block plus
``no_weight_decay``). Interleaved rounds; rank 0 prints medians and, against no
rules, the ratio of the medians and the median of each round's own ratio (the
cases of a round ran back to back: a slow moment hits both). Target: rules at
most 1.05x no rules. Run:
``.venv/bin/horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python bench/horovod_step.py``.
"""
import argparse
import statistics
import warnings

import horovod.mxnet as hvd
import mxnet as mx
from mxnet import autograd, gluon
from timing import samples, table

from gluon_finetune import LayerwiseTrainer, combine, layer_decay, no_weight_decay
from gluon_finetune.trainer import HorovodKVStore

warnings.filterwarnings("ignore")


def resnet18():
    mx.random.seed(0)
    net = gluon.model_zoo.vision.resnet18_v1(classes=10)
    net.initialize(mx.init.Xavier())
    with autograd.record():  # recorded: weights stay in the default layout (see step_overhead)
        net(mx.nd.zeros((1, 3, 32, 32)))
    for p in net.collect_params().values():
        if p.grad_req != "null":
            p.grad()[:] = mx.nd.random.normal(shape=p.shape) * 1e-3
    mx.nd.waitall()
    return net


def mark_fresh(net):
    """What backward does to each gradient: without it step() would update nothing."""
    for p in net.collect_params().values():
        if p.grad_req != "null":
            for data in p.list_data():
                data._fresh_grad = True


def trainers(optimizer, args):
    """name -> (its network, one step)."""
    stock_net, plain_net, rules_net = resnet18(), resnet18(), resnet18()
    rules = combine(layer_decay(rules_net, args["learning_rate"], 0.8),
                    no_weight_decay(rules_net))
    stock = gluon.Trainer(stock_net.collect_params(), optimizer, dict(args),
                          kvstore=HorovodKVStore())
    plain = LayerwiseTrainer(plain_net, optimizer, dict(args), kvstore="horovod")
    ruled = LayerwiseTrainer(rules_net, optimizer, dict(args), kvstore="horovod", layers=rules)
    return {"gluon.Trainer": (stock_net, lambda: stock.step(32)),
            "no rules": (plain_net, lambda: plain.step(32)),
            "rules": (rules_net, lambda: ruled.step(32))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    repeats = parser.parse_args().repeats
    hvd.init()
    rows = []
    for optimizer, args in (("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}),
                            ("adam", {"learning_rate": 1e-3, "wd": 1e-4})):
        cases = trainers(optimizer, args)
        times = samples({name: step for name, (_, step) in cases.items()}, repeats, warmup=3,
                        before=lambda name, cases=cases: mark_fresh(cases[name][0]))
        rows += [(optimizer, name, *_ratios(t, times["no rules"])) for name, t in times.items()]
    if hvd.rank() == 0:
        print(f"Horovod, {hvd.size()} workers, resnet18_v1 step, {repeats} interleaved rounds; "
              f"ratios to no rules")
        print(table(rows, ["optimizer", "trainer", "wall ms", "ratio", "paired", "CPU ms",
                           "ratio", "paired"]))


def _ratios(mine, base):
    """For wall then CPU time: the median in ms, the ratio of the medians, the median of
    each round's own ratio."""
    out = []
    for k in (0, 1):
        ours, theirs = [t[k] for t in mine], [t[k] for t in base]
        out += [round(statistics.median(ours) * 1e3, 2),
                round(statistics.median(ours) / statistics.median(theirs), 3),
                round(statistics.median(o / b for o, b in zip(ours, theirs)), 3)]
    return out


if __name__ == "__main__":
    main()
