"""Step overhead: LayerwiseTrainer.step with 5 scheduled layer groups vs gluon.Trainer.step.

resnet50_v1's parameters with gradients set (no forward/backward), SGD with
momentum and Adam, in one process: warm-up, interleaved repeats, median.
Also vs "one gluon.Trainer per group" (the naive alternative, each with its
own rate and scheduler). Prints ratios against gluon.Trainer.step (lower is
better) and the update path each row measured.
Run: ``.venv/bin/python bench/step_overhead.py [--repeats N]``.
"""
import argparse
import warnings

import mxnet as mx
from mxnet import autograd, gluon
from timing import STEP_HEADERS, interleaved, step_rows, table

from gluon_finetune import LayerwiseTrainer, block_params

warnings.filterwarnings("ignore")

# stem + stage 1, stages 2, 3, 4, head: five groups, each with its own rate and schedule
GROUPS = [("features.0", "features.1", "features.4"), ("features.5",), ("features.6",),
          ("features.7",), ("output",)]
MAX_UPDATE = 10_000


def resnet50():
    net = gluon.model_zoo.vision.resnet50_v1(classes=10)
    net.initialize(mx.init.Xavier())
    # recorded, as in training: an inference forward would leave the convolution weights
    # in oneDNN's layout, and every update would then convert them first
    with autograd.record():
        net(mx.nd.zeros((1, 3, 32, 32)))
    for p in net.collect_params().values():
        if p.grad_req != "null":
            p.grad()[:] = mx.nd.random.normal(shape=p.shape) * 1e-3
    mx.nd.waitall()
    return net


def mult(i: int) -> float:
    return 0.1 * (i + 1)


def rules():
    return {group: {"lr_mult": mult(i),
                    "lr_scheduler": mx.lr_scheduler.CosineScheduler(max_update=MAX_UPDATE)}
            for i, group in enumerate(GROUPS)}


def per_group_trainers(net, optimizer, args):
    """What users write today: one gluon.Trainer per group, each with its own scheduler."""
    trainers = []
    for i, group in enumerate(GROUPS):
        params = [p for path in group for p in block_params(net, path) if p.grad_req != "null"]
        lr = args["learning_rate"] * mult(i)
        trainers.append(gluon.Trainer(params, optimizer, dict(
            args, learning_rate=lr,
            lr_scheduler=mx.lr_scheduler.CosineScheduler(max_update=MAX_UPDATE, base_lr=lr))))
    return trainers


def mark_fresh(net):
    """What backward does to each gradient: without it step() would skip every array."""
    for p in net.collect_params().values():
        if p.grad_req != "null":
            for data in p.list_data():
                data._fresh_grad = True


def path_of(trainer) -> str:
    return "fused" if trainer._optimizer.aggregate_num > 0 else "per_array"


def cases(optimizer, args):
    net = resnet50()
    stock = gluon.Trainer(net.collect_params(), optimizer, dict(args))
    ours = LayerwiseTrainer(net, optimizer, dict(args), layers=rules())
    rows = {("gluon.Trainer", path_of(stock)): lambda: stock.step(1),
            ("LayerwiseTrainer, 5 groups, auto", ours.update_path): lambda: ours.step(1)}
    if optimizer == "sgd":  # the only one here with both paths
        fused = LayerwiseTrainer(net, optimizer, dict(args), layers=rules(),
                                 update_path="fused")
        rows[("LayerwiseTrainer, 5 groups, forced", "fused")] = lambda: fused.step(1)
    groups = per_group_trainers(net, optimizer, args)

    def naive():
        for trainer in groups:
            trainer.step(1)

    rows[("one gluon.Trainer per group", path_of(groups[0]))] = naive
    return net, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args(argv)
    out = []
    for optimizer, opt_args in (("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
                                ("adam", {"learning_rate": 1e-3})):
        net, rows = cases(optimizer, opt_args)
        by_name = {name: fn for (name, _), fn in rows.items()}
        medians = interleaved(by_name, args.repeats, warmup=2,
                              before=lambda _name, net=net: mark_fresh(net))
        out += step_rows(optimizer, rows, medians)
    print(f"step on resnet50_v1's parameters, median of {args.repeats} interleaved repeats; "
          f"ratio: to gluon.Trainer.step")
    print(table(out, STEP_HEADERS))


if __name__ == "__main__":
    main()
