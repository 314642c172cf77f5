"""LayerwiseTrainer gives each layer the rate its rule says, measured from weight deltas."""
import math

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import cosine, sgd_rates, three_layers
from mxnet import autograd, gluon

from gluon_finetune import LayerwiseTrainer


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
















