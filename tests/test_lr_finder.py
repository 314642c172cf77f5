"""lr_find: the sweep's rates, early stopping, the suggestion, and no trace afterwards."""
import os
import tempfile

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import bn_chain
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer, LRFinderResult, OneCycle, lr_find
from gluon_finetune.recipes.lr_finder import (
    geometric_rates,
    relative_rates,
    smoothed_losses,
    suggest_lr,
)

LOSS = gluon.loss.SoftmaxCrossEntropyLoss()
CPU2 = [mx.cpu(0), mx.cpu(1)]


RULES = {0: 0, "3": 2.0, "6": {"lr_scheduler": OneCycle(20, base_lr=0.05)}}


def layerwise(net, update_on_kvstore=None):
    """BatchNorm, a frozen block, a scheduled rule, momentum, weight decay, a limit."""
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-3},
                               layers=RULES, update_on_kvstore=update_on_kvstore)
    trainer.set_trainable_blocks(3)
    return trainer


def loader(seed=1, count=40, shuffle=True):
    rng = np.random.RandomState(seed)
    x = rng.randn(count, 4).astype("float32")
    y = rng.randint(0, 3, count).astype("float32")
    return gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size=8, shuffle=shuffle)


def train(net, trainer, data, contexts):
    for x, y in data:
        xs = gluon.utils.split_and_load(x, contexts)
        ys = gluon.utils.split_and_load(y, contexts)
        with autograd.record():
            losses = [LOSS(net(a), b) for a, b in zip(xs, ys)]
        autograd.backward(losses)
        trainer.step(x.shape[0])


def arrays(net):
    mx.nd.waitall()
    return [[a.asnumpy() for a in p.list_data()] + [g.asnumpy() for g in p.list_grad()]
            if p.grad_req != "null" else [a.asnumpy() for a in p.list_data()]
            for p in net.collect_params().values()]


def assert_same(a, b):
    assert len(a) == len(b)
    for i, (left, right) in enumerate(zip(a, b)):
        assert all(np.array_equal(x, y) for x, y in zip(left, right)), f"parameter {i} differs"


def trainer_state(trainer):
    """What must not move: the optimizer state (a states file), rate, limit, settings."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.states")
        trainer.save_states(path)
        with open(path, "rb") as f:
            states = f.read()
    params = [(p.lr_mult, p.wd_mult, p.grad_req, p._trainer is trainer) for p in trainer._params]
    return (states, trainer.learning_rate, getattr(trainer, "trainable_blocks", None),
            trainer._optimizer.num_update, params)


def bn_layers(net):
    return [b for b in net._children.values() if isinstance(b, nn.BatchNorm)]


def bn_modes(net):
    return [b._kwargs["use_global_stats"] for b in bn_layers(net)]


MODES = [("layerwise", None, None), ("layerwise", None, True), ("layerwise", CPU2, False),
         ("layerwise", CPU2, True), ("adam", CPU2, False), ("scheduled", None, None),
         ("gluon", None, None), ("gluon", CPU2, True)]


def make_trainer(kind, net, update_on_kvstore):
    if kind == "layerwise":
        return layerwise(net, update_on_kvstore)
    if kind == "adam":
        return LayerwiseTrainer(net, "adam", {"learning_rate": 0.01}, layers=RULES,
                                update_on_kvstore=update_on_kvstore)
    if kind == "scheduled":  # the trainer's own schedule (FactorScheduler mutates itself)
        return LayerwiseTrainer(net, "sgd", {"momentum": 0.9, "lr_scheduler":
                                mx.lr_scheduler.FactorScheduler(2, 0.5, base_lr=0.1)},
                                layers=RULES)
    return gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                         update_on_kvstore=update_on_kvstore)


def observed(net, trainer):
    """What lr_find must not change. (Reading it is not free: save_states sets up the
    kvstore, so the run without lr_find reads it at the same points.)"""
    return arrays(net), trainer_state(trainer), bn_modes(net), np.random.get_state()


def assert_observed_same(a, b):
    assert_same(a[0], b[0])
    assert a[1] == b[1] and a[2] == b[2]
    assert a[3][0] == b[3][0] and np.array_equal(a[3][1], b[3][1]) and a[3][2:] == b[3][2:]


def maybe_lr_find(use, net, trainer, seed):
    before = observed(net, trainer)
    if use:
        result = lr_find(net, trainer, loader(seed), LOSS, start_lr=1e-3, end_lr=1.0,
                         num_iter=12, progress=False)
        assert len(result.raw_losses) == 12 and len(set(result.raw_losses)) > 1  # it trained
        assert_observed_same(observed(net, trainer), before)


@pytest.mark.parametrize("kind,ctx,update_on_kvstore", MODES)
def test_training_after_lr_find_equals_training_without_it(kind, ctx, update_on_kvstore):
    contexts = ctx or [mx.cpu()]
    runs = []
    for use_lr_find in (False, True):
        net = bn_chain(ctx=ctx, hybridize=True)
        trainer = make_trainer(kind, net, update_on_kvstore)
        np.random.seed(0)
        maybe_lr_find(use_lr_find, net, trainer, 3)  # before the first step
        train(net, trainer, loader(), contexts)  # momentum, counts, clocks, BN statistics
        maybe_lr_find(use_lr_find, net, trainer, 2)
        train(net, trainer, loader(), contexts)  # shuffles with NumPy's generator
        runs.append(arrays(net))
    assert_same(runs[1], runs[0])


def test_a_trainer_over_part_of_the_net_trains_only_its_part_in_the_sweep():
    net = bn_chain()
    trainer = LayerwiseTrainer(net[6].collect_params(), "sgd",
                               {"learning_rate": 0.1, "momentum": 0.9}, net=net)
    before = arrays(net)
    seen = []

    def loss(out, label):
        seen.append([p.data().asnumpy().copy() for p in net.collect_params().values()])
        return LOSS(out, label)

    lr_find(net, trainer, loader(), loss, start_lr=0.01, end_lr=1.0, num_iter=6,
            progress=False)
    assert_same(arrays(net), before)
    head = {id(p) for p in net[6].collect_params().values()}
    for i, p in enumerate(net.collect_params().values()):
        moved = not np.array_equal(seen[0][i], seen[-1][i])
        assert moved == (id(p) in head or "running" in p.name), p.name


def test_the_sweep_trains_at_the_scaled_rates_of_every_rule():
    net = bn_chain(hybridize=True)
    trainer = layerwise(net)
    train(net, trainer, loader(shuffle=False), [mx.cpu()])
    base, multipliers = relative_rates(trainer)
    next_lrs = trainer.preview_lrs(1)[0]
    names = [p.name for p in trainer.params]
    by_block = {name: i for i, (_, block) in enumerate(trainer.block_list) for name in block}
    schedule = OneCycle(20, base_lr=0.1)  # a rule without a rate peaks at the base rate
    t = trainer.optimizer.num_update + 1
    for name, mult, lr in zip(names, multipliers, next_lrs):
        block = by_block.get(name)
        if block in (0, 1):  # frozen by the rule, and by the limit of 3 blocks
            assert mult == 0.0
        elif block == 2:     # "3": 2.0
            assert mult == pytest.approx(2.0)
        elif block == 4:     # the scheduled head: its value at the next step, relative
            assert mult == pytest.approx(schedule(t) / 0.1) and lr == pytest.approx(schedule(t))
        elif block == 3:     # a BatchNorm: scale and shift at the base rate, statistics null
            assert mult == (1.0 if name.endswith(("gamma", "beta")) else 0.0)
    assert base == 0.1
    # the sweep itself: a stock trainer at lr * multiplier, fresh momentum, same batches
    twin = bn_chain(seed=1, hybridize=True)
    order = list(net.collect_params().values())
    theirs = list(twin.collect_params().values())
    for mine, other in zip(order, theirs):
        other.set_data(mine.data())
        other.grad_req = mine.grad_req
    for mine, other in zip(bn_layers(net), bn_layers(twin)):
        other._kwargs["use_global_stats"] = mine._kwargs["use_global_stats"]
    twin_params = [theirs[order.index(p)] for p in trainer.params]
    for param, mult in zip(twin_params, multipliers):
        param.lr_mult = mult
    stock = gluon.Trainer(twin_params, "sgd", {"learning_rate": 1.0, "momentum": 0.9,
                                               "wd": 1e-3})
    result = lr_find(net, trainer, loader(3, shuffle=False), LOSS, start_lr=1e-2, end_lr=1.0,
                     num_iter=7, progress=False)
    assert not result.diverged
    expected = []
    for lr, (x, y) in zip(result.lrs, list(loader(3, shuffle=False)) * 2):
        stock.set_learning_rate(lr)
        with autograd.record():
            loss = LOSS(twin(x), y)
        loss.backward()
        stock.step(x.shape[0])
        expected.append(float(loss.mean().asscalar()))
    assert list(result.raw_losses) == expected  # bit for bit
    assert result.raw_losses[-1] != pytest.approx(result.raw_losses[0], rel=1e-3)  # it trained


def small(seed=0, ctx=None):
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Dense(8, in_units=4, activation="tanh"), nn.Dense(3, in_units=8))
    net.initialize(mx.init.Xavier(), ctx=ctx)
    return net


def sgd(net, **kwargs):
    return LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9}, **kwargs)


def test_the_sweep_stops_once_the_smoothed_loss_diverges():
    net = small()
    result = lr_find(net, sgd(net), loader(), LOSS, start_lr=1e-3, end_lr=1e4, num_iter=60,
                     smooth=0.3, diverge=3.0, progress=False)
    assert result.diverged and len(result.lrs) < 60
    assert result.lrs == tuple(geometric_rates(1e-3, 1e4, 60)[:len(result.lrs)])
    last, rest = result.losses[-1], result.losses[:-1]
    assert not (last <= 3.0 * min(result.losses))  # above the limit (or not finite) ...
    assert all(v <= 3.0 * min(rest[:k + 1]) for k, v in enumerate(rest))  # ... first time
    assert result.losses == pytest.approx(smoothed_losses(result.raw_losses, 0.3), nan_ok=True)


def test_geometric_rates_and_smoothing():
    rates = geometric_rates(1e-7, 10.0, 100)
    assert rates[0] == 1e-7 and rates[-1] == 10.0 and len(rates) == 100
    assert np.allclose(np.diff(np.log(rates)), np.log(1e8) / 99)
    assert smoothed_losses([3.0], 0.05) == [pytest.approx(3.0)]  # bias-corrected: not near 0
    assert smoothed_losses([1.0, 2.0, 3.0], 1.0) == [1.0, 2.0, 3.0]
    beta = 0.95
    expected = (0.05 * beta * 1.0 + 0.05 * 2.0) / (1 - beta ** 2)
    assert smoothed_losses([1.0, 2.0], 0.05)[1] == pytest.approx(expected)


def test_the_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = geometric_rates(1e-5, 1.0, 20)
    losses = [2.0] * 5 + [1.9, 1.7, 1.2, 0.9, 0.8, 0.75, 0.7, 0.69, 0.68, 0.7, 0.9, 1.5, 3, 6, 9]
    # 3-point windows (a tenth of 20, at least 3), equal steps in log lr: centred on 1.7
    # the slope is -0.35 a step, on 1.2 -0.40, on 0.9 -0.20
    assert suggest_lr(lrs, losses) == lrs[7]
    assert suggest_lr(lrs, sorted(losses)) is None                # never falls
    assert suggest_lr(lrs[:2], [1.0, float("nan")]) is None       # one finite point
    assert suggest_lr(lrs[:4], [3.0, 2.8, 1.0, 1.5]) == lrs[1]    # not the minimum itself
    steep_start = [9.0, 1.0] + [0.9 - 0.01 * k for k in range(18)]
    assert suggest_lr(lrs, steep_start) != lrs[1]                 # the first tenth is skipped


def test_one_noisy_batch_does_not_make_the_suggestion():
    lrs = geometric_rates(1e-6, 1.0, 40)
    losses = [2.0] * 40
    losses[8] = 1.6                                  # a dip: -0.2 a step on each side
    for k in range(20, 31):
        losses[k] = 2.0 - 0.15 * (k - 20)            # the real descent: -0.15 a step
    losses[31:] = [1.0 + 0.5 * k for k in range(9)]  # then divergence
    assert np.argmin(np.gradient(losses[4:31])) + 4 == 7  # point slopes would pick the dip
    assert 20 <= lrs.index(suggest_lr(lrs, losses)) <= 30


def test_a_failing_sweep_restores_everything_and_raises():
    net = small()
    trainer = sgd(net, layers={"0": 0.5})
    train(net, trainer, loader(), [mx.cpu()])
    before, state = arrays(net), trainer_state(trainer)
    calls = []

    def flaky(out, label):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return LOSS(out, label)

    with pytest.raises(RuntimeError, match="boom"):
        lr_find(net, trainer, loader(), flaky, start_lr=0.1, end_lr=10.0, num_iter=10,
                progress=False)
    assert len(calls) == 4
    assert_same(arrays(net), before)
    assert trainer_state(trainer) == state  # includes lr_mult and each _trainer pointer


def test_gradients_of_grad_req_add_are_kept_and_each_step_uses_one_batch():
    net = small()
    net.collect_params().setattr("grad_req", "add")
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x, y = next(iter(loader()))
    with autograd.record():
        LOSS(net(x), y).backward()
    before = arrays(net)  # weights and the accumulated gradients
    lr_find(net, trainer, loader(), LOSS, num_iter=5, progress=False)
    assert_same(arrays(net), before)
    assert all(d._fresh_grad for p in net.collect_params().values() for d in p.list_data())


def test_a_one_pass_iterator_ends_the_sweep_and_plain_arrays_work():
    net = small()
    rng = np.random.RandomState(0)
    batches = ((rng.randn(8, 4).astype("float32"), rng.randint(0, 3, 8)) for _ in range(3))
    result = lr_find(net, sgd(net), batches, LOSS, num_iter=10, progress=False)
    assert len(result.lrs) == 3 and not result.diverged


def test_a_distributed_kvstore_is_refused_before_anything_changes():
    net = small()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1},
                            kvstore="dist_sync")  # the kvstore is made at the first step
    with pytest.raises(ValueError, match="lr_find runs in one process, but the trainer's "
                                         "kvstore is 'dist_sync'"):
        lr_find(net, trainer, loader(), LOSS, progress=False)
    assert all(p._trainer is trainer for p in net.collect_params().values())


@pytest.mark.parametrize("kwargs,error,message", [
    ({"start_lr": 0}, ValueError, "start_lr must be a finite number > 0, got 0"),
    ({"start_lr": 1.0, "end_lr": 0.5}, ValueError, "end_lr must be greater than start_lr"),
    ({"num_iter": 1}, ValueError, "num_iter must be an int >= 2, got 1"),
    ({"num_iter": 2.5}, TypeError, "num_iter must be an int >= 2, got float 2.5"),
    ({"smooth": 0}, ValueError, r"smooth must be in \(0, 1\]"),
    ({"diverge": 1}, ValueError, "diverge must be > 1"),
    ({"progress": 1}, TypeError, "progress must be True or False"),
    ({"loss_fn": "mse"}, TypeError, "loss_fn must be a callable"),
    ({"data": 3}, TypeError, "data must be an iterable of \\(x, label\\) batches"),
    ({"data": [(1, 2, 3)]}, TypeError, "data must yield \\(x, label\\) batches, got tuple "
                                       "of length 3"),
    ({"data": []}, ValueError, "data yielded no batches"),
])
def test_arguments_are_checked(kwargs, error, message):
    net = small()
    trainer = sgd(net)
    before, state = arrays(net), trainer_state(trainer)
    args = dict(net=net, trainer=trainer, data=loader(), loss_fn=LOSS, progress=False)
    with pytest.raises(error, match=message):
        lr_find(**{**args, **kwargs})
    assert_same(arrays(net), before)
    assert trainer_state(trainer) == state


def test_the_trainer_must_train_this_net_and_shapes_must_be_known():
    net, other = small(), small(1)
    with pytest.raises(ValueError, match="the trainer has parameters that are not in net"):
        lr_find(net, sgd(other), loader(), LOSS, progress=False)
    lazy = nn.Dense(3)
    lazy.initialize()
    trainer = gluon.Trainer(lazy.collect_params(), "sgd", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="is not initialized yet .* run one forward pass"):
        lr_find(lazy, trainer, loader(), LOSS, progress=False)


def test_the_result_plots_loss_against_the_rate(tmp_path):
    net = small()
    result = lr_find(net, sgd(net), loader(), LOSS, start_lr=1e-4, end_lr=100.0,
                     num_iter=30, progress=False)
    assert isinstance(result, LRFinderResult) and result.suggestion in result.lrs
    path = result.plot(str(tmp_path / "plots" / "lr_find.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    flat = LRFinderResult((1e-3, 1e-2), (1.0, 1.0), (1.0, 1.0), None, False)
    assert os.path.getsize(flat.plot(str(tmp_path / "flat.png"))) > 1000
    with pytest.raises(ValueError, match="no points"):
        LRFinderResult((), (), (), None, False).plot(str(tmp_path / "empty.png"))
