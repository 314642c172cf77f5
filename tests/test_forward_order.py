"""The block list: forward order, repeated stacks, embeddings, owned parameters, explicit lists."""
import re
import warnings

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import HeadFirst, weights
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune import (
    GradualUnfreezing,
    LayerwiseTrainer,
    explain,
    freeze,
    get_model,
    layer_decay,
    spread,
    unfreeze,
)
from gluon_finetune.structure.index import BlockGroup, declare_blocks
from gluon_finetune.structure.listing import automatic_blocks, block_names, blocks, can_train


def paths_of(net, *args, **kwargs):
    return [label for label, _ in blocks(net, *args, **kwargs)]


class Cell(gluon.HybridBlock):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.proj = nn.Dense(units, in_units=units, flatten=False)
            self.norm = nn.LayerNorm(in_channels=units)

    def hybrid_forward(self, f, x):
        return self.norm(x + self.proj(x))


class Encoder(gluon.HybridBlock):
    """A transformer-like encoder: registers its stack first, runs its embeddings first."""

    def __init__(self, layers=3, units=4, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.cells = nn.HybridSequential()
            with self.cells.name_scope():
                for _ in range(layers):
                    self.cells.add(Cell(units))
            self.embed = nn.Embedding(10, units)
            self.position = self.params.get("position", shape=(5, units))
            self.norm = nn.LayerNorm(in_channels=units)
            self.head = nn.Dense(2, in_units=units)

    def hybrid_forward(self, f, x, position):
        h = self.norm(f.broadcast_add(self.embed(x), f.expand_dims(position, axis=0)))
        return self.head(f.mean(self.cells(h), axis=1))


class Tempered(gluon.HybridBlock):
    """A learnable temperature owned by the root, used after the head."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.Dense(4, in_units=3)
            self.head = nn.Dense(2, in_units=4)
            self.temperature = self.params.get("temperature", shape=(1,), init=mx.init.One())

    def hybrid_forward(self, f, x, temperature):
        return f.broadcast_div(self.head(self.body(x)), temperature)


class Untraceable(gluon.Block):
    """A forward that needs real data: registration order, with a warning."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.head = nn.Dense(2, in_units=4)
            self.body = nn.Dense(4, in_units=3)

    def forward(self, x):
        return self.head(mx.nd.relu(self.body(x)))


# ----------------------------------------------------------------- order

def test_forward_order_not_registration_order():
    net = HeadFirst(prefix="hf_")
    assert paths_of(net) == ["body", "head"]
    net.initialize()
    assert unfreeze(net, 1) == ["head"]
    assert net.head.weight.grad_req == "write" and net.body.weight.grad_req == "null"


def test_untraceable_forward_keeps_registration_order_and_warns():
    net = Untraceable(prefix="ut_")
    with pytest.warns(UserWarning, match=r"could not trace the forward of Untraceable at <root>"):
        assert paths_of(net) == ["head", "body"]


def test_traceable_nets_do_not_warn(three):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paths_of(three) == ["l1", "l2", "l3"]  # a plain Block that runs on symbols
        assert paths_of(HeadFirst()) == ["body", "head"]


def test_stack_in_a_custom_block_is_one_block_per_layer_after_the_embeddings():
    net = Encoder(prefix="enc_")
    listed = blocks(net)
    assert [label for label, _ in listed] == [
        "embed+position+norm", "cells.0", "cells.1", "cells.2", "head"]
    group = listed[0][1]
    assert isinstance(group, BlockGroup) and group.paths == ("embed", "position", "norm")
    assert set(group.collect_params()) == {net.embed.weight.name, net.position.name,
                                           net.norm.gamma.name, net.norm.beta.name}
    assert listed[2][1] is net.cells[1]
    assert paths_of(net, "stage") == ["embed+position+norm", "cells", "head"]


def test_a_stack_inside_a_chain_is_found_too():
    chain = nn.HybridSequential(prefix="chain_")
    with chain.name_scope():
        chain.add(Encoder(layers=2), nn.Dense(3, in_units=2))
    assert paths_of(chain) == ["0.embed+0.position+0.norm", "0.cells.0", "0.cells.1", "0.head",
                               "1"]


def test_root_owned_parameter_is_in_a_block_and_thaws():
    net = Tempered(prefix="temp_")
    net.initialize()
    assert block_names(net)[-1] == ("head+temperature", frozenset(
        {net.head.weight.name, net.head.bias.name, net.temperature.name}))
    freeze(net)
    unfreeze(net, None)
    assert all(p.grad_req == "write" for p in net.collect_params().values())
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    trainer.set_trainable_blocks(1)
    assert net.temperature.grad_req == "write" and net.body.weight.grad_req == "null"


class WithConstant(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.Dense(2, in_units=2)
            self.offsets = OffsetTable()

    def hybrid_forward(self, f, x):
        return self.offsets(self.body(x))


class OffsetTable(gluon.HybridBlock):
    """Owns a constant only (like SSD's anchor generators)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.table = self.params.get_constant("table", mx.nd.ones((1, 2)))

    def hybrid_forward(self, f, x, table):
        return f.broadcast_add(x, table)


def test_a_block_of_constants_is_no_block():
    net = WithConstant(prefix="wc_")
    assert paths_of(net) == ["body"]
    assert not can_train(net.offsets.table)
    net.initialize()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Constant warns when its grad_req is set
        unfreeze(net, None)
    with pytest.raises(ValueError, match="1 blocks"):
        unfreeze(net, 2)


# ----------------------------------------------------------------- SymbolBlock

@pytest.fixture(scope="module")
def exported_resnet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    net = gluon.model_zoo.vision.resnet18_v1(classes=3, prefix="r18_")  # names fixed
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(str(folder / "r18"))
    return str(folder / "r18-symbol.json"), str(folder / "r18-0000.params")


def imported(files):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gluon.SymbolBlock.imports(files[0], ["data"], files[1])


def test_symbol_block_has_one_block_per_layer(exported_resnet):
    net = imported(exported_resnet)
    listed = block_names(net)
    layers = [label for label, _ in listed]
    # 20 convolutions, 20 BatchNorms and the head, in graph order
    assert len(layers) == 41
    assert layers[:3] == ["r18_conv0", "r18_batchnorm0", "r18_stage1_conv0"]
    assert listed[-1] == ("r18_dense0",
                          frozenset({"r18_dense0_weight", "r18_dense0_bias"}))
    assert all(len(names) in (1, 2, 4) for _, names in listed)


def test_symbol_block_head_only_training(exported_resnet):
    net = imported(exported_resnet)
    unfreeze(net, 1)
    head = {"r18_dense0_weight", "r18_dense0_bias"}
    assert {n for n, p in net.collect_params().items() if p.grad_req != "null"} == head
    before = weights(net)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    trainer.set_trainable_blocks(1)
    assert {n for n, p in net.collect_params().items() if p.grad_req != "null"} == head
    _train_images(net, trainer)
    after = weights(net)
    for name, value in before.items():
        assert np.array_equal(value, after[name]) == (name not in head), name


def test_symbol_block_statistics_never_become_trainable(exported_resnet):
    net = imported(exported_resnet)
    stats = [n for n in net.collect_params() if "running" in n]
    assert len(stats) == 40 and not any(can_train(net.collect_params()[n], net) for n in stats)
    unfreeze(net, None)
    freeze(net, "*")
    unfreeze(net, None)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01}, layers={"*": 0.5})
    assert all(net.collect_params()[n].grad_req == "null" for n in stats)
    _train_images(net, trainer)  # gluon.Trainer steps fine here, and so must we
    rows = explain(trainer)
    assert all(rows[n]["frozen"] for n in stats)


def _train_images(net, trainer, steps=2):
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.RandomState(0)
    for _ in range(steps):
        x = mx.nd.array(rng.randn(2, 3, 32, 32))
        with autograd.record():
            loss = loss_fn(net(x), mx.nd.array([0, 2]))
        loss.backward()
        trainer.step(2)
    mx.nd.waitall()


# ----------------------------------------------------------------- detectors

@pytest.mark.parametrize("name", ["ssd_300_vgg16_atrous_voc", "faster_rcnn_resnet50_v1b_voc"])
def test_no_detector_block_is_parameterless(name):
    from gluoncv.model_zoo import get_model as gluoncv_model
    net = gluoncv_model(name, pretrained=False, pretrained_base=False)
    params = net.collect_params()
    listed = block_names(net)
    for label, names in listed:
        assert any(can_train(params[n]) for n in names), label
    seen = [n for _, names in listed for n in names]
    assert len(seen) == len(set(seen))
    assert set(seen) >= {n for n, p in params.items() if can_train(p)}
    if name.startswith("faster"):  # the head: both class-dependent predictors, one block
        assert [label for label, _ in listed[-2:]] == ["top_features.0.2",
                                                       "box_predictor+class_predictor"]
        net.initialize()
        unfreeze(net, 1)
        trainable = {n for n, p in params.items() if p.grad_req != "null"}
        assert trainable == {p.name for b in (net.box_predictor, net.class_predictor)
                             for p in b.collect_params().values()}


# ----------------------------------------------------------------- declared and explicit lists

class Declared(HeadFirst):
    def finetune_block_list(self, granularity):
        return [("body", "head")] if granularity == "stage" else ["body", "head"]


def test_a_class_declares_its_block_list():
    net = Declared(prefix="dc_")
    assert paths_of(net) == ["body", "head"]
    assert paths_of(net, "stage") == ["body+head"]


def test_declare_blocks_for_a_class_you_cannot_edit():
    class Other(HeadFirst):
        pass

    declare_blocks(Other, lambda net, granularity: [("head", "body")])
    net = Other(prefix="ot_")
    assert paths_of(net) == ["head+body"]
    assert automatic_blocks(net) == ["body", "head"]
    with pytest.raises(TypeError, match="cls must be a class"):
        declare_blocks("Other", lambda net, g: [])


def test_explicit_blocks_everywhere_number_the_same(three):
    listed = [("l1", "l2"), "l3"]
    three.initialize()
    assert paths_of(three, blocks=listed) == ["l1+l2", "l3"]
    assert layer_decay(three, 0.1, 0.5, blocks=listed) == {
        0: {"learning_rate": 0.05}, 1: {"learning_rate": 0.1}}
    assert sorted(spread(three, 0.01, 0.1, blocks=listed)) == [0, 1]
    frozen = {row["parameter"] for row in explain(three, {0: 0}, blocks=listed) if row["frozen"]}
    assert frozen == {p.name for b in (three.l1, three.l2) for p in b.collect_params().values()}
    trainer = LayerwiseTrainer(three, "sgd", {"learning_rate": 0.1}, layers={0: 0},
                               blocks=listed)
    assert {p.name for p in three.collect_params().values() if p.grad_req == "null"} == frozen
    assert explain(trainer)[three.l2.weight.name]["block"] == "0:l1+l2"
    assert GradualUnfreezing(trainer, every=1).block_count == 2
    assert unfreeze(three, 1, blocks=listed) == ["l3"]
    assert freeze(three, 0, blocks=listed) == sorted(frozen)


def test_get_model_records_an_explicit_list():
    listed = ["features.0", ("features.1", "features.4"), "features.5", "features.6",
              "features.7", "output"]
    net = get_model("resnet18_v1", classes=2, unfreeze=2, blocks=listed)
    assert net.finetune_blocks == ("features.0", "features.1+features.4", "features.5",
                                   "features.6", "features.7", "output")
    assert paths_of(net) == list(net.finetune_blocks)
    assert len(layer_decay(net, 0.1)) == 6
    trainable = {p.name for p in net.collect_params().values() if p.grad_req != "null"}
    assert trainable == {p.name for b in (net.features[7], net.output)
                         for p in b.collect_params().values() if can_train(p)}


@pytest.mark.parametrize("listed,error,message", [
    ("l1", TypeError, "blocks must be a list"),
    ([], ValueError, "at least one block"),
    (["l1", 3], TypeError, r"blocks\[1\] must be a structural path"),
    (["l1", ()], TypeError, r"blocks\[1\]"),
    (["l1", "l2", "l4"], ValueError, r"blocks\[2\]: no block path or parameter is named 'l4'"
                                     r". Did you mean 'l3'"),
    (["l1", ("l2", "l1"), "l3"], ValueError, r"blocks\[0\] \(l1\) and blocks\[1\] \(l2\+l1\) "
                                            r"both hold parameter"),
    (["l1", "l3"], ValueError, r"leaves trainable parameters in no block: \['l2.weight', "
                               r"'l2.bias'\]"),
    (["l1", "l2", "l3", "l2.act"], ValueError, r"blocks\[3\] \(l2.act\) holds no trainable"),
])
def test_bad_explicit_lists(three, listed, error, message):
    with pytest.raises(error, match=message):
        blocks(three, blocks=listed)
    with pytest.raises(error, match=message):
        LayerwiseTrainer(three, "sgd", layers={0: 0}, blocks=listed)


def test_blocks_without_a_net_is_an_error(three):
    with pytest.raises(ValueError, match="blocks= needs the network"):
        LayerwiseTrainer(three.collect_params(), "sgd", blocks=["l1", "l2", "l3"])


# ----------------------------------------------------------------- one numbering (issue 13.11)

def test_every_function_numbers_stage_blocks_like_the_trainer():
    net = get_model("resnet18_v1", classes=2, granularity="stage")
    params = net.collect_params()
    previewed = {row["parameter"] for row in explain(net, {2: 0})
                 if row["frozen"] and can_train(params[row["parameter"]])}
    stage = {p.name for p in net.features[4].collect_params().values() if can_train(p)}
    assert previewed == stage and len(stage) == 12
    rules = spread(net, 1e-4, 1e-2)
    assert len(rules) == 7 == len(layer_decay(net, 0.1))
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01}, layers={2: 0})
    assert {n for n, p in params.items() if p.grad_req == "null" and can_train(p)} == stage
    trainer.set_layers(rules)  # accepted: the same seven blocks
    assert re.fullmatch(r"\d:features\.\d|6:output", explain(trainer)[net.output.weight.name]
                        ["block"])
    assert unfreeze(net, 2) == ["features.7", "output"]
    assert freeze(net, 0) == sorted(net.features[0].collect_params().keys())


def test_a_head_registered_twice_is_one_block_and_replaced_everywhere():
    # GluonCV's GoogLeNet registers its classifier as head.2 and as output
    net = get_model("googlenet", classes=3, unfreeze=1)
    assert paths_of(net)[-1] == "head.2" and "output" not in paths_of(net)
    assert net.output is net.head[2] and net.output.weight.shape == (3, 1024)
    assert net(mx.nd.zeros((1, 3, 224, 224))).shape == (1, 3)


def test_a_block_list_does_not_keep_its_network_alive():
    import gc
    import weakref
    net = gluon.model_zoo.vision.resnet18_v1()
    assert len(blocks(net)) == 11
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None


def test_cache_features_refuses_to_cut_a_symbol_block_layer(exported_resnet):
    from gluon_finetune import split_frozen
    net = imported(exported_resnet)
    unfreeze(net, 1)
    with pytest.raises(ValueError, match="cannot cut a SymbolBlock: its layers are one graph"):
        split_frozen(net)
    chain = nn.HybridSequential(prefix="wrapped_")
    chain.add(net)  # inside a chain, the cut would fall inside the SymbolBlock
    with pytest.raises(ValueError, match="cannot cut inside SymbolBlock at '0'"):
        split_frozen(chain)

