"""The gluon.Trainer contract, bad input, the Estimator, explain(trainer), import cost."""
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import three_layers, train_step
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer, explain


def param_state(net):
    return [(p.name, p.lr_mult, p.wd_mult, p.grad_req, p._trainer)
            for p in net.collect_params().values()]


BAD_CONSTRUCTIONS = [
    ({"optimizer": "sgd", "optimizer_params": {"learning_rate": 0.1, "momentm": 0.9}},
     ValueError, "momentm"),
    ({"optimizer": "sgdd"}, ValueError, "sgdd"),
    ({"optimizer": 3}, TypeError, "optimizer must be"),
    ({"optimizer": "sgd", "optimizer_params": {"learning_rate": "0.1"}}, ValueError, "0.1"),
    ({"optimizer": "sgd", "optimizer_params": {"lr_scheduler": "cosine"}}, TypeError, "cosine"),
    ({"optimizer": "sgd", "optimizer_params": [("learning_rate", 0.1)]}, TypeError,
     "optimizer_params must be a dict"),
    ({"optimizer": mx.optimizer.SGD(), "optimizer_params": {"learning_rate": 0.1}}, ValueError,
     "must be empty"),
    ({"optimizer": "sgd", "layers": {"l4": 0.1}}, ValueError, "Did you mean 'l3'"),
    ({"optimizer": "sgd", "layers": {"l3": {"lr_scheduler": 0.5}}}, TypeError, "lr_scheduler"),
    ({"optimizer": "sgd", "layers": {"l3": {"lr_scheduler": "cosine"}}}, TypeError, "cosine"),
    ({"optimizer": "sgd", "layers": {"l1": 0.1, "l1.weight": 1}}, ValueError, "l1.weight"),
    ({"optimizer": "sgd", "layers": {5: 0.1}}, ValueError, "out of range"),
    ({"optimizer": "sgd", "kvstore": 3}, TypeError, "kvstore"),
    ({"optimizer": "sgd", "update_on_kvstore": "yes"}, TypeError, "update_on_kvstore"),
    ({"optimizer": "sgd", "bn": "freeze"}, ValueError, "freeze"),
    ({"optimizer": "sgd", "granularity": "layer"}, ValueError, "layer"),
    ({"optimizer": "sgd", "strict": "no"}, TypeError, "strict"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_CONSTRUCTIONS)
def test_bad_construction_raises_and_leaves_parameters_alone(kwargs, error, message):
    net = three_layers()
    before = param_state(net)
    with pytest.raises(error, match=message):
        LayerwiseTrainer(net, **kwargs)
    assert param_state(net) == before


def test_rules_without_net_only_take_names():
    net = three_layers()
    with pytest.raises(ValueError, match="net="):
        LayerwiseTrainer(net.collect_params(), "sgd", layers={"l3": 0})
    trainer = LayerwiseTrainer(net.collect_params(), "sgd", layers={"*_bias": 0})
    assert net.l3.bias.grad_req == "null" and net.l3.weight.grad_req == "write"
    assert trainer.net is None


def test_without_layers_parameters_are_untouched():
    net = three_layers()
    net.l2.weight.lr_mult = 0.3
    before = [(p.lr_mult, p.wd_mult, p.grad_req) for p in net.collect_params().values()]
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    assert [(p.lr_mult, p.wd_mult, p.grad_req)
            for p in net.collect_params().values()] == before
    assert trainer.rates == {}
    # plain Gluon habits keep working: lr_mult edits take effect as in gluon.Trainer
    idx = [p.name for p in trainer._params].index(net.l2.weight.name)
    assert trainer.current_lrs()[idx] == pytest.approx(0.03)


def test_update_on_kvstore_true_with_one_context_trains():
    """Stock trap: gluon.Trainer crashes on None.is_capable here."""
    net = three_layers()
    stock = gluon.Trainer(net.collect_params(), "sgd", update_on_kvstore=True)
    with pytest.raises(AttributeError):
        train_step(net, stock, 0)
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, update_on_kvstore=True,
                               layers={"l1": 0})
    w1, w3 = net.l1.weight.data().asnumpy().copy(), net.l3.weight.data().asnumpy().copy()
    train_step(net, trainer, 0)
    assert np.array_equal(net.l1.weight.data().asnumpy(), w1)
    assert not np.array_equal(net.l3.weight.data().asnumpy(), w3)


def test_allreduce_grads_and_update_split():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l1": 0, "l2": 0.5},
                               update_on_kvstore=False)
    from finetune_helpers import batch
    from mxnet import autograd
    x, y = batch(0)
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()
    w1 = net.l1.weight.data().asnumpy().copy()
    trainer.allreduce_grads()
    trainer.update(8)
    assert np.array_equal(net.l1.weight.data().asnumpy(), w1)


def test_estimator_trains_with_layerwise_trainer():
    from mxnet.gluon.contrib.estimator import Estimator
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l1": 0, "l3": 2.0})
    rng = np.random.RandomState(0)
    data = gluon.data.ArrayDataset(rng.randn(32, 4).astype("float32"),
                                   rng.randint(0, 3, 32).astype("float32"))
    loader = gluon.data.DataLoader(data, batch_size=8)
    w1, w3 = net.l1.weight.data().asnumpy().copy(), net.l3.weight.data().asnumpy().copy()
    est = Estimator(net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    est.logger.disabled = True
    est.fit(train_data=loader, epochs=2)
    assert est.trainer is trainer
    assert np.array_equal(net.l1.weight.data().asnumpy(), w1)
    assert not np.array_equal(net.l3.weight.data().asnumpy(), w3)
    assert trainer.optimizer.num_update == 8


def test_explain_trainer_shows_live_rates():
    net = three_layers()
    sched = mx.lr_scheduler.FactorScheduler(step=1, factor=0.5)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.2}, layers={
        "l1": 0, "l2": {"learning_rate": 0.1, "lr_scheduler": sched}, "*": 0.5})
    for step in range(3):
        train_step(net, trainer, step)
    table = explain(trainer)
    row = table[net.l2.weight.name]
    assert row["rule"] == "l2" and row["lr"] == pytest.approx(0.025)
    assert row["schedule"].startswith("FactorScheduler") and row["block"] == "1:l2"
    assert table[net.l1.bias.name]["frozen"] is True
    assert table[net.l3.weight.name]["lr"] == pytest.approx(0.1)
    assert table[net.l3.weight.name]["rule"] == "*"
    frame = table.to_pandas()
    assert list(frame["parameter"]) == [p.name for p in trainer._params]
    text = str(table)
    assert "FactorScheduler" in text and net.l1.weight.name in text
    with pytest.raises(ValueError, match="set_layers"):
        explain(trainer, {"l1": 1})
    with pytest.raises(TypeError, match="LayerwiseTrainer or a gluon Block"):
        explain("net")


def test_block_as_params_and_conflicting_net():
    net = three_layers()
    with pytest.raises(ValueError, match="one network"):
        LayerwiseTrainer(net, "sgd", net=three_layers())
    trainer = LayerwiseTrainer(net, "sgd", layers={-1: 0})
    assert trainer.net is net and net.l3.weight.grad_req == "null"


def test_import_does_no_heavy_work():
    """``import gluon_finetune`` loads no mxnet (bench/import_time.py measures the time)."""
    code = ("import sys, gluon_finetune; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('mxnet', 'gluoncv', 'pandas', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_hand_edits_of_lr_mult_take_effect_under_multiplier_rules():
    """Stock trap: with rules, a Parameter.lr_mult edit was ignored without a word (MXNet's
    own Trainer tests failed against layers={'*': 1} for this)."""
    from finetune_helpers import sgd_rates
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 1, "l2": 3})
    net.l1.weight.lr_mult = 0.5
    net.l2.weight.lr_mult = 1.0
    rates = sgd_rates(net, trainer, 1)[0]
    assert rates[net.l1.weight.name] == pytest.approx(0.05, rel=1e-3)
    assert rates[net.l2.weight.name] == pytest.approx(0.1, rel=1e-3)
    assert rates[net.l3.weight.name] == pytest.approx(0.1, rel=1e-3)
    net.l3.weight.wd_mult = 0.0  # as in Gluon, weight-decay edits take effect too
    assert trainer.optimizer._get_wds([4]) == [0.0]


@pytest.mark.parametrize("value", [{"learning_rate": 0.05},
                                   {"lr_scheduler": mx.lr_scheduler.FactorScheduler(5, 0.9)}])
def test_a_hand_edit_a_rule_cannot_honour_is_an_error_at_the_next_step(value):
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l1": value})
    train_step(net, trainer, 0)
    net.l1.weight.lr_mult = 2.0
    before = [p.data().asnumpy().copy() for p in net.collect_params().values()]
    with pytest.raises(ValueError, match=rf"{net.l1.weight.name}: lr_mult was changed by hand"
                                         r".*rule 'l1'.*set_layers"):
        train_step(net, trainer, 1)
    after = [p.data().asnumpy() for p in net.collect_params().values()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    net.l1.weight.lr_mult = trainer.rates[0].lr_mult
    train_step(net, trainer, 1)


@pytest.mark.parametrize("optimizer, params, key", [
    ("sgd", {"learning_rate": 0.1, "wd": float("nan")}, "wd"),
    ("sgd", {"momentum": float("inf")}, "momentum"),
    ("sgd", {"rescale_grad": float("-inf")}, "rescale_grad"),
    ("sgd", {"clip_gradient": float("inf")}, "clip_gradient"),
    ("adam", {"beta1": np.float32("nan")}, "beta1"),
    ("adam", {"epsilon": "1e-8"}, "epsilon"),
    ("rmsprop", {"gamma1": None}, "gamma1"),
    ("nag", {"wd": np.nan, "momentum": 0.9}, "wd"),
])
def test_non_finite_optimizer_numbers_are_refused_at_construction(optimizer, params, key):
    net = three_layers()
    before = param_state(net)
    with pytest.raises(ValueError, match=rf"optimizer parameter {key} must be a finite number"):
        LayerwiseTrainer(net, optimizer, params)
    assert param_state(net) == before


def test_numpy_optimizer_numbers_are_accepted():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": np.float32(0.5), "wd": np.float64(0),
                                            "momentum": np.float32(0.5), "clip_gradient": None,
                                            "begin_num_update": np.int64(0)})
    train_step(net, trainer, 0)
    assert trainer.optimizer.num_update == 1


def test_an_optimizer_instance_with_non_finite_numbers_is_refused():
    net = three_layers()
    with pytest.raises(ValueError, match="SGD: wd must be a finite number"):
        LayerwiseTrainer(net, mx.optimizer.SGD(wd=float("nan")))


def test_numpy_counts_are_stored_as_ints():
    from finetune_helpers import four_blocks
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    trainer.set_trainable_blocks(np.int64(2))
    assert trainer.trainable_blocks == 2 and type(trainer.trainable_blocks) is int
    with pytest.raises(TypeError, match="unfreeze must be None or an int"):
        trainer.set_trainable_blocks(True)
