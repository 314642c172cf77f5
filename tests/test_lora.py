"""LoRA on small networks: the update arithmetic, what trains, rules, merge, modes, errors."""
import copy

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import LOSS, exported_symbolblock, trainable_names, weights
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from gluon_finetune import (
    GradualUnfreezing,
    LayerwiseTrainer,
    add_lora,
    block_names,
    explain,
    freeze,
    layer_decay,
    lora_adapters,
    merge_lora,
    no_weight_decay,
    unfreeze,
)
from gluon_finetune.errors import FinetuneError, NoMatchError

X = nd.array(np.random.RandomState(0).rand(4, 3, 6, 6))
Y = nd.array([0, 1, 2, 0])


def conv_net(seed=0, in_channels=3, hybridize=False, ctx=None):
    """conv -> BN -> relu -> Dense -> Dense (head); ``in_channels=0``: deferred shapes."""
    mx.random.seed(seed)
    net = nn.HybridSequential(prefix="c_")
    with net.name_scope():
        net.add(nn.Conv2D(4, 3, in_channels=in_channels), nn.BatchNorm(), nn.Activation("relu"),
                nn.Dense(8, activation="tanh"), nn.Dense(3))
    net.initialize(mx.init.Xavier(), ctx=ctx)
    if hybridize:
        net.hybridize()
    return net


def train(net, trainer, steps=3, x=X, y=Y):
    for _ in range(steps):
        with autograd.record():
            loss = LOSS(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])


def randomize(net, seed=1):
    """Non-zero adapters, as after training."""
    rng = np.random.RandomState(seed)
    for adapter in lora_adapters(net).values():
        for p in (adapter.a, adapter.b):
            p.set_data(nd.array(rng.randn(*p.shape) * 0.3))


def test_adapters_are_named_and_shaped_as_the_issue_says():
    net = conv_net()
    net(X)
    assert add_lora(net, rank=2, alpha=6) == ["c_conv0_weight", "c_dense0_weight"]
    conv, dense = lora_adapters(net).values()
    assert (conv.a.name, conv.b.name) == ("c_conv0_weight_lora_a", "c_conv0_weight_lora_b")
    assert conv.a.shape == (2, 3 * 3 * 3) and conv.b.shape == (4, 2)
    assert dense.a.shape == (2, 4 * 4 * 4) and dense.b.shape == (8, 2)
    assert conv.scale == dense.scale == 3.0
    assert not dense.b.data().asnumpy().any()
    bound = 1 / np.sqrt(64)  # PEFT's initialisation: uniform in +-1/sqrt(fan_in)
    assert 0 < np.abs(dense.a.data().asnumpy()).max() <= bound


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("deferred", [False, True])
def test_outputs_are_bit_identical_right_after_add_lora(hybridize, deferred):
    net = conv_net(in_channels=0 if deferred else 3, hybridize=hybridize)
    if deferred:  # the reference: the same weights in a net without adapters, run after
        add_lora(net, rank=2)
        adapted = net(X).asnumpy()
        plain = conv_net(in_channels=3)
        for mine, theirs in zip(plain.collect_params().values(),
                                [p for n, p in net.collect_params().items() if "_lora_" not in n]):
            mine.set_data(theirs.data())
        assert np.array_equal(adapted, plain(X).asnumpy())
    else:
        before = net(X).asnumpy()
        add_lora(net, rank=2)
        assert np.array_equal(before, net(X).asnumpy())


@pytest.mark.parametrize("hybridize", [False, True])
def test_the_forward_uses_w_plus_scaled_b_times_a(hybridize):
    net = conv_net(hybridize=hybridize)
    net(X)
    add_lora(net, rank=3, alpha=5)
    randomize(net)
    expected = conv_net(hybridize=False)
    expected(X)
    for name, param in expected.collect_params().items():
        value = net.collect_params()[name].data().asnumpy()
        adapter = lora_adapters(net).get(name)
        if adapter is not None:
            update = adapter.b.data().asnumpy() @ adapter.a.data().asnumpy()
            value = value + (5 / 3) * update.reshape(value.shape)
        param.set_data(nd.array(value))
    assert np.allclose(net(X).asnumpy(), expected(X).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rules", [None, {"*": 1.0}, "layer_decay", {"*": 2.0, 0: 1.0}])
def test_training_moves_only_the_adapters_and_the_head(rules):
    net = conv_net(hybridize=True)
    net(X)
    add_lora(net, rank=2)
    if rules == "layer_decay":
        rules = layer_decay(net, 0.05, 0.5)
    before = weights(net)
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 0.05}, layers=rules)
    train(net, trainer)
    after = weights(net)
    moved = {n for n in before if not np.array_equal(before[n], after[n])}
    assert moved == {n for n in before if "_lora_" in n} | {"c_dense1_weight", "c_dense1_bias"}
    assert net.collect_params()["c_conv0_weight"].grad_req == "null"


def test_no_rule_unfreeze_or_grad_req_thaws_an_adapted_weight():
    net = conv_net()
    net(X)
    add_lora(net, rank=2)
    weight = net[0].weight
    LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 1, "c_conv0_weight": 3})
    unfreeze(net)
    weight.grad_req = "write"
    assert weight.grad_req == "null"
    assert freeze(net, 0) == ["c_conv0_weight_lora_a", "c_conv0_weight_lora_b"]


def test_adapters_belong_to_their_weights_block_and_blocks_keep_their_numbers():
    net = conv_net()
    net(X)
    listed = [label for label, _ in block_names(net)]
    add_lora(net, rank=2)
    after = block_names(net)
    assert [label for label, _ in after] == listed == ["0", "1", "3", "4"]
    assert {"c_conv0_weight_lora_a", "c_conv0_weight_lora_b"} <= after[0].names
    rules = layer_decay(net, 0.1, 0.5)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers=rules)
    table = trainer.explain()
    assert table["c_dense0_weight_lora_a"]["lr"] == pytest.approx(0.1 * 0.5)
    assert table["c_conv0_weight_lora_b"]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_gradual_unfreezing_thaws_adapters_block_by_block():
    net = conv_net()
    net(X)
    add_lora(net, rank=2)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    policy = GradualUnfreezing(trainer, every=1)
    policy.on_epoch(0)
    assert trainable_names(net) == {"c_dense1_weight", "c_dense1_bias"}
    policy.on_epoch(1)
    assert trainable_names(net) == {"c_dense1_weight", "c_dense1_bias", "c_dense0_weight_lora_a",
                                    "c_dense0_weight_lora_b"}


def test_explain_shows_adapted_weights_frozen_with_their_adapters_beside():
    net = conv_net()
    net(X)
    add_lora(net, rank=2)
    for table in (explain(net, {"*": 0.1}, learning_rate=0.1),
                  LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 1}).explain()):
        names = [row["parameter"] for row in table]
        at = names.index("c_dense0_weight")
        assert names[at + 1:at + 3] == ["c_dense0_weight_lora_a", "c_dense0_weight_lora_b"]
        assert table["c_dense0_weight"]["frozen"] and not table["c_dense0_weight_lora_a"]["frozen"]
        assert any("2 weights are adapted by LoRA" in note for note in table.notes)


def test_no_weight_decay_leaves_adapters_decayed():
    net = conv_net()
    net(X)
    add_lora(net, rank=2, bias="all")
    trainer = LayerwiseTrainer(net, "adamw" if "adamw" in mx.optimizer.Optimizer.opt_registry
                               else "adam", {"learning_rate": 0.1, "wd": 0.01},
                               layers=no_weight_decay(net))
    assert net[3].bias.wd_mult == 0 and net[3].weight_lora_a.wd_mult == 1
    train(net, trainer, steps=1)


@pytest.mark.parametrize("bias,trained", [
    ("none", set()), ("lora_only", {"c_conv0_bias", "c_dense0_bias"}),
    ("all", {"c_conv0_bias", "c_dense0_bias", "c_dense1_bias"})])
def test_biases_stay_frozen_unless_asked(bias, trained):
    net = conv_net()
    net(X)
    add_lora(net, rank=2, bias=bias, train=None)
    assert {n for n in trainable_names(net) if "_lora_" not in n} == trained


def test_batchnorm_outside_train_uses_its_running_statistics_and_a_trainer_keeps_it():
    net = conv_net(hybridize=True)
    net(X)
    add_lora(net, rank=2)
    assert net[1]._kwargs["use_global_stats"]
    stats = net[1].running_mean.data().asnumpy().copy()
    train(net, LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 1}), 2)
    assert np.array_equal(stats, net[1].running_mean.data().asnumpy())
    trained = conv_net()
    trained(X)
    add_lora(trained, rank=2, bn="train")
    assert {"c_batchnorm0_gamma", "c_batchnorm0_beta"} <= trainable_names(trained)


@pytest.mark.parametrize("hybridize", [False, True])
def test_merge_gives_the_adapted_outputs_and_exactly_the_original_parameters(hybridize,
                                                                            tmp_path):
    net = conv_net(hybridize=hybridize)
    net(X)
    original = list(net.collect_params().values())
    grad_reqs = [p.grad_req for p in original]
    add_lora(net, rank=2)
    train(net, LayerwiseTrainer(net, "adam", {"learning_rate": 0.05}))
    adapted = net(X).asnumpy()
    assert merge_lora(net) == ["c_conv0_weight", "c_dense0_weight"]
    assert list(net.collect_params().values()) == original
    assert [p.grad_req for p in original] == grad_reqs
    assert not lora_adapters(net) and "hybrid_forward" not in net[0].__dict__
    assert np.allclose(net(X).asnumpy(), adapted, rtol=1e-5, atol=1e-6)
    net.hybridize()
    net(X)
    net.export(str(tmp_path / "merged"))
    imported = gluon.SymbolBlock.imports(str(tmp_path / "merged-symbol.json"), ["data"],
                                         str(tmp_path / "merged-0000.params"))
    assert set(imported.collect_params().keys()) == {p.name for p in original}
    assert np.allclose(imported(X).asnumpy(), adapted, rtol=1e-5, atol=1e-6)


def test_deferred_shapes_are_inferred_and_the_graph_rebuilt_without_the_probe():
    net = conv_net(in_channels=0, hybridize=True)
    add_lora(net, rank=2)
    assert net[0].weight_lora_a.shape == (2, 0)
    net(X)
    assert net[0].weight_lora_a.shape == (2, 27)
    assert not net[0].hybrid_forward.provisional
    net(X)
    assert "slice_axis" not in net._cached_graph[1].tojson()


def test_several_contexts_keep_the_adapters_in_step():
    contexts = [mx.cpu(0), mx.cpu(1)]
    net = conv_net(ctx=contexts)
    xs = [X.as_in_context(c) for c in contexts]
    before = [net(x).asnumpy() for x in xs]
    add_lora(net, rank=2)
    assert all(np.array_equal(b, net(x).asnumpy()) for b, x in zip(before, xs))
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.5})
    with autograd.record():
        losses = [LOSS(net(x), Y.as_in_context(x.context)) for x in xs]
    autograd.backward(losses)
    trainer.step(8)
    b = net[0].weight_lora_b
    assert b.data(contexts[0]).asnumpy().any()
    assert np.array_equal(b.data(contexts[0]).asnumpy(), b.data(contexts[1]).asnumpy())


def test_a_deep_copy_is_adapted_on_its_own():
    net = conv_net()
    net(X)
    add_lora(net, rank=2)
    twin = copy.deepcopy(net)
    randomize(twin)
    assert twin[0].hybrid_forward.block is twin[0]
    assert not np.array_equal(twin(X).asnumpy(), net(X).asnumpy())


def test_attention_query_and_value_are_the_default_targets():
    class Attention(gluon.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                for name in ("query", "key", "value"):
                    setattr(self, f"{name}_weight", self.params.get(f"{name}_weight",
                                                                     shape=(4, 4)))
                self.out = nn.Dense(2, in_units=4)

        def hybrid_forward(self, F, x, query_weight, key_weight, value_weight):  # noqa: N803
            qkv = F.concat(query_weight, key_weight, value_weight, dim=0)
            return self.out(F.FullyConnected(x, qkv, no_bias=True, num_hidden=12)
                            .slice_axis(axis=1, begin=0, end=4))

    net = nn.HybridSequential(prefix="net_")
    with net.name_scope():
        net.add(Attention(prefix="att_"), nn.Dense(3, in_units=2))
    net.initialize()
    x = nd.ones((2, 4))
    before = net(x).asnumpy()
    assert add_lora(net, rank=2) == ["net_att_query_weight", "net_att_value_weight"]
    assert np.array_equal(before, net(x).asnumpy())
    assert trainable_names(net) == {"net_att_query_weight_lora_a", "net_att_query_weight_lora_b",
                                    "net_att_value_weight_lora_a", "net_att_value_weight_lora_b",
                                    "net_dense0_weight", "net_dense0_bias"}


@pytest.mark.parametrize("kwargs,error,message", [
    ({"rank": 0}, ValueError, "rank must be an int >= 1"),
    ({"alpha": -1}, ValueError, "alpha must be a finite number > 0"),
    ({"bias": "some"}, ValueError, "bias must be one of"),
    ({"bn": "x"}, ValueError, "bn must be one of"),
    ({"targets": "nothing_here"}, NoMatchError, "no block path or parameter is named"),
    ({"targets": "*_bias"}, ValueError, "selects no weight LoRA can adapt"),
    ({"targets": ()}, ValueError, "targets is empty"),
    ({"targets": 1.5}, TypeError, "rule key"),
    ({"train": "nowhere"}, NoMatchError, "nowhere"),
])
def test_bad_arguments_are_clear_errors_that_change_nothing(kwargs, error, message):
    net = conv_net()
    net(X)
    before = [(n, p.grad_req) for n, p in net.collect_params().items()]
    with pytest.raises(error, match=message) as caught:
        add_lora(net, **kwargs)
    assert isinstance(caught.value, FinetuneError)
    assert [(n, p.grad_req) for n, p in net.collect_params().items()] == before


def test_adapting_twice_and_merging_nothing_are_clear_errors():
    net = conv_net()
    net(X)
    add_lora(net, targets="0")
    with pytest.raises(ValueError, match="merge_lora.net. first"):
        add_lora(net, targets="0")
    merge_lora(net)
    with pytest.raises(ValueError, match="no LoRA adapters: nothing to merge"):
        merge_lora(net)


def test_symbolblocks_and_plain_blocks_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="SymbolBlock.*build the network from its Gluon class"):
        add_lora(exported_symbolblock(tmp_path), targets="*")

    class Plain(gluon.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.w = self.params.get("w", shape=(2, 2))

        def forward(self, x):
            return nd.dot(x, self.w.data())

    with pytest.raises(ValueError, match="plain gluon.Block.*make the layer a HybridBlock"):
        add_lora(Plain(), targets="*")


@pytest.mark.parametrize("hybridize", [False, True])
def test_numpy_mode_networks_are_adapted_too(hybridize):
    from mxnet import np as mnp
    from mxnet import npx
    npx.set_np()
    try:
        net = nn.HybridSequential(prefix="np_")
        with net.name_scope():
            net.add(nn.Dense(4), nn.Dense(2, in_units=4))
        net.initialize()
        if hybridize:
            net.hybridize()
        add_lora(net, rank=2)  # deferred: Dense(4) has no in_units
        x = mnp.ones((2, 3))
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.5})
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        trainer.step(1)
        adapted = net(x).asnumpy()
        assert net[0].weight_lora_b.data().asnumpy().any()
        merge_lora(net)
        assert np.allclose(net(x).asnumpy(), adapted, rtol=1e-5, atol=1e-6)
    finally:
        npx.reset_np()


def test_attention_with_projection_layers_gets_query_and_value_adapters():
    net = nn.HybridSequential(prefix="t_")
    with net.name_scope():
        cell = nn.HybridSequential(prefix="cell_")  # GluonNLP's MultiHeadAttentionCell's names
        with cell.name_scope():
            cell.proj_query, cell.proj_key, cell.proj_value = (nn.Dense(4, in_units=4)
                                                                for _ in range(3))
        net.add(cell, nn.Dense(2, in_units=4))
    net.initialize()
    assert add_lora(net, rank=2) == [cell.proj_query.weight.name, cell.proj_value.weight.name]
