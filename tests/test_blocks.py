"""The block list and structural paths: gluon_finetune.structure."""
import re

import pytest
from mxnet import gluon
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import Concurrent, HybridConcurrent
from mxnet.gluon.model_zoo import vision

from gluon_finetune.structure.index import block_params
from gluon_finetune.structure.listing import block_names, blocks, structural_paths


def paths_of(net, granularity="unit"):
    return [path for path, _ in blocks(net, granularity)]


def names_of(block):
    return frozenset(block.collect_params().keys())


@pytest.fixture(scope="module")
def resnet():
    return vision.resnet18_v1(classes=3)


RESNET_UNITS = ["features.0", "features.1", "features.4.0", "features.4.1", "features.5.0",
                "features.5.1", "features.6.0", "features.6.1", "features.7.0", "features.7.1",
                "output"]
RESNET_STAGES = ["features.0", "features.1", "features.4", "features.5", "features.6",
                 "features.7", "output"]


# ----------------------------------------------------------------- blocks()

def test_hybrid_sequential_chain_skips_parameterless_layers():
    net = nn.HybridSequential(prefix="chain_")
    with net.name_scope():
        net.add(nn.Dense(8, in_units=4), nn.Activation("relu"), nn.Dense(8, in_units=8),
                nn.Dropout(0.5), nn.Flatten(), nn.Dense(2, in_units=8))
    found = blocks(net)
    assert [p for p, _ in found] == ["0", "2", "5"]
    assert [b for _, b in found] == [net[0], net[2], net[5]]
    assert paths_of(net, "stage") == ["0", "2", "5"]


def test_custom_attribute_block(three):
    found = blocks(three)
    assert [p for p, _ in found] == ["l1", "l2", "l3"]
    assert [b for _, b in found] == [three.l1, three.l2, three.l3]
    assert paths_of(three, "stage") == ["l1", "l2", "l3"]
    assert block_names(three) == [(p, names_of(getattr(three, p))) for p in ("l1", "l2", "l3")]


def _nested():
    net = nn.Sequential(prefix="nest_")
    with net.name_scope():
        inner = nn.Sequential()
        with inner.name_scope():
            leaf = nn.HybridSequential()
            with leaf.name_scope():
                leaf.add(nn.Dense(3, in_units=3), nn.Dense(3, in_units=3))
            inner.add(nn.Dense(3, in_units=3), nn.Activation("relu"), leaf)
        net.add(nn.Dense(3, in_units=3), inner, nn.Dense(2, in_units=3))
    return net


def test_nested_sequentials_are_descended():
    net = _nested()
    assert paths_of(net) == ["0", "1.0", "1.2.0", "1.2.1", "2"]
    assert blocks(net)[2][1] is net[1][2][0]


def test_stage_granularity_keeps_innermost_containers_whole():
    net = _nested()
    # "1" holds a container with parameters, so it is descended; "1.2" only holds layers.
    assert paths_of(net, "stage") == ["0", "1.0", "1.2", "2"]
    assert blocks(net, "stage")[2][1] is net[1][2]


def test_every_parameter_is_in_exactly_one_block():
    net = _nested()
    for granularity in ("unit", "stage"):
        sets = [names for _, names in block_names(net, granularity)]
        assert sum(len(s) for s in sets) == len(frozenset().union(*sets))
        assert frozenset().union(*sets) == names_of(net)


@pytest.mark.parametrize("concurrent", [HybridConcurrent, Concurrent])
def test_concurrent_blocks_are_kept_whole(concurrent):
    net = nn.Sequential(prefix="cc_") if concurrent is Concurrent \
        else nn.HybridSequential(prefix="cc_")
    with net.name_scope():
        branches = concurrent(axis=1)
        with branches.name_scope():
            branches.add(nn.Dense(2, in_units=3), nn.Dense(2, in_units=3))
        net.add(nn.Dense(3, in_units=2), branches, nn.Activation("relu"), nn.Dense(1, in_units=4))
    found = blocks(net)
    assert [p for p, _ in found] == ["0", "1", "3"]
    assert found[1][1] is branches
    assert block_names(net)[1] == ("1", names_of(branches))
    assert len(block_names(net)[1][1]) == 4
    paths = structural_paths(net)
    assert paths["1.0"] | paths["1.1"] == paths["1"]
    assert paths["2"] == frozenset()


def test_custom_hybrid_block_inside_a_chain_is_one_unit():
    class Residual(gluon.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.body = nn.HybridSequential()
                self.body.add(nn.Dense(3, in_units=3), nn.Dense(3, in_units=3))

        def hybrid_forward(self, f, x):
            return x + self.body(x)

    class Doubling(nn.HybridSequential):  # a HybridSequential that is not a plain chain
        def hybrid_forward(self, f, x):
            return super().hybrid_forward(f, x) * 2

    net = nn.HybridSequential(prefix="res_")
    with net.name_scope():
        doubling = Doubling()
        doubling.add(nn.Dense(3, in_units=3))
        net.add(nn.Dense(3, in_units=3), Residual(), doubling)
    assert paths_of(net) == ["0", "1", "2"]
    assert paths_of(net, "stage") == ["0", "1", "2"]
    assert "1.body.0" in structural_paths(net)


def test_parameterless_network_has_no_blocks():
    net = nn.HybridSequential()
    net.add(nn.Activation("relu"), nn.MaxPool2D(), nn.Flatten())
    assert blocks(net) == []
    assert block_names(net) == []
    assert structural_paths(net) == {"0": frozenset(), "1": frozenset(), "2": frozenset()}


def test_a_lone_layer_is_a_one_block_network():
    dense = nn.Dense(3, in_units=2, prefix="solo_")
    assert blocks(dense) == [("", dense)]
    assert block_names(dense) == [("", frozenset({"solo_weight", "solo_bias"}))]
    assert structural_paths(dense) == {}


def test_resnet_units(resnet):
    found = blocks(resnet, "unit")
    assert [p for p, _ in found] == RESNET_UNITS
    assert len(found) == 11 and found[-1] == ("output", resnet.output)
    assert isinstance(found[0][1], nn.Conv2D)
    assert isinstance(found[1][1], nn.BatchNorm)
    assert all(isinstance(b, vision.BasicBlockV1) for _, b in found[2:10])
    assert found[2][1] is resnet.features[4][0]
    names = block_names(resnet, "unit")
    assert [p for p, _ in names] == RESNET_UNITS
    assert names[2][1] == names_of(resnet.features[4][0])


def test_resnet_stages(resnet):
    found = blocks(resnet, "stage")
    assert [p for p, _ in found] == RESNET_STAGES
    assert [b for _, b in found[2:6]] == [resnet.features[i] for i in (4, 5, 6, 7)]
    assert found[-1] == ("output", resnet.output)
    names = block_names(resnet, "stage")
    assert names[2][1] == names_of(resnet.features[4])


@pytest.mark.parametrize("granularity", ["unit", "stage"])
def test_resnet_blocks_cover_every_parameter_once(resnet, granularity):
    sets = [names for _, names in block_names(resnet, granularity)]
    union = frozenset().union(*sets)
    assert sum(len(s) for s in sets) == len(union)
    assert union == names_of(resnet)


@pytest.mark.parametrize("granularity", ["layer", "Unit", "", 1])
def test_invalid_granularity(three, granularity):
    with pytest.raises(ValueError, match=re.escape(repr(granularity))):
        blocks(three, granularity)
    with pytest.raises(ValueError, match="granularity"):
        block_names(three, granularity)


@pytest.mark.parametrize("func", [blocks, structural_paths, block_names])
@pytest.mark.parametrize("obj", ["net", 3, None, [nn.Dense(2)]])
def test_non_block_input(func, obj):
    with pytest.raises(TypeError, match=f"got {type(obj).__name__}"):
        func(obj)


def test_block_params_rejects_non_blocks():
    with pytest.raises(TypeError, match="got str"):
        block_params("net", "l1")


# ----------------------------------------------------------------- block_params()

def test_block_params_of_a_path(three, resnet):
    assert block_params(three, "l3") == [three.l3.weight, three.l3.bias]
    assert block_params(three, "") == list(three.collect_params().values())
    unit = block_params(resnet, "features.4.0")
    assert [p.name for p in unit] == list(resnet.features[4][0].collect_params().keys())
    assert block_params(resnet, "features.4.0.body.1") == \
        list(resnet.features[4][0].body[1].collect_params().values())
    assert block_params(resnet, "features.2") == []  # the stem ReLU


@pytest.mark.parametrize("path,texts", [
    ("outptu", ["'outptu'", "<root>", "Did you mean 'output'"]),
    ("feature.4", ["'feature'", "Did you mean 'features'"]),
    ("features.4.2", ["'2'", "under features.4", "['0', '1']"]),
    ("features.4.0.bdy", ["'bdy'", "under features.4.0", "Did you mean 'body'"]),
])
def test_block_params_unknown_path(resnet, path, texts):
    with pytest.raises(KeyError) as err:
        block_params(resnet, path)
    for text in texts:
        assert text in str(err.value)


def test_block_params_suggests_for_a_one_character_typo(three):
    with pytest.raises(KeyError, match="Did you mean.*l3"):
        block_params(three, "l4")


@pytest.mark.parametrize("path", [3, None, ("l1",)])
def test_block_params_path_must_be_a_string(three, path):
    with pytest.raises(TypeError, match="path must be a str"):
        block_params(three, path)


# ----------------------------------------------------------------- structural_paths()

def test_structural_paths_of_the_seed_case(three):
    paths = structural_paths(three)
    # Dense(activation=...) registers its Activation as child "act", which owns nothing
    assert set(paths) == {"l1", "l1.act", "l2", "l2.act", "l3"}
    assert paths["l1.act"] == paths["l2.act"] == frozenset()
    for name in ("l1", "l2", "l3"):
        assert paths[name] == names_of(getattr(three, name))


def test_structural_paths_of_resnet(resnet):
    paths = structural_paths(resnet)
    assert paths["features"] == names_of(resnet.features)
    assert paths["features.4"] == paths["features.4.0"] | paths["features.4.1"]
    assert paths["features.4.0.body.0"] == frozenset({resnet.features[4][0].body[0].weight.name})
    assert paths["features.2"] == frozenset()
    assert paths["output"] == names_of(resnet.output)
    assert "" not in paths


def test_structural_paths_of_a_shared_parameter_net(shared):
    names = names_of(shared)
    assert len(names) == 2
    paths = structural_paths(shared)
    assert paths == {"a": names, "b": names}
    assert shared.a.weight is shared.b.weight
    # one parameter, one block: the first that uses it; "b" has nothing of its own
    assert block_names(shared) == [("a", names)]
    assert block_params(shared, "b") == block_params(shared, "a")


# ----------------------------------------------------------------- the block index: reads only

def _attributes(net):
    return {id(b): sorted(vars(b)) for b in _all_blocks(net)}


def _all_blocks(block):
    yield block
    for child in block._children.values():
        yield from _all_blocks(child)


def test_reading_a_networks_structure_plants_nothing_on_it():
    """Stock trap: the block lists were cached in an attribute planted on the network."""
    from gluon_finetune import explain, layer_decay, no_weight_decay
    from gluon_finetune.structure.listing import can_train
    net = vision.resnet18_v1(classes=3)
    before = _attributes(net)
    block_names(net)
    blocks(net, "stage")
    structural_paths(net)
    layer_decay(net, 0.1)
    no_weight_decay(net)
    explain(net, {"*": 0.1, -1: 1.0})
    assert all(can_train(p, net) == p._differentiable for p in net.collect_params().values())
    assert _attributes(net) == before


def test_can_train_only_reads(tmp_path):
    """Stock trap: can_train(p, net) filled a module-wide set, so that can_train(p) on its
    own answered differently afterwards."""
    from finetune_helpers import exported_symbolblock

    from gluon_finetune.structure.listing import can_train
    net = exported_symbolblock(tmp_path)
    stat = next(p for name, p in net.collect_params().items() if "running_mean" in name)
    assert can_train(stat)  # the parameter alone: MXNet leaves it differentiable
    assert not can_train(stat, net)
    block_names(net)
    assert can_train(stat)  # seeing the network left nothing behind


def test_a_trainer_walks_the_network_a_few_times_not_once_per_parameter(monkeypatch):
    """Stock trap: can_train(p, net) walked the whole network for every parameter."""
    from gluon_finetune import LayerwiseTrainer, explain
    from gluon_finetune.structure import index
    net = vision.resnet18_v1(classes=3)
    net.initialize()
    walks = []
    real = index.descendants
    monkeypatch.setattr(index, "descendants", lambda block: walks.append(1) or real(block))
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.5, -1: 1.0})
    trainer.set_trainable_blocks(3)
    explain(trainer)
    assert len(trainer.params) > 60 and len(walks) <= 4, len(walks)
