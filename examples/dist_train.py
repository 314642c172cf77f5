"""Per-layer rules on MXNet's parameter server: run it through the launcher.

    gluon-finetune launch -n 2 -s 1 -- python examples/dist_train.py
    gluon-finetune launch -n 2 -s 1 -- python examples/dist_train.py --update-on-kvstore 0

Every worker trains on its own shard of a synthetic task, with the first layer
frozen, the second on its own schedule and the head at ten times the rate,
then prints its loss and a checksum of its weights (equal on all workers).
"""
import mxnet as mx  # noqa: I001  first: scheduler and servers run their loop inside this import

import argparse
import sys

import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer


def build_net():
    net = nn.HybridSequential()
    net.add(nn.Dense(32, in_units=10, activation="relu"),
            nn.Dense(32, in_units=32, activation="relu"),
            nn.Dense(2, in_units=32))
    net.initialize(mx.init.Xavier())  # shapes known: the trainer broadcasts rank 0's weights
    return net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvstore", default="dist_sync")
    parser.add_argument("--update-on-kvstore", type=int, choices=(0, 1), default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32, help="global batch size")
    args = parser.parse_args(argv)

    kv = mx.kv.create(args.kvstore)
    net = build_net()
    trainer = LayerwiseTrainer(
        net, "sgd", {"learning_rate": 0.05, "momentum": 0.9}, kvstore=kv,
        update_on_kvstore=bool(args.update_on_kvstore),
        layers={"0": 0,                                   # frozen
                "1": {"learning_rate": 0.02,              # its own schedule
                      "lr_scheduler": mx.lr_scheduler.FactorScheduler(step=5, factor=0.5)},
                "2": 10.0})                               # ten times the base rate
    frozen = net[0].weight.data().asnumpy().copy()
    rng = np.random.RandomState(kv.rank)                  # each worker its own shard
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    shard = args.batch // kv.num_workers
    for step in range(args.steps):
        if step == args.steps // 2:
            trainer.set_learning_rate(0.02)               # reaches the servers too
        x = rng.randn(shard, 10)
        x_nd, y_nd = nd.array(x), nd.array((x[:, 0] + x[:, 1] > 0).astype("float32"))
        with autograd.record():
            loss = loss_fn(net(x_nd), y_nd)
        loss.backward()
        trainer.step(args.batch)                          # the global batch
    checksum = sum(float(p.data().sum().asscalar()) for p in net.collect_params().values())
    print(f"worker {kv.rank}/{kv.num_workers}: loss {loss.mean().asscalar():.4f}, "
          f"weights checksum {checksum:.6f}, frozen layer unchanged: "
          f"{np.array_equal(net[0].weight.data().asnumpy(), frozen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
