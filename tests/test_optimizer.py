"""optimizer.py: the layerwise wrapper of every MXNet optimizer (stock-equivalent with
multipliers, pickling, previews) and SGD's per-array kernel."""
import pickle

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import ramp, three_layers, train_step
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer


@pytest.mark.parametrize("name", ["sgd", "nag", "adam", "rmsprop", "lamb", "adagrad",
                                  "adadelta", "adamax", "nadam", "ftml", "signum", "ftrl",
                                  "lars", "lbsgd", "ccsgd"])  # dcasgd: broken in stock 1.9.1
def test_every_optimizer_matches_stock_trainer_with_lr_mult(name):
    """Multiplier rules give bit-identical weights to gluon.Trainer with lr_mult set by hand."""
    args = {"learning_rate": 0.01, "wd": 0.001}
    if name in ("sgd", "nag", "lars", "lbsgd", "ccsgd"):
        args["momentum"] = 0.9
    ours_net, stock_net = three_layers(1), three_layers(1)
    ours = LayerwiseTrainer(ours_net, name, dict(args),
                            layers={"l1": 0.5, "l3": 2.0, "l2": {"wd_mult": 0.0}})
    for layer, mult in (("l1", 0.5), ("l3", 2.0)):
        for p in getattr(stock_net, layer).collect_params().values():
            p.lr_mult = mult
    for p in stock_net.l2.collect_params().values():
        p.wd_mult = 0.0
    stock = gluon.Trainer(stock_net.collect_params(), name, dict(args))
    for step in range(3):
        train_step(ours_net, ours, step)
        train_step(stock_net, stock, step)
    for a, b in zip(ours_net.collect_params().values(), stock_net.collect_params().values()):
        assert np.array_equal(a.data().asnumpy(), b.data().asnumpy()), a.name


def test_per_array_path_runs_mxnets_per_array_kernel(monkeypatch):
    """MXNet's own SGD sends single dense arrays through multi_sgd_mom_update; ours calls
    the per-array sgd_mom_update kernel (bit-identical, faster on CPU): one call an array."""
    from gluon_finetune.optim import optimizer as ours
    calls = []
    real = ours._mx_opt.sgd_mom_update
    monkeypatch.setattr(ours._mx_opt, "sgd_mom_update",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for path, expected in (("per_array", 6), ("fused", 0)):
        calls.clear()
        net = three_layers()
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                                   update_path=path)
        train_step(net, trainer, 0)
        assert len(calls) == expected, path


def test_an_sgd_subclass_with_its_own_update_keeps_it():
    from mxnet.optimizer import SGD

    from gluon_finetune.optim.optimizer import layerwise

    calls = []

    class MySGD(SGD):
        def _update_impl(self, indices, weights, grads, states, multi_precision=False):
            calls.append(indices)
            return super()._update_impl(indices, weights, grads, states, multi_precision)

    net = three_layers()
    trainer = LayerwiseTrainer(net, layerwise(MySGD(learning_rate=0.1, momentum=0.9)),
                               layers={"l1": 0.5}, update_path="per_array")
    train_step(net, trainer, 0)
    assert calls == list(range(6))  # each of the 6 arrays, one at a time, through MySGD


def test_optimizer_pickles_with_its_rate_table():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "nag", {"learning_rate": 0.1, "momentum": 0.9},
                               layers={"l1": 0, "l2": {"lr_scheduler": ramp}, "l3": 3.0})
    clone = pickle.loads(pickle.dumps(trainer.optimizer))
    assert type(clone).__name__ == "LayerwiseNAG" and isinstance(clone, mx.optimizer.NAG)
    assert clone.layerwise.rates == trainer.optimizer.layerwise.rates
    assert clone.param_dict == {}  # MXNet drops it; our table does not need it
    assert clone._get_lrs(list(range(6))) == trainer.optimizer._get_lrs(list(range(6)))
