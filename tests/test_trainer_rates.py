"""LayerwiseTrainer gives each layer the rate its rule says, measured from weight deltas."""
import math

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import sgd_rates, three_layers, train_step
from mxnet import autograd, gluon

from gluon_finetune import LayerwiseTrainer
from gluon_finetune.update_paths import choose_update_path


def by_layer(net, rates_per_step):
    """{layer attribute: [rate at step 1, step 2, ...]} (weight and bias must agree)."""
    out = {}
    for layer in ("l1", "l2", "l3"):
        names = list(getattr(net, layer).collect_params().keys())
        per_step = []
        for step in rates_per_step:
            vals = [step[n] for n in names if n in step]
            if not vals:
                continue
            assert vals == pytest.approx([vals[0]] * len(vals), rel=1e-3)
            per_step.append(vals[0])
        out[layer] = per_step
    return out


def test_multipliers():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.5},
                               layers={"*": 0.1, "l3": 2.0})
    got = by_layer(net, sgd_rates(net, trainer, 3))
    assert got["l1"] == pytest.approx([0.05] * 3, rel=1e-3)
    assert got["l2"] == pytest.approx([0.05] * 3, rel=1e-3)
    assert got["l3"] == pytest.approx([1.0] * 3, rel=1e-3)
    assert net.l3.weight.lr_mult == 2.0 and net.l1.bias.lr_mult == 0.1


def test_absolute_learning_rate_and_negative_multiplier():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"l1": {"learning_rate": 0.02}, "l2": -1.0})
    got = by_layer(net, sgd_rates(net, trainer, 2))
    assert got["l1"] == pytest.approx([0.02] * 2, rel=1e-3)
    assert got["l2"] == pytest.approx([-0.1] * 2, rel=1e-3)
    assert got["l3"] == pytest.approx([0.1] * 2, rel=1e-3)
    # the absolute rate is exact, not 0.1 * (0.02 / 0.1)
    assert trainer.current_lrs()[0] == 0.02


def expected_factor(base, step, factor, steps):
    sched = mx.lr_scheduler.FactorScheduler(step=step, factor=factor, base_lr=base)
    return [sched(t) for t in range(1, steps + 1)]


def cosine(t):
    """A plain callable schedule: absolute rate at update t."""
    return 0.05 * (1 + math.cos(math.pi * min(t, 10) / 10)) / 2


def test_per_layer_schedulers():
    net = three_layers()
    factor = mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={
        "l1": {"learning_rate": 0.2, "lr_scheduler": factor},
        "l2": {"lr_scheduler": cosine},
        "l3": {"lr_mult": 0.5, "lr_scheduler": factor}})
    got = by_layer(net, sgd_rates(net, trainer, 6))
    assert got["l1"] == pytest.approx(expected_factor(0.2, 2, 0.5, 6), rel=1e-3)
    assert got["l2"] == pytest.approx([cosine(t) for t in range(1, 7)], rel=1e-3)
    assert got["l3"] == pytest.approx(expected_factor(0.05, 2, 0.5, 6), rel=1e-3)
    assert factor.base_lr == 0.01 and factor.count == 0, "the user's scheduler is copied"


def test_trainer_scheduler_times_multipliers():
    net = three_layers()
    sched = mx.lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=0.4)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.4, "lr_scheduler": sched},
                               layers={"l1": 0.25, "l3": 0})
    got = by_layer(net, sgd_rates(net, trainer, 4))
    trainer_rates = expected_factor(0.4, 1, 0.5, 4)
    assert got["l1"] == pytest.approx([r * 0.25 for r in trainer_rates], rel=1e-3)
    assert got["l2"] == pytest.approx(trainer_rates, rel=1e-3)
    assert got["l3"] == []  # frozen: not updated at all


def test_rule_scheduler_wins_over_trainer_scheduler():
    net = three_layers()
    trainer = LayerwiseTrainer(
        net, "sgd", {"learning_rate": 0.1,
                     "lr_scheduler": mx.lr_scheduler.FactorScheduler(1, 0.5, base_lr=0.1)},
        layers={"l2": {"lr_scheduler": cosine}})
    got = by_layer(net, sgd_rates(net, trainer, 3))
    assert got["l2"] == pytest.approx([cosine(t) for t in (1, 2, 3)], rel=1e-3)


def test_rfc_form_inside_optimizer_params():
    net = three_layers()
    sched = mx.lr_scheduler.FactorScheduler(step=1, factor=0.5)
    trainer = LayerwiseTrainer(net.collect_params(), "sgd", {
        "learning_rate": 0.1, "l3": {"learning_rate": 0.01, "lr_scheduler": sched}}, net=net)
    got = by_layer(net, sgd_rates(net, trainer, 3))
    assert got["l3"] == pytest.approx(expected_factor(0.01, 1, 0.5, 3), rel=1e-3)
    assert got["l1"] == pytest.approx([0.1] * 3, rel=1e-3)


def test_rfc_form_and_layers_for_the_same_layer_is_an_error():
    net = three_layers()
    with pytest.raises(ValueError, match="'l3'.*both"):
        LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "l3": {"learning_rate": 0.01}},
                         layers={"l3": 0.5})


def test_set_learning_rate_rescales_every_layer():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={
        "l1": 0.5, "l2": {"learning_rate": 0.02},
        "l3": {"lr_scheduler": mx.lr_scheduler.FactorScheduler(step=100, factor=0.5)}})
    trainer.set_learning_rate(0.3)
    assert trainer.learning_rate == 0.3
    got = by_layer(net, sgd_rates(net, trainer, 1))
    assert got["l1"] == pytest.approx([0.15], rel=1e-3)
    assert got["l2"] == pytest.approx([0.06], rel=1e-3)
    assert got["l3"] == pytest.approx([0.3], rel=1e-3)
    assert net.l1.weight.lr_mult == 0.5


def test_set_learning_rate_with_trainer_scheduler_raises_like_gluon():
    net = three_layers()
    sched = mx.lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=0.1)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "lr_scheduler": sched},
                               layers={"l1": 0.5})
    with pytest.raises(UserWarning, match="LRScheduler"):
        trainer.set_learning_rate(0.2)
    with pytest.raises(ValueError, match="nan"):
        trainer.set_learning_rate(float("nan"))


def adam_reference(w, grads, lr, rescale, beta1=0.9, beta2=0.999, eps=1e-8):
    """MXNet's Adam update in numpy (float64), for a list of per-step gradients."""
    w = w.astype(np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64) * rescale
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        lr_t = lr(t) * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        w = w - lr_t * m / (np.sqrt(v) + eps)
    return w


def test_adam_per_layer_rates_match_closed_form():
    net = three_layers()
    sched = mx.lr_scheduler.FactorScheduler(step=1, factor=0.5)
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 0.01}, layers={
        "l1": 0.1, "l2": {"learning_rate": 0.004, "lr_scheduler": sched}})
    params = dict(net.collect_params().items())
    start = {k: p.data().asnumpy().copy() for k, p in params.items()}
    grads = {k: [] for k in params}
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    from finetune_helpers import batch
    for step in range(4):
        x, y = batch(step)
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        for k, p in params.items():
            grads[k].append(p.grad().asnumpy().copy())
        trainer.step(8)
    factor = expected_factor(0.004, 1, 0.5, 4)
    rate = {"l1": lambda t: 0.001, "l2": lambda t: factor[t - 1], "l3": lambda t: 0.01}
    for layer in ("l1", "l2", "l3"):
        for k in getattr(net, layer).collect_params().keys():
            want = adam_reference(start[k], grads[k], rate[layer], 1 / 8)
            np.testing.assert_allclose(params[k].data().asnumpy(), want, rtol=1e-4, atol=1e-6)


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


@pytest.mark.parametrize("aggregate", [0, 1, 3])
def test_fused_and_per_array_update_paths_are_bit_identical(aggregate):
    def run(aggregate_num):
        net = three_layers(2)
        opt = mx.optimizer.SGD(learning_rate=0.1, momentum=0.9, wd=1e-3)
        opt.aggregate_num = aggregate_num
        trainer = LayerwiseTrainer(net, opt, update_path="fused" if aggregate_num else
                                   "per_array", layers={
            "l1": {"lr_scheduler": mx.lr_scheduler.FactorScheduler(1, 0.7)},
            "l2": 0.3, "l3": {"lr_scheduler": cosine}})
        assert trainer.update_path == ("fused" if aggregate_num else "per_array")
        assert trainer._updaters[0].aggregate_updates == (aggregate_num > 0)
        for step in range(4):
            train_step(net, trainer, step)
        return [p.data().asnumpy() for p in net.collect_params().values()]

    reference = run(4)  # MXNet's default: fused multi_sgd_mom_update in chunks of 4
    for a, b in zip(run(aggregate), reference):
        assert np.array_equal(a, b)


def test_update_path_rule(monkeypatch):
    monkeypatch.delenv("MXNET_OPTIMIZER_AGGREGATION_SIZE", raising=False)
    net = three_layers()
    momentum = {"momentum": 0.9}
    assert LayerwiseTrainer(net, "sgd", dict(momentum)).update_path == "per_array"  # faster
    assert LayerwiseTrainer(net, "sgd").update_path == "fused"  # no faster kernel
    assert LayerwiseTrainer(net, "nag").update_path == "per_array"  # no fused path
    assert LayerwiseTrainer(net, "adam").update_path == "per_array"
    assert LayerwiseTrainer(net, "sgd", update_path="fused").update_path == "fused"
    monkeypatch.setenv("MXNET_OPTIMIZER_AGGREGATION_SIZE", "4")  # an explicit choice wins
    assert LayerwiseTrainer(net, "sgd", dict(momentum)).update_path == "fused"
    with pytest.raises(ValueError, match="'multi'"):
        LayerwiseTrainer(net, "sgd", update_path="multi")
    before = [(p.grad_req, p._trainer) for p in net.collect_params().values()]
    with pytest.raises(ValueError, match="Adam has no fused"):
        LayerwiseTrainer(net, "adam", update_path="fused")
    with pytest.raises(ValueError, match="LAMB's per-array update .* differs"):
        LayerwiseTrainer(net, "lamb", update_path="per_array")
    assert [(p.grad_req, p._trainer) for p in net.collect_params().values()] == before


@pytest.mark.parametrize("name,devices,env,expected", [
    ("sgd", ["cpu"], {}, "per_array"),               # measured faster, bit-identical
    ("sgd", ["cpu", "cpu"], {}, "per_array"),
    ("ccsgd", ["cpu"], {}, "per_array"),              # an SGD subclass
    ("sgd", ["gpu"], {}, "fused"),                    # MXNet's default off the CPU
    ("sgd", ["cpu", "gpu"], {}, "fused"),
    ("sgd", ["cpu"], {"MXNET_OPTIMIZER_AGGREGATION_SIZE": "8"}, "fused"),  # explicit wins
    ("sgd-no-momentum", ["cpu"], {}, "fused"),       # no faster bit-identical kernel
    ("lars", ["cpu"], {}, "fused"),                   # fused only: per-array fails in MXNet
    ("lamb", ["cpu"], {}, "fused"),                   # fused only: per-array differs
    ("adam", ["cpu"], {}, "per_array"),               # no fused update at all
    ("nag", ["gpu"], {}, "per_array"),
])
def test_chosen_path_is_the_rules(name, devices, env, expected):
    def make():
        if name == "sgd-no-momentum":
            return mx.optimizer.create("sgd")
        return mx.optimizer.create(name, **({"momentum": 0.9} if "sgd" in name else {}))

    assert choose_update_path(make(), devices, "auto", env) == expected
    forced = "fused" if name in ("lars", "lamb") else "per_array"
    assert choose_update_path(make(), devices, forced, env) == forced


def test_trainer_takes_the_rules_path(monkeypatch):
    """The trainer asks the rule with its own devices and applies the answer."""
    monkeypatch.delenv("MXNET_OPTIMIZER_AGGREGATION_SIZE", raising=False)
    net = three_layers(ctx=[mx.cpu(0), mx.cpu(1)])
    for name in ("sgd", "lamb", "adam"):
        args = {"momentum": 0.9} if name == "sgd" else {}
        trainer = LayerwiseTrainer(net, name, dict(args))
        expected = choose_update_path(mx.optimizer.create(name, **args), ["cpu", "cpu"])
        assert trainer.update_path == expected
        assert all(u.aggregate_updates == (expected == "fused") for u in trainer._updaters)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_update_paths_bit_identical_with_schedules_and_frozen_layers(momentum):
    """Per-layer schedules, a frozen layer and gradient clipping: same bits on both paths."""
    def run(path):
        net = three_layers(3)
        trainer = LayerwiseTrainer(
            net, "sgd", {"learning_rate": 0.2, "momentum": momentum, "wd": 1e-3,
                         "clip_gradient": 0.05}, update_path=path,
            layers={"l1": 0, "l2": {"lr_scheduler": mx.lr_scheduler.PolyScheduler(20, 0.2)},
                    "l3": {"lr_scheduler": cosine}})
        assert trainer.update_path == path
        for step in range(5):
            train_step(net, trainer, step)
        return [p.data().asnumpy() for p in net.collect_params().values()]

    for a, b in zip(run("fused"), run("per_array")):
        assert np.array_equal(a, b)


def test_per_array_path_runs_mxnets_per_array_kernel(monkeypatch):
    """MXNet's own SGD sends single dense arrays through multi_sgd_mom_update; ours calls
    the per-array sgd_mom_update kernel (bit-identical, faster on CPU): one call an array."""
    from gluon_finetune import optimizer as ours
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

    from gluon_finetune.optimizer import layerwise

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
