"""Frozen really means frozen: weights, BatchNorm statistics, optimizer state."""
import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import bn_chain, three_layers, train_step, weights
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer


def bn_stats(bn):
    return bn.running_mean.data().asnumpy().copy(), bn.running_var.data().asnumpy().copy()


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("value", [0, None, {"frozen": True}, {"lr_mult": 0}])
def test_frozen_layer_bit_identical_after_five_steps(hybridize, value):
    net = bn_chain(hybridize=hybridize)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01},
                               layers={"3": value, "4": value})
    frozen = net[3].collect_params()
    frozen.update(net[4].collect_params())
    before = {k: p.data().asnumpy().copy() for k, p in frozen.items()}
    trained_before = net[0].weight.data().asnumpy().copy()
    for step in range(5):
        train_step(net, trainer, step)
    for k, p in frozen.items():
        assert p.grad_req == "null", k
        assert np.array_equal(p.data().asnumpy(), before[k]), k  # incl. running mean/var
    assert not np.array_equal(net[0].weight.data().asnumpy(), trained_before)


@pytest.mark.parametrize("hybridize", [False, True])
def test_batchnorm_stats_frozen_even_with_trainable_layer_upstream(hybridize):
    """Stock trap: MXNet moves running statistics in backward even with gamma/beta frozen."""
    net = bn_chain(hybridize=hybridize)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"1": 0})
    mean, var = bn_stats(net[1])
    for step in range(5):
        train_step(net, trainer, step)
    assert np.array_equal(bn_stats(net[1])[0], mean) and np.array_equal(bn_stats(net[1])[1], var)
    assert net[1]._kwargs["use_global_stats"] is True
    # the unfrozen BatchNorm still learns its statistics
    assert not np.array_equal(bn_stats(net[4])[0], np.zeros(8))


def test_stock_gluon_moves_stats_of_frozen_batchnorm():
    """The trap itself, shown on plain Gluon (if this ever fails, MXNet changed)."""
    net = bn_chain()
    for p in net[1].collect_params().values():
        if p._differentiable:
            p.grad_req = "null"
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    mean, _ = bn_stats(net[1])
    train_step(net, trainer, 0)
    assert not np.array_equal(bn_stats(net[1])[0], mean)


def test_bn_stats_policy_keeps_updating_statistics():
    net = bn_chain()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"1": 0}, bn="stats")
    gamma = net[1].gamma.data().asnumpy().copy()
    mean, _ = bn_stats(net[1])
    train_step(net, trainer, 0)
    assert np.array_equal(net[1].gamma.data().asnumpy(), gamma)
    assert not np.array_equal(bn_stats(net[1])[0], mean)


def test_bn_train_policy_trains_scale_and_shift_of_frozen_blocks():
    net = bn_chain()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"0:2": 0}, bn="train")
    w0 = net[0].weight.data().asnumpy().copy()
    gamma = net[1].gamma.data().asnumpy().copy()
    train_step(net, trainer, 0)
    assert np.array_equal(net[0].weight.data().asnumpy(), w0)
    assert not np.array_equal(net[1].gamma.data().asnumpy(), gamma)


def test_thawed_layer_starts_with_fresh_momentum():
    """Stock trap: MXNet resumes the old momentum after a freeze/thaw."""
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    for step in range(3):
        train_step(net, trainer, step)
    trainer.set_layers({"l2": 0})
    train_step(net, trainer, 3)
    trainer.set_layers({})
    assert net.l2.weight.grad_req == "write"
    from finetune_helpers import sgd_rates
    rates = sgd_rates(net, trainer, 1)[0]
    # fresh state: the first update after thawing is exactly -lr * grad, no momentum carried
    assert rates[net.l2.weight.name] == pytest.approx(0.1, rel=1e-3)
    assert rates[net.l1.weight.name] != pytest.approx(0.1, rel=1e-2)  # l1 kept its momentum


def test_freeze_and_thaw_mid_training_with_set_layers():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 0.01}, layers={"l1": 0})
    assert net.l1.weight.grad_req == "null" and net.l1.weight.lr_mult == 0.0
    train_step(net, trainer, 0)
    before = weights(net)
    trainer.set_layers({"l1": 1.0, "l3": None})
    train_step(net, trainer, 1)
    after = weights(net)
    assert not np.array_equal(after[net.l1.weight.name], before[net.l1.weight.name])
    assert np.array_equal(after[net.l3.weight.name], before[net.l3.weight.name])
    assert net.l3.bias.grad_req == "null"


def test_failed_set_layers_changes_nothing():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                               layers={"l1": 0, "*": 0.5})
    train_step(net, trainer, 0)
    rates, reqs = trainer.rates, [p.grad_req for p in net.collect_params().values()]
    mults = [p.lr_mult for p in net.collect_params().values()]
    states = dict(trainer._updaters[0].states)
    for bad in ({"l1": 1.0, "l4": 2.0}, {"l1": "fast"}, {"l1": 1.0, 7: 0.1}):
        with pytest.raises((ValueError, TypeError)):
            trainer.set_layers(bad)
        assert trainer.rates == rates
        assert [p.grad_req for p in net.collect_params().values()] == reqs
        assert [p.lr_mult for p in net.collect_params().values()] == mults
        assert trainer._updaters[0].states.keys() == states.keys()
    assert trainer.layers == {"l1": 0, "*": 0.5}


def test_user_frozen_parameters_stay_frozen_unless_a_rule_thaws_them():
    net = three_layers()
    net.l1.collect_params().setattr("grad_req", "null")
    LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l3": 0.1})
    assert net.l1.weight.grad_req == "null"
    LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l1": 0.1})
    assert net.l1.weight.grad_req == "write"


def test_running_statistics_never_become_trainable():
    net = bn_chain()
    LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 1.0})
    assert net[1].running_mean.grad_req == "null"
    assert net[1].gamma.grad_req == "write"


@pytest.mark.parametrize("ctx_count,kvstore,update_on_kvstore", [
    (1, None, None), (1, "device", True), (1, "local", False), (1, None, True),
    (2, "device", None), (2, "device", True), (2, "device", False),
    (2, "local", True), (2, "local", False)])
def test_rules_hold_in_every_kvstore_mode(ctx_count, kvstore, update_on_kvstore):
    """Frozen stays frozen and the result equals the one-context, no-kvstore run."""
    from finetune_helpers import batch
    from mxnet import autograd

    def run(ctxs, kv, on_kv):
        mx.random.seed(3)
        net = three_layers(3)
        net.collect_params().reset_ctx(ctxs)
        sched = mx.lr_scheduler.FactorScheduler(step=1, factor=0.5)
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.5},
                                   kvstore=kv, update_on_kvstore=on_kv, layers={
                                       "l1": 0, "l2": {"lr_scheduler": sched}, "l3": 2.0})
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        for step in range(3):
            x, y = batch(step, 8)
            xs = gluon.utils.split_and_load(x, ctxs)
            ys = gluon.utils.split_and_load(y, ctxs)
            with autograd.record():
                losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
            for loss in losses:
                loss.backward()
            trainer.step(8)
        return {k[len(net.prefix):]: p.data(ctxs[-1]).asnumpy()
                for k, p in net.collect_params().items()}

    initial = {k[len(n.prefix):]: p.data().asnumpy()
               for n in [three_layers(3)] for k, p in n.collect_params().items()}
    reference = run([mx.cpu(0)], None, None)
    ctxs = [mx.cpu(i) for i in range(ctx_count)]
    got = run(ctxs, kvstore, update_on_kvstore)
    for key, value in got.items():
        if key.startswith("dense0_"):
            assert np.array_equal(value, initial[key]), key
        np.testing.assert_allclose(value, reference[key], rtol=1e-5, atol=1e-6)


def test_a_trainer_over_part_of_a_net_leaves_the_other_batchnorms_alone():
    """Stock trap: a head-only trainer switched every BatchNorm that get_model had frozen
    back to batch statistics, changing the training-mode output."""
    from mxnet import autograd, nd

    from gluon_finetune import get_model
    net = get_model("resnet18_v1", classes=3, unfreeze=1)
    modes = lambda: [b._kwargs["use_global_stats"] for b in _batchnorms(net)]  # noqa: E731
    assert all(modes())
    x = nd.random.uniform(shape=(2, 3, 32, 32))
    with autograd.record():
        before = net(x).asnumpy()
    head = LayerwiseTrainer(net.output.collect_params(), "sgd", {"learning_rate": 0.1},
                            net=net, layers={"*": 1.0})
    assert all(modes())
    trunk = LayerwiseTrainer([p for n, p in net.collect_params().items() if "dense" not in n],
                             "sgd", {"learning_rate": 0.1}, net=net,
                             layers={"features.1": 0, "*_dense*": 2.0}, strict=False)
    assert all(modes()) and head.net is trunk.net
    with autograd.record():
        assert np.array_equal(net(x).asnumpy(), before)


def _batchnorms(net):
    from gluon_finetune.trainer.freezing import batchnorm_layers
    return batchnorm_layers(net)


def symbolblock_behind_a_trainable_layer(folder, hybridize):
    """A trainable 1x1 convolution, then an imported Conv -> BatchNorm -> Dense."""
    from finetune_helpers import exported_symbolblock
    from mxnet.gluon import nn
    block = exported_symbolblock(folder)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(3, 1, in_channels=3), block)
    net[0].initialize(mx.init.Xavier())
    if hybridize:
        net.hybridize()
    return net, block


def image_steps(net, trainer, steps):
    from mxnet import autograd
    for step in range(steps):
        mx.random.seed(step)
        x = mx.nd.random.uniform(shape=(4, 3, 8, 8))
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        trainer.step(4)


def running_stats(block):
    return {n: p.data().asnumpy().copy() for n, p in block.collect_params().items()
            if "running" in n}


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("rule", ["1", "1.exp_batchnorm0"])
def test_a_frozen_batchnorm_inside_a_symbolblock_keeps_its_running_statistics(
        tmp_path, hybridize, rule):
    """Issue 21 item 5: the BatchNorm node of an imported graph kept updating its running
    statistics whenever a layer upstream trained (bn='frozen' reached only Gluon layers)."""
    net, block = symbolblock_behind_a_trainable_layer(tmp_path, hybridize)
    own_graph = block._cached_graph[1]
    x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
    before_out = net(x).asnumpy()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={rule: 0})
    np.testing.assert_array_equal(net(x).asnumpy(), before_out)  # the same computation
    stats, upstream = running_stats(block), net[0].weight.data().asnumpy().copy()
    image_steps(net, trainer, 3)
    for name, value in running_stats(block).items():
        assert np.array_equal(value, stats[name]), name
    assert not np.array_equal(net[0].weight.data().asnumpy(), upstream)
    trainer.set_layers({})  # thawed: the block runs its own graph again, statistics move
    assert block._cached_graph[1] is own_graph
    image_steps(net, trainer, 1)
    assert all(not np.array_equal(v, stats[n]) for n, v in running_stats(block).items())


def test_bn_stats_and_train_policies_reach_a_symbolblocks_batchnorm(tmp_path):
    net, block = symbolblock_behind_a_trainable_layer(tmp_path, hybridize=True)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"1": 0}, bn="stats")
    stats = running_stats(block)
    image_steps(net, trainer, 1)
    assert all(not np.array_equal(v, stats[n]) for n, v in running_stats(block).items())
    net, block = symbolblock_behind_a_trainable_layer(tmp_path, hybridize=True)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"1": 0}, bn="train")
    params = block.collect_params()
    gamma = [n for n in params if n.endswith("batchnorm0_gamma")][0]
    conv = [n for n in params if n.endswith("conv0_weight")][0]
    assert params[gamma].grad_req == "write" and params[conv].grad_req == "null"
    before = {n: params[n].data().asnumpy().copy() for n in (gamma, conv)}
    image_steps(net, trainer, 1)
    assert not np.array_equal(params[gamma].data().asnumpy(), before[gamma])
    assert np.array_equal(params[conv].data().asnumpy(), before[conv])


def test_a_snapshot_puts_back_a_symbolblocks_own_graph(tmp_path):
    """lr_find's Snapshot restores BatchNorm modes; inside a SymbolBlock that is its graph."""
    from gluon_finetune.recipes.snapshots import Snapshot
    net, block = symbolblock_behind_a_trainable_layer(tmp_path, hybridize=False)
    own_graph = block._cached_graph[1]
    snap = Snapshot(net)
    LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"1": 0})
    assert block._cached_graph[1] is not own_graph
    snap.restore()
    assert block._cached_graph[1] is own_graph
    stats = running_stats(block)
    image_steps(net, gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}), 1)
    assert all(not np.array_equal(v, stats[n]) for n, v in running_stats(block).items())


def test_a_symbolblock_alone_freezes_its_own_batchnorm_node(tmp_path):
    from finetune_helpers import exported_symbolblock
    block = exported_symbolblock(tmp_path)
    trainer = LayerwiseTrainer(block, "sgd", {"learning_rate": 0.1},
                               layers={"exp_batchnorm0": 0})
    stats = running_stats(block)
    image_steps(block, trainer, 2)  # the convolution before it trains
    for name, value in running_stats(block).items():
        assert np.array_equal(value, stats[name]), name
