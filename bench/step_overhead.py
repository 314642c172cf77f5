"""Step overhead: LayerwiseTrainer.step with 5 scheduled layer groups vs gluon.Trainer.step.

resnet50_v1's parameters with gradients set (no forward/backward), in one
process: warm-up, repeats, median. Also vs "one gluon.Trainer per group", the
naive alternative. Prints ratios against gluon.Trainer.step (lower is better).
Run: ``.venv/bin/python bench/step_overhead.py [--repeats N]``.
"""
import argparse
import statistics
import time
import warnings

import mxnet as mx
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer

warnings.filterwarnings("ignore")

GROUPS = ["features.0:5", "features.5", "features.6", "features.7", "output"]


def resnet50():
    net = gluon.model_zoo.vision.resnet50_v1(classes=10)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    for p in net.collect_params().values():
        if p.grad_req != "null":
            p.grad()[:] = mx.nd.random.normal(shape=p.shape) * 1e-3
    mx.nd.waitall()
    return net


def rules():
    keys = ["0:5", "features.5", "features.6", "features.7", "output"]
    return {key: {"lr_mult": 0.1 * (i + 1),
                  "lr_scheduler": mx.lr_scheduler.CosineScheduler(max_update=10_000)}
            for i, key in enumerate(keys)}


def mark_fresh(net):
    """What backward does to each gradient: without it step() would skip every array."""
    for p in net.collect_params().values():
        if p.grad_req != "null":
            for data in p.list_data():
                data._fresh_grad = True


def timed(step, net, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        mark_fresh(net)
        step()
    mx.nd.waitall()
    times = []
    for _ in range(repeats):
        mark_fresh(net)
        start = time.perf_counter()
        step()
        mx.nd.waitall()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trainer_steps(optimizer, args, repeats):
    net = resnet50()
    stock = gluon.Trainer(net.collect_params(), optimizer, dict(args))
    ours = LayerwiseTrainer(net, optimizer, dict(args), layers=rules())
    groups = [gluon.Trainer(net.collect_params(select), optimizer, dict(args))
              for select in _group_selects(net)]

    def per_group():
        for trainer in groups:
            trainer.step(1)

    results = {
        "gluon.Trainer": timed(lambda: stock.step(1), net, repeats),
        f"LayerwiseTrainer, 5 groups ({ours.update_path})": timed(
            lambda: ours.step(1), net, repeats)}
    if optimizer == "sgd":  # the only one here with a fused multi-tensor update
        fused = LayerwiseTrainer(net, optimizer, dict(args), layers=rules(),
                                 update_path="fused")
        results["LayerwiseTrainer, 5 groups (fused, forced)"] = timed(
            lambda: fused.step(1), net, repeats)
    return {
        **results,
        "one gluon.Trainer per group": timed(per_group, net, repeats),
    }


def _group_selects(net):
    """Regexes selecting each group's parameters (what users write for the naive way)."""
    from gluon_finetune.structure import block_names
    listed = block_names(net)
    sets = [set().union(*(n for _, n in listed[:5]))] + \
        [set(n) for _, n in listed[5:]]
    return ["|".join(sorted(s)) for s in sets if s]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'optimizer':<14}{'variant':<40}{'median ms':>10}{'ratio':>8}")
    for optimizer, opt_args in (("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
                                ("adam", {"learning_rate": 1e-3})):
        results = trainer_steps(optimizer, opt_args, args.repeats)
        base = results["gluon.Trainer"]
        for variant, seconds in results.items():
            print(f"{optimizer:<14}{variant:<40}{seconds * 1e3:>10.2f}{seconds / base:>8.2f}")


if __name__ == "__main__":
    main()
