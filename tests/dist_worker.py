"""One process of the distributed tests (started by ``gluon_finetune.cli.launch``).

``python dist_worker.py OUT_DIR KVSTORE UPDATE_ON_KVSTORE SCENARIO`` trains a
small net with per-layer rules on this worker's half of each global batch and
writes ``OUT_DIR/worker<rank>.npz`` (initial and final weights). The tests
import the same functions for the single-process reference run.

Scheduler and servers run this file too: MXNet's server loop runs inside
``import mxnet`` when ``DMLC_ROLE`` is ``server`` or ``scheduler``, and exits
the process at the end of the job, so mxnet is imported first.
"""
import os
import sys

if os.environ.get("DIST_TEST_PID_DIR"):  # the launcher test checks that these all end
    open(os.path.join(os.environ["DIST_TEST_PID_DIR"],
                      f"{os.environ.get('DMLC_ROLE')}-{os.getpid()}"), "w").close()

import mxnet as mx  # noqa: E402, I001  (a server or the scheduler never gets past this line)

import numpy as np  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402

from gluon_finetune import LayerwiseTrainer  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 6
CHANGE_AT = 3  # the step before which a scenario changes the rates
SCENARIOS = ("plain", "set_lr", "unfreeze", "fail", "lr_find")
_LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def build_net(seed=0, ctx=None):
    from finetune_helpers import ThreeLayers
    mx.random.seed(seed)
    net = ThreeLayers(prefix="net_")
    net.initialize(mx.init.Xavier(), ctx=ctx)
    return net


def rules():
    """One frozen layer, one with its own FactorScheduler, one with a multiplier."""
    return {"l1": 0,
            "l2": {"learning_rate": 0.05,
                   "lr_scheduler": mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)},
            "l3": 10.0}


def make_trainer(net, kvstore="device", update_on_kvstore=None):
    return LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4},
                            kvstore=kvstore, update_on_kvstore=update_on_kvstore,
                            layers=rules())


def global_batch(step):
    rng = np.random.RandomState(100 + step)
    return (nd.array(rng.randn(GLOBAL_BATCH, 4)),
            nd.array(rng.randint(0, 3, size=GLOBAL_BATCH)))


def shard(step, rank, workers):
    x, y = global_batch(step)
    size = GLOBAL_BATCH // workers
    return x[rank * size:(rank + 1) * size], y[rank * size:(rank + 1) * size]


def change(trainer, scenario, step):
    """What a scenario does before step ``step`` (the same on every worker)."""
    if step != CHANGE_AT or scenario in ("plain", "fail", "lr_find"):
        return
    if scenario == "set_lr":
        trainer.set_learning_rate(0.03)
    elif scenario == "unfreeze":
        # l1 thaws with its own schedule: its clock must join at this step on the servers too
        trainer.set_layers(dict(rules(), l1={
            "learning_rate": 0.02,
            "lr_scheduler": mx.lr_scheduler.FactorScheduler(step=4, factor=0.5)}))
    else:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")


def weights(net, ctx=None):
    return {name: p.data(ctx).asnumpy().copy() for name, p in net.collect_params().items()}


def check_lambda_is_refused(trainer):
    """A schedule the servers cannot unpickle is refused, and the rules stay as they were."""
    before = trainer.rates
    try:
        trainer.set_layers(dict(rules(), l3={"lr_scheduler": lambda t: 0.1}))
    except TypeError as err:
        assert "cannot be pickled" in str(err), err
    else:
        raise AssertionError("set_layers accepted a lambda schedule with dist kvstore")
    assert trainer.rates == before


def check_lr_find_is_refused(net, trainer):
    """lr_find on a distributed kvstore: a clear error, and the trainer goes on unchanged."""
    from gluon_finetune import lr_find
    try:
        lr_find(net, trainer, [global_batch(0)], _LOSS, num_iter=3, progress=False)
    except ValueError as err:
        assert "lr_find runs in one process, but the trainer's kvstore is 'dist_sync'" in \
            str(err), err
    else:
        raise AssertionError("lr_find ran on a dist_sync kvstore")


def train_worker(out_dir, kvstore, update_on_kvstore, scenario):
    kv = mx.kv.create(kvstore)
    net = build_net(seed=kv.rank)  # different seeds: the trainer must broadcast rank 0's
    trainer = make_trainer(net, kv, update_on_kvstore)
    if update_on_kvstore:
        check_lambda_is_refused(trainer)
    if scenario == "lr_find":
        check_lr_find_is_refused(net, trainer)
    start = weights(net)
    for step in range(STEPS):
        change(trainer, scenario, step)
        if scenario == "fail" and step == 1 and kv.rank == 1:
            raise RuntimeError("worker of rank 1 fails on purpose")
        x, y = shard(step, kv.rank, kv.num_workers)
        with autograd.record():
            loss = _LOSS(net(x), y)
        loss.backward()
        trainer.step(GLOBAL_BATCH)
    mx.nd.waitall()
    final = weights(net)
    np.savez(os.path.join(out_dir, f"worker{kv.rank}.npz"),
             **{f"start/{k}": v for k, v in start.items()},
             **{f"final/{k}": v for k, v in final.items()})


def train_reference(scenario, workers=2):
    """The same training in one process: per step, the workers' shard gradients are
    summed (as the server sums pushes) and applied with the global batch size."""
    net = build_net(seed=0)
    trainer = make_trainer(net)
    params = [p for p in net.collect_params().values()]
    for step in range(STEPS):
        change(trainer, scenario, step)
        total = {}
        for rank in range(workers):
            x, y = shard(step, rank, workers)
            with autograd.record():
                loss = _LOSS(net(x), y)
            loss.backward()
            for p in params:
                if p.grad_req != "null":
                    g = p.grad().copy()
                    total[p.name] = g if p.name not in total else total[p.name] + g
        for p in params:
            if p.grad_req != "null":
                p.grad()[:] = total[p.name]
        trainer.step(GLOBAL_BATCH)
    mx.nd.waitall()
    return weights(net)


if __name__ == "__main__":
    out, store, on_kv, which = sys.argv[1:5]
    train_worker(out, store, {"true": True, "false": False}[on_kv.lower()], which)
