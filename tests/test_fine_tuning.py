"""fine_tune: the head phase, the thawed phase's discriminative one-cycle rates, user rules."""
import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import bn_chain
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer, OneCycle, RuleError, fine_tune
from gluon_finetune.recipes import fine_tuning
from gluon_finetune.recipes.fine_tuning import phase_rules
from gluon_finetune.recipes.training import fit

HEAD = 4  # bn_chain's blocks: 0 Dense, 1 BN, 2 Dense, 3 BN, 4 Dense (the head)


def loader(count=40, seed=0, batch_size=8):
    rng = np.random.RandomState(seed)
    x = rng.randn(count, 4).astype("float32")
    y = (x[:, 0] > 0).astype("float32") + (x[:, 1] > 1)
    return gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size=batch_size)


def arrays(params):
    mx.nd.waitall()
    return [p.data().asnumpy().copy() for p in params]


def block_of(trainer):
    where = {name: i for i, (_, names) in enumerate(trainer.block_list) for name in names}
    return [where[p.name] for p in trainer.params]


@pytest.fixture
def recorded(monkeypatch):
    """Every step's rates (trainer order) and the trainer fine_tune used."""
    seen = {"lrs": [], "trainer": None}

    def recording_fit(net, trainer, *args, **kwargs):
        seen["trainer"] = trainer
        return fit(net, trainer, *args, on_step=lambda t: seen["lrs"].append(t.current_lrs()),
                   **kwargs)

    monkeypatch.setattr(fine_tuning, "fit", recording_fit)
    return seen


def test_the_head_phase_alone_keeps_the_trunk_bit_identical():
    net = bn_chain(hybridize=True)
    trunk = [p for name, p in net.collect_params().items() if not name.startswith(
        net[6].prefix)]
    head = list(net[6].collect_params().values())
    trunk_before, head_before = arrays(trunk), arrays(head)
    history = fine_tune(net, loader(), epochs=0, freeze_epochs=1, base_lr=0.1, progress=False)
    assert [(h["epoch"], h["phase"]) for h in history] == [(0, "head")]
    assert len(trunk) == 12  # weights, biases, BatchNorm scale/shift/running statistics
    assert all(np.array_equal(a, b) for a, b in zip(trunk_before, arrays(trunk)))
    assert all(not np.array_equal(a, b) for a, b in zip(head_before, arrays(head)))


def test_rates_follow_the_recipe_step_by_step(recorded):
    net = bn_chain()
    base_lr, lr_mult, pct = 0.02, 10.0, 0.25
    history = fine_tune(net, loader(), epochs=2, freeze_epochs=1, base_lr=base_lr,
                        lr_mult=lr_mult, pct_start=pct, val_data=loader(16, 1), progress=False)
    trainer = recorded["trainer"]
    blocks = block_of(trainer)
    trains = [p._differentiable for p in trainer.params]
    lrs = recorded["lrs"]
    assert len(lrs) == 5 + 10 and len(history) == 3
    head = OneCycle(5, 0.99, 25.0, 1e5, base_lr=base_lr)
    for step, rates in enumerate(lrs[:5], start=1):  # the head alone, its own clock from 1
        for rate, block, differentiable in zip(rates, blocks, trains):
            if differentiable and block == HEAD:
                assert rate == pytest.approx(head(step), rel=1e-12)
    lo, hi = base_lr / lr_mult, base_lr / 2
    peaks = [lo * (hi / lo) ** (i / 4) for i in range(5)]
    for step, rates in enumerate(lrs[5:], start=1):  # every block, clocks restarted at 1
        for rate, block, differentiable in zip(rates, blocks, trains):
            if differentiable:
                cycle = OneCycle(10, pct, 5.0, 1e5, base_lr=peaks[block])
                assert rate == pytest.approx(cycle(step), rel=1e-12)
    assert [h["phase"] for h in history] == ["head", "all", "all"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[0]["seconds"] <= history[1]["seconds"] <= history[2]["seconds"]
    assert all(0 <= h["val_acc"] <= 1 for h in history)
    assert trainer.optimizer.momentum == 0.9 and trainer.trainable_blocks is None


def test_only_the_head_trains_in_the_first_phase(recorded):
    net = bn_chain()
    fine_tune(net, loader(), epochs=0, freeze_epochs=2, progress=False)
    trainer = recorded["trainer"]
    frozen = [p.grad_req == "null" for p in trainer.params]
    assert [f for f, b in zip(frozen, block_of(trainer)) if b == HEAD] == [False, False]
    assert all(f for f, b in zip(frozen, block_of(trainer)) if b != HEAD)
    assert trainer.trainable_blocks == 1


def test_user_layers_replace_rates_and_compose_with_no_weight_decay(recorded):
    net = bn_chain()
    first = list(net[0].collect_params().values())
    before = arrays(first)
    fine_tune(net, loader(), epochs=1, freeze_epochs=1, base_lr=0.05, progress=False,
              layers={0: 0, "*": {"wd_mult": 0.5}, HEAD: {"wd_mult": 2.0}})
    trainer = recorded["trainer"]
    assert all(np.array_equal(a, b) for a, b in zip(before, arrays(first)))  # frozen by the user
    wd = {p.name: p.wd_mult for p in trainer.params}
    assert wd[net[3].weight.name] == 0.5                # the user's "*"
    assert wd[net[3].bias.name] == 0.0                  # no_weight_decay: more specific
    assert wd[net[1].gamma.name] == wd[net[1].beta.name] == 0.0
    assert wd[net[6].weight.name] == 2.0                # same key as the recipe's head rule:
    rates = trainer.rates                               # ... its rate stays the recipe's
    head_index = trainer.params.index(net[6].weight)
    assert rates[head_index].rule == "block 4" and rates[head_index].lr_scheduler is not None
    assert rates[trainer.params.index(net[0].weight)].frozen


def test_a_user_rate_rule_replaces_the_recipes_rate(recorded):
    net = bn_chain()
    fine_tune(net, loader(), epochs=1, freeze_epochs=0, base_lr=0.05, progress=False,
              layers={"6": 10})
    trainer = recorded["trainer"]
    weight = trainer.params.index(net[6].weight)
    assert {round(lrs[weight], 12) for lrs in recorded["lrs"]} == {0.5}  # 10 x base_lr, flat
    rules = dict(trainer.layers)
    assert rules["6"] == 10 and sorted(k for k in rules if isinstance(k, int)) == [0, 1, 2, 3]


def test_a_given_trainer_is_used_and_its_rules_replaced(recorded):
    net = bn_chain()
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 1.0}, layers={"*": 0.5})
    fine_tune(net, loader(), epochs=1, freeze_epochs=1, trainer=trainer, base_lr=0.01,
              progress=False)
    assert recorded["trainer"] is trainer
    lrs = recorded["lrs"]
    assert max(max(step) for step in lrs[:5]) == pytest.approx(0.01)  # head phase: base_lr
    assert max(max(step) for step in lrs[5:]) == pytest.approx(0.01 / 2)  # then base_lr / 2
    assert "*" not in dict((str(k), v) for k, v in trainer.layers)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"epochs": 0, "freeze_epochs": 0}, ValueError, "both 0: nothing to train"),
    ({"epochs": -1}, ValueError, "epochs must be an int >= 0, got -1"),
    ({"freeze_epochs": 1.5}, TypeError, "freeze_epochs must be an int >= 0, got float 1.5"),
    ({"base_lr": 0}, ValueError, "base_lr must be a finite number > 0, got 0"),
    ({"lr_mult": -2}, ValueError, "lr_mult must be a finite number > 0"),
    ({"pct_start": 1.0}, ValueError, r"pct_start must be in \(0, 1\), got 1.0"),
    ({"train_data": [1]}, TypeError, "train_data must be a gluon.data.DataLoader, got list"),
    ({"val_data": "val"}, TypeError, "val_data must be a gluon.data.DataLoader, got str"),
    ({"loss_fn": 3}, TypeError, "loss_fn must be a callable"),
    ({"optimizer_params": {"learning_rate": 1}}, ValueError,
     "optimizer_params must not contain 'learning_rate'"),
    ({"layers": {"nowhere": 0}}, RuleError, "no block path or parameter is named 'nowhere'"),
    ({"optimizer": "nosuch"}, ValueError, "unknown optimizer 'nosuch'"),
])
def test_arguments_are_checked_before_anything_changes(kwargs, error, message):
    net = bn_chain()
    before = arrays(net.collect_params().values())
    args = dict(net=net, train_data=loader(), epochs=1, progress=False)
    with pytest.raises(error, match=message):
        fine_tune(**{**args, **kwargs})
    assert all(np.array_equal(a, b) for a, b in zip(before, arrays(net.collect_params().values())))
    assert all(p._trainer is None and p.grad_req in ("write", "null")
               for p in net.collect_params().values())


def test_a_weight_decay_clash_with_no_weight_decay_is_an_error_before_training():
    net = bn_chain()
    same_set = f"{net[1].prefix}*"  # exactly the parameters of no_weight_decay's rule "1"
    with pytest.raises(RuleError, match=r"rules '1' and .* set its weight decay to different"):
        fine_tune(net, loader(), 1, layers={same_set: {"wd_mult": 1.0}}, progress=False)
    assert all(p._trainer is None for p in net.collect_params().values())
    fine_tune(net, loader(), 1, layers={same_set: {"wd_mult": 1.0}}, no_decay=False,
              progress=False)


def test_a_given_trainer_must_be_layerwise_and_hold_the_whole_net():
    net, other = bn_chain(), bn_chain(1)
    with pytest.raises(TypeError, match="trainer must be a LayerwiseTrainer"):
        fine_tune(net, loader(), 1, trainer=gluon.Trainer(net.collect_params(), "sgd"))
    with pytest.raises(ValueError, match="trainer was built for another network"):
        fine_tune(net, loader(), 1, trainer=LayerwiseTrainer(other, "sgd"))
    part = LayerwiseTrainer(net[6].collect_params(), "sgd", net=net)
    with pytest.raises(ValueError, match="must hold all of net's parameters"):
        fine_tune(net, loader(), 1, trainer=part)
    with pytest.raises(ValueError, match="optimizer_params is for the trainer fine_tune builds"):
        fine_tune(net, loader(), 1, trainer=LayerwiseTrainer(net, "sgd"),
                  optimizer_params={"wd": 1e-4})


def test_phase_rules_are_plain_rules():
    net = bn_chain()
    rules = dict(phase_rules(net, "all", 10, 0.1, lr_mult=10, no_decay=False))
    assert sorted(rules) == [0, 1, 2, 3, 4]
    assert [rules[i]["learning_rate"] for i in range(5)] == pytest.approx(
        [0.01 * 5 ** (i / 4) for i in range(5)])
    head = dict(phase_rules(net, "head", 7, 0.1))
    assert head[HEAD]["learning_rate"] == 0.1 and head[HEAD]["lr_scheduler"].max_update == 7
    assert any(value == {"wd_mult": 0.0} for value in head.values())  # no_weight_decay's
    with pytest.raises(ValueError, match="phase must be 'head' or 'all'"):
        phase_rules(net, "middle", 1, 0.1)


def test_a_given_trainers_own_block_list_numbers_the_recipe(recorded):
    net = bn_chain()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               blocks=[("0", "1"), ("3", "4"), "6"])
    fine_tune(net, loader(), epochs=1, freeze_epochs=0, trainer=trainer, base_lr=0.04,
              lr_mult=4.0, progress=False)
    peaks = [0.01, 0.01 * 2 ** 0.5, 0.02]  # three blocks from 0.04/4 to 0.04/2
    blocks = block_of(trainer)
    tops = {}
    for rates in recorded["lrs"]:
        for rate, block, p in zip(rates, blocks, trainer.params):
            if p._differentiable:
                tops[block] = max(tops.get(block, 0.0), rate)
    assert [tops[i] for i in range(3)] == pytest.approx(peaks)


@pytest.mark.parametrize("how", ["trainer", "optimizer"])
def test_a_multiplier_in_layers_is_relative_to_base_lr_whatever_the_trainers_rate(
        recorded, how):
    """Stock trap: with trainer= (or an Optimizer instance) the head trained at 10x the
    trainer's own rate: 0.1 measured where 10 * base_lr = 0.5 was declared."""
    net = bn_chain()
    given = {"trainer": LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01})} \
        if how == "trainer" else {"optimizer": mx.optimizer.SGD(learning_rate=0.01)}
    fine_tune(net, loader(), epochs=1, freeze_epochs=1, base_lr=0.05, progress=False,
              layers={"6": 10}, **given)
    trainer = recorded["trainer"]
    weight = trainer.params.index(net[6].weight)
    assert {round(lrs[weight], 12) for lrs in recorded["lrs"]} == {0.5}
    assert trainer.learning_rate == 0.05


@pytest.mark.parametrize("how", ["trainer", "optimizer"])
def test_a_trainer_level_scheduler_is_refused_before_anything_changes(how):
    net = bn_chain()
    sched = mx.lr_scheduler.FactorScheduler(step=10)
    given = {"trainer": LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01,
                                                      "lr_scheduler": sched})} \
        if how == "trainer" else {"optimizer": mx.optimizer.SGD(lr_scheduler=sched)}
    before = arrays(net.collect_params().values())
    with pytest.raises(ValueError, match=rf"the {how}'s optimizer has its own lr_scheduler"):
        fine_tune(net, loader(), 1, progress=False, **given)
    assert all(np.array_equal(a, b) for a, b in zip(before, arrays(net.collect_params().values())))


def test_a_phase_starts_with_one_trainer_call(monkeypatch, recorded):
    """Stock trap: each phase took three refreshes (set_layers, then the limit twice)."""
    calls = []
    for name in ("_refresh", "_resolve"):
        real = getattr(LayerwiseTrainer, name)
        monkeypatch.setattr(LayerwiseTrainer, name, lambda self, *a, _real=real, _name=name,
                            **k: calls.append(_name) or _real(self, *a, **k))
    fine_tune(bn_chain(), loader(), epochs=1, freeze_epochs=1, progress=False)
    assert calls.count("_refresh") == 2 and calls.count("_resolve") == 2


def test_set_layers_with_a_limit_and_restart_is_the_three_calls_in_one():
    def run(one_call):
        net = bn_chain(seed=4)
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                                   layers={"*": 0.5})
        for x, y in loader(16, 2):
            fit_step(net, trainer, x, y)
        rules = phase_rules(net, "all", 6, 0.05, lr_mult=10)
        if one_call:
            trainer.set_layers(rules, trainable_blocks=3, restart=True)
        else:
            trainer.set_layers(rules)
            trainer.set_trainable_blocks(0)
            trainer.set_trainable_blocks(3, restart=True)
        seen = []
        for x, y in loader(24, 3):
            fit_step(net, trainer, x, y)
            seen.append(trainer.current_lrs())
        return seen, arrays(net.collect_params().values())

    (lrs_a, end_a), (lrs_b, end_b) = run(True), run(False)
    assert lrs_a == lrs_b
    assert all(np.array_equal(a, b) for a, b in zip(end_a, end_b))


def fit_step(net, trainer, x, y):
    from mxnet import autograd
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()
    trainer.step(x.shape[0])
