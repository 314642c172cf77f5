"""no_weight_decay and rules that compose field by field (a rate rule plus a decay rule)."""
import numpy as np
import pytest
from finetune_helpers import exported_symbolblock, sgd_step, three_layers
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from gluon_finetune import (
    LayerwiseTrainer,
    blocks,
    explain,
    get_model,
    layer_decay,
    no_weight_decay,
)
from gluon_finetune.rules.resolution import RuleError


def test_a_bias_rule_for_weight_decay_leaves_the_rate_to_the_rate_rule():
    """Stock trap: the winning rule replaced everything, so "*_bias": {"wd_mult": 0} gave
    every bias lr_mult 1 instead of 0.1 -- a 10x rate, without a word."""
    net = three_layers()
    wd, lr, n = 0.5, 0.1, 8
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": lr, "wd": wd},
                               layers={"*": 0.1, "*_bias": {"wd_mult": 0}})
    before, grads, after = sgd_step(net, trainer, 0, n)
    bias, weight = net.l2.bias.name, net.l2.weight.name
    assert net.l2.bias.lr_mult == 0.1 and net.l2.bias.wd_mult == 0.0
    # SGD without momentum: w' = w - lr_p * (grad / n + wd_p * w)
    np.testing.assert_allclose(after[bias], before[bias] - 0.01 * grads[bias] / n, rtol=1e-5)
    np.testing.assert_allclose(after[weight], before[weight] - 0.01 * (
        grads[weight] / n + wd * before[weight]), rtol=1e-5, atol=1e-7)
    row = explain(trainer)[bias]
    assert (row["rule"], row["lr_mult"], row["wd_rule"], row["wd_mult"]) == \
        ("*", 0.1, "*_bias", 0.0)


def test_a_frozen_parameter_stays_frozen_whatever_decay_rule_matches_it():
    net = three_layers()
    before = net.l1.bias.data().asnumpy().copy()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "wd": 0.5},
                               layers={"l1": 0, "*_bias": {"wd_mult": 2.0}})
    sgd_step(net, trainer, 0)
    assert net.l1.bias.grad_req == "null" and np.array_equal(net.l1.bias.data().asnumpy(),
                                                                before)
    assert explain(trainer)[net.l1.bias.name]["wd_rule"] == "*_bias"


def test_two_decay_rules_that_disagree_name_the_group():
    net = three_layers()
    with pytest.raises(RuleError, match=r"'\*_bias' and 're:bias\$'.*weight decay"):
        LayerwiseTrainer(net, "sgd", layers={"*_bias": {"wd_mult": 0}, "re:bias$":
                                             {"wd_mult": 1.0}})


def custom_net():
    class Odd(gluon.HybridBlock):
        """Norm layers under names that say nothing, a Dense named like a norm."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.first = nn.Dense(6, in_units=4, prefix="batchnorm_like_")
                self.squash = nn.LayerNorm(in_channels=6, prefix="plain_")
                self.mix = nn.HybridSequential(prefix="mix_")
                self.mix.add(nn.Dense(6, in_units=6, use_bias=False),
                             nn.GroupNorm(num_groups=2))
                self.out = nn.Dense(3, in_units=6)

        def hybrid_forward(self, F, x):  # noqa: N803 (Gluon's name)
            return self.out(self.mix(self.squash(self.first(x)).reshape((0, 6, 1))))

    net = Odd(prefix="odd_")
    net.initialize()
    return net


def test_norm_layers_are_found_by_type_and_biases_by_what_layers_register():
    net = custom_net()
    rules = no_weight_decay(net)
    assert rules == {"squash": {"wd_mult": 0.0}, "mix.1": {"wd_mult": 0.0},
                     net.first.bias.name: {"wd_mult": 0.0}, net.out.bias.name: {"wd_mult": 0.0}}
    assert set(no_weight_decay(net, biases=False)) == {"squash", "mix.1"}
    assert set(no_weight_decay(net, norms=False)) == {net.first.bias.name, net.out.bias.name}
    with pytest.raises(TypeError, match="biases must be True or False"):
        no_weight_decay(net, biases="yes")
    with pytest.raises(TypeError, match="net must be"):
        no_weight_decay("resnet")


def test_a_symbolblock_gets_its_decay_rules_from_the_graph(tmp_path):
    rules = no_weight_decay(exported_symbolblock(tmp_path))
    names = {n.split("exp_")[-1] for n in rules}
    assert names == {"conv0_bias", "dense0_bias", "batchnorm0_gamma", "batchnorm0_beta",
                     "batchnorm0_running_mean", "batchnorm0_running_var"}


def expected_wd_free(net):
    free = set()
    for block in _all_blocks(net):
        if isinstance(block, (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm)):
            free |= set(block.collect_params().keys())
        bias = block._reg_params.get("bias")
        if bias is not None:
            free.add(bias.name)
    return free


def _all_blocks(block):
    yield block
    for child in block._children.values():
        yield from _all_blocks(child)


@pytest.mark.parametrize("name,size", [("resnet18_v1", 32), ("mobilenetv2_1.0", 32),
                                       ("densenet121", 224)])
def test_the_one_line_recipe_on_zoo_models(name, size):
    net = get_model(name, classes=3)
    decay = layer_decay(net, 0.01, 0.75)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01, "wd": 1e-4, "momentum": 0.9},
                               layers={**decay, **no_weight_decay(net)})
    table, free = explain(trainer), expected_wd_free(net)
    listed = blocks(net)
    for i, (_, block) in enumerate(listed):
        for pname in block.collect_params():
            row = table[pname]
            assert row["lr"] == pytest.approx(decay[i]["learning_rate"]), pname
            assert row["wd_mult"] == (0.0 if pname in free else 1.0), pname
    x = nd.random.uniform(shape=(2, 3, size, size))
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    trainer.step(2)


def test_combine_merges_the_values_of_one_key_field_by_field():
    from gluon_finetune import combine
    merged = combine({"features.1": 0.1, "output": 2.0}, {"features.1": {"wd_mult": 0.0}},
                     {"output": {"lr_mult": 2.0}, "0": None}, {"0": {"wd_mult": 1.0}})
    assert merged == {"features.1": {"lr_mult": 0.1, "wd_mult": 0.0},
                      "output": {"lr_mult": 2.0}, "0": {"frozen": True, "wd_mult": 1.0}}
    with pytest.raises(ValueError, match=r"combine: rule 'output' sets the rate twice"):
        combine({"output": 2.0}, {"output": 3.0})
    assert combine([(slice(0, 2), 0)], {"*": 0.5}) == [(slice(0, 2), 0), ("*", 0.5)]


def test_combine_compares_keys_as_the_rule_engine_does():
    """Issue 21 item 11: keys were compared by type and repr, so np.int64(2) and 2 were two
    keys that the returned dict then collapsed (layer_decay's head rate dropped, 10x), and
    "0:2" and slice(0, 2) were not merged."""
    from gluon_finetune import combine
    net = three_layers()
    decay = layer_decay(net, 0.1, 0.5, blocks=["l1", "l2", "l3"])
    head = np.arange(3)[-1]  # np.int64(2): an index as NumPy hands it out
    merged = combine(decay, {head: {"wd_mult": 0.0}})
    assert merged[2] == {"learning_rate": 0.1, "wd_mult": 0.0}
    assert all(type(key) is int for key in merged)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 1.0, "wd": 1e-4}, layers=merged,
                               blocks=["l1", "l2", "l3"])
    assert explain(trainer)[net.l3.weight.name]["lr"] == pytest.approx(0.1)
    ranges = combine({"0:2": 0.5}, [(slice(0, 2), {"wd_mult": 0.0})])
    assert ranges == {"0:2": {"lr_mult": 0.5, "wd_mult": 0.0}}
    with pytest.raises(RuleError, match=r"combine: rule '0:2' sets the rate twice"):
        combine({"0:2": 0.5}, [(slice(0, 2), 2.0)])
    assert combine({(np.int64(0), "l3"): 2.0}, {(0, "l3"): {"wd_mult": 0.0}}) == \
        {(0, "l3"): {"lr_mult": 2.0, "wd_mult": 0.0}}


def test_no_weight_decay_reads_every_norm_operator_of_a_symbolblock_alone_or_nested(tmp_path):
    """Issue 21 item 4: a SymbolBlock nested in a Sequential (GluonCV's transfer-learning
    form) had only its biases found, and the graph reading missed
    _contrib_BatchNormWithReLU (it looked for 'BatchNormWithReLU')."""
    from finetune_helpers import exported_every_norm
    block, expected = exported_every_norm(tmp_path)
    assert any("batchnormrelu" in name for name in expected)
    assert set(no_weight_decay(block)) == expected
    outer = nn.HybridSequential()
    outer.add(block, nn.Dense(2, in_units=3))
    outer[1].initialize()
    rules = no_weight_decay(outer)
    assert set(rules) == expected | {outer[1].bias.name}
    assert set(no_weight_decay(outer, biases=False)) == {n for n in expected
                                                         if not n.endswith("_bias")}
    trainer = LayerwiseTrainer(outer, "sgd", {"learning_rate": 0.1, "wd": 1e-3}, layers=rules)
    table = explain(trainer)
    for name, param in outer.collect_params().items():
        assert param.wd_mult == (0.0 if name in rules else 1.0), name
        assert table[name]["wd_mult"] == param.wd_mult


def test_gluoncvs_ssd_mobilenet_imported_and_nested_gets_every_norm_and_bias(tmp_path):
    """Issue 21 item 4 as measured: 70 of SSD-mobilenet's 82 norm and bias parameters kept
    full weight decay when the exported model sat inside a Sequential."""
    model_zoo = pytest.importorskip("gluoncv.model_zoo")
    ssd = model_zoo.get_model("ssd_512_mobilenet1.0_voc", pretrained=False,
                              pretrained_base=False)
    ssd.initialize()
    ssd.hybridize()
    ssd(nd.zeros((1, 3, 128, 128)))
    ssd.export(str(tmp_path / "ssd"))
    block = gluon.SymbolBlock.imports(str(tmp_path / "ssd-symbol.json"), ["data"],
                                      str(tmp_path / "ssd-0000.params"))
    outer = nn.HybridSequential()
    outer.add(block)
    learned = {n for n in block.collect_params() if n.endswith(("_gamma", "_beta", "_bias"))}
    assert len(learned) == 82
    rules = no_weight_decay(outer)
    assert learned <= set(rules)
    # and the running statistics of those norms (no decay either: they never train)
    assert {n for n in rules if n not in learned} == \
        set(block._cached_graph[1].list_auxiliary_states())
