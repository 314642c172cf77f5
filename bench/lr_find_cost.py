"""lr_find's cost: ``lr_find(num_iter=n)`` vs ``n`` plain training iterations, same process.

Two workloads: the demo's conv net on 8x8 digits (batch 32, n=100: small
iterations, where lr_find's own work weighs most) and resnet18_v1 (64x64,
batch 16, n=20, BatchNorm, a frozen stem, a scheduled head, SGD with
momentum). The plain loop is record, forward, loss, backward,
``trainer.step``, read the loss, over the same batches. lr_find's time
includes everything it does: the rate computation, the snapshot of every
array, the temporary trainer, the sweep and the restore. It never stops
early here (``diverge`` is huge), so both run exactly ``n`` iterations.
Target: ratio <= 1.10. Run: ``.venv/bin/python bench/lr_find_cost.py [--repeats N]``.
"""
import argparse
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from timing import interleaved, table

from gluon_finetune import LayerwiseTrainer, OneCycle, lr_find
from gluon_finetune.demo import DigitsNet, digits_split
from gluon_finetune.recipes.snapshots import Snapshot

warnings.filterwarnings("ignore")
LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def digits(n: int):
    mx.random.seed(0)
    net = DigitsNet(classes=5)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    x, y = digits_split(0, 20)[0]
    batches = [(mx.nd.array(x[i:i + 32]), mx.nd.array(y[i:i + 32]))
               for i in range(0, 32 * (len(x) // 32), 32)]
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 1e-4})
    return net, trainer, batches, n


def resnet18(n: int):
    mx.random.seed(0)
    net = gluon.model_zoo.vision.resnet18_v1(classes=10)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    rng = np.random.RandomState(0)
    batches = [(mx.nd.array(rng.rand(16, 3, 64, 64)), mx.nd.array(rng.randint(0, 10, 16)))
               for _ in range(4)]
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 1e-4, "momentum": 0.9},
                               layers={"0:2": 0, "output": {"lr_scheduler": OneCycle(1000)}})
    return net, trainer, batches, n


def plain(net, trainer, batches, n):
    for k in range(n):
        x, y = batches[k % len(batches)]
        with autograd.record():
            loss = LOSS(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        float(loss.mean().asscalar())


def cases(net, trainer, batches, n):
    def sweep():
        result = lr_find(net, trainer, batches, LOSS, start_lr=1e-7, end_lr=1e-4, num_iter=n,
                         diverge=1e30, progress=False)
        assert len(result.lrs) == n

    return {"plain training": lambda: plain(net, trainer, batches, n),
            "lr_find": sweep,
            "snapshot + restore alone": lambda: Snapshot(net, trainer.params).restore()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rows = []
    for name, make, n in (("digits conv net", digits, 100), ("resnet18_v1 64x64", resnet18, 20)):
        net, trainer, batches, n = make(n)
        plain(net, trainer, batches, 2)  # shapes, kvstore, cached graph
        medians = interleaved(cases(net, trainer, batches, n), args.repeats, warmup=1)
        base = medians["plain training"]
        rows += [(name, case, n, m.wall * 1e3, m.wall / base.wall, m.cpu * 1e3,
                  m.cpu / base.cpu) for case, m in medians.items()]
    print(f"lr_find(num_iter=n) vs n plain iterations, median of {args.repeats} interleaved "
          f"repeats; ratio: to plain training")
    print(table(rows, ["workload", "case", "n", "wall ms", "ratio", "CPU ms", "ratio"]))


if __name__ == "__main__":
    main()
