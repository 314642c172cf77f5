"""Horovod step: LayerwiseTrainer with rules vs without, 2 workers under horovodrun.

Each worker times ``trainer.step`` (all-reduce of every gradient through Horovod,
then the update) on resnet18_v1's parameters, SGD with momentum and Adam, with
gradients set once (no forward/backward): the plain trainer (no rules, as
gluon.Trainer with the same kvstore) against per-layer rules (``layer_decay`` over
every block plus ``no_weight_decay``). Interleaved rounds, medians; rank 0 prints
the ratios (target: at most 1.05x). Run:
``.venv/bin/horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python bench/horovod_step.py``.
"""
import argparse
import warnings

import horovod.mxnet as hvd
import mxnet as mx
from mxnet import autograd, gluon
from timing import interleaved, table

from gluon_finetune import LayerwiseTrainer, combine, layer_decay, no_weight_decay

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


def trainers(optimizer, args):
    plain_net, rules_net = resnet18(), resnet18()
    rules = combine(layer_decay(rules_net, args["learning_rate"], 0.8),
                    no_weight_decay(rules_net))
    plain = LayerwiseTrainer(plain_net, optimizer, dict(args), kvstore="horovod")
    ruled = LayerwiseTrainer(rules_net, optimizer, dict(args), kvstore="horovod", layers=rules,
                             bn="frozen")
    return {"no rules": lambda: plain.step(32, ignore_stale_grad=True),
            "rules": lambda: ruled.step(32, ignore_stale_grad=True)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    repeats = parser.parse_args().repeats
    hvd.init()
    rows = []
    for optimizer, args in (("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}),
                            ("adam", {"learning_rate": 1e-3, "wd": 1e-4})):
        times = interleaved(trainers(optimizer, args), repeats, warmup=3)
        base = times["no rules"]
        for name, t in times.items():
            rows.append((optimizer, name, round(t.wall * 1e3, 2), round(t.wall / base.wall, 3),
                         round(t.cpu / base.cpu, 3)))
    if hvd.rank() == 0:
        print(f"Horovod, {hvd.size()} workers, resnet18_v1 step (ms, median of {repeats})")
        print(table(rows, ["optimizer", "trainer", "wall ms", "wall ratio", "cpu ratio"]))


if __name__ == "__main__":
    main()
