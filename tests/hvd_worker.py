"""One process of the Horovod tests: ``horovodrun -np 2 ... python hvd_worker.py OUT``, or
``python hvd_worker.py OUT --single`` for the one-process run on the global batch.

Each rank starts from its own random weights (rank 0's must win), takes its half of
every global batch, and trains with rules: block 0 frozen by a rule, a schedule on the
head, everything else at half the rate, the last two blocks only for three steps and
then a thaw; rank 0 writes a states file mid-run that every rank loads back. The
final weights go to OUT/<run>_<optimizer>.npz.
"""
import os
import sys

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer

GLOBAL_BATCH, STEPS, THAW_AT, SAVE_AT = 8, 6, 3, 4
OPTIMIZERS = {"sgd": {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4},
              "adam": {"learning_rate": 0.01}}


def build(seed):
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Dense(8, in_units=4, activation="tanh"), nn.Dense(8, activation="tanh"),
            nn.Dense(6, in_units=8, activation="tanh"), nn.Dense(3, in_units=6))
    net.initialize(mx.init.Xavier())
    return net


def global_batch(step):
    rng = np.random.RandomState(100 + step)
    return rng.randn(GLOBAL_BATCH, 4).astype("float32"), rng.randint(0, 3, GLOBAL_BATCH)


def train(optimizer, out, rank, size, kvstore):
    net = build(seed=1 + rank)  # different on every rank: the broadcast must fix it
    trainer = LayerwiseTrainer(
        net, optimizer, dict(OPTIMIZERS[optimizer]), kvstore=kvstore,
        layers={"*": 0.5, 0: 0, -1: {"lr_scheduler": mx.lr_scheduler.FactorScheduler(2, 0.5)}})
    initial = net[0].weight.data().asnumpy().copy()  # after the broadcast: rank 0's
    trainer.set_trainable_blocks(2)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    share = GLOBAL_BATCH // size
    for step in range(STEPS):
        if step == THAW_AT:
            trainer.set_trainable_blocks(None)
        if step == SAVE_AT:
            states = os.path.join(out, f"mid_{optimizer}.states")
            trainer.save_states(states)
            trainer.load_states(states)
        x, y = global_batch(step)
        mine = slice(rank * share, (rank + 1) * share)
        x, y = nd.array(x[mine]), nd.array(y[mine])
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(share)
    arrays = {f"p{i}": p.data().asnumpy() for i, p in enumerate(net.collect_params().values())}
    arrays["block0_initial"] = initial
    arrays["block0_final"] = net[0].weight.data().asnumpy()
    return arrays


def diverge():
    """Rank 1 changes the trainable blocks alone: both ranks must raise, not hang."""
    import horovod.mxnet as hvd
    hvd.init()
    trainer = LayerwiseTrainer(build(1), "sgd", {"learning_rate": 0.1}, kvstore="horovod")
    trainer.set_trainable_blocks(1 if hvd.rank() == 1 else 2)


def main(out, single):
    if out == "--diverge":
        return diverge()
    if single:
        rank, size, kvstore, run = 0, 1, "device", "single"
    else:
        import horovod.mxnet as hvd
        hvd.init()
        rank, size, kvstore, run = hvd.rank(), hvd.size(), "horovod", f"rank{hvd.rank()}"
    for optimizer in OPTIMIZERS:
        np.savez(os.path.join(out, f"{run}_{optimizer}.npz"),
                 **train(optimizer, out, rank, size, kvstore))


if __name__ == "__main__":
    main(sys.argv[1], "--single" in sys.argv[2:])
