"""get_model over MXNet's and GluonCV's zoos: head swap, unfreeze=n, offline weights."""
import warnings

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import train_batches, trainable_names
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer, blocks, freeze, get_model, unfreeze
from gluon_finetune.freezing import batchnorm_layers

warnings.filterwarnings("ignore", category=UserWarning)

# (name, zoo, input side, attribute path of the head)
ARCHITECTURES = [
    ("resnet18_v1", "mxnet", 64, "output"),
    ("resnet50_v1b", "gluoncv", 64, "fc"),
    ("mobilenetv2_1.0", "mxnet", 64, "output.0"),
    ("mobilenetv3_small", "gluoncv", 64, "output.0"),
    ("densenet121", "mxnet", 224, "output"),
    ("vgg11_bn", "mxnet", 224, "output"),
    ("squeezenet1.1", "mxnet", 224, "output.0"),
    ("alexnet", "mxnet", 224, "output"),
    ("inceptionv3", "mxnet", 299, "output"),
]


def head_of(net, path):
    block = net
    for part in path.split("."):
        block = block._children[part]
    return block


def train(net, side, steps=3, classes=3):
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.05, "momentum": 0.9})
    rng = np.random.RandomState(0)
    train_batches(net, trainer, [(mx.nd.array(rng.randn(2, 3, side, side)),
                                  mx.nd.array(rng.randint(0, classes, 2))) for _ in range(steps)])


@pytest.mark.parametrize("name,zoo,side,head", ARCHITECTURES)
def test_head_only_fine_tuning(name, zoo, side, head):
    net = get_model(name, classes=3, unfreeze=1)
    net(mx.nd.zeros((1, 3, side, side)))  # zoo layers initialise on the first forward
    # MXNet 1.9.1 + oneDNN: an inference forward reorders conv weights in place,
    # asynchronously; reading them before that ends can return wrong values.
    mx.nd.waitall()
    listed = blocks(net)
    assert listed[-1][0] == head and head_of(net, head) is listed[-1][1]
    assert net.finetune_blocks == tuple(p for p, _ in listed)
    assert net.finetune_granularity == "unit"
    head_params = {p.name for p in listed[-1][1].collect_params().values()}
    assert trainable_names(net) == head_params
    if head in ("output", "fc"):
        assert getattr(net, head) is listed[-1][1]  # the new head takes the old one's place
    frozen = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()
              if k not in head_params}
    net.hybridize()
    train(net, side)
    out = net(mx.nd.zeros((2, 3, side, side)))
    assert out.shape == (2, 3)
    mx.nd.waitall()
    for k, value in frozen.items():  # weights and BatchNorm running statistics
        assert np.array_equal(net.collect_params()[k].data().asnumpy(), value), k


@pytest.mark.parametrize("name,n", [("resnet18_v1", 3), ("mobilenetv2_1.0", 5),
                                    ("resnet50_v1b", 2), ("vgg11_bn", 4)])
def test_unfreeze_n_trains_exactly_the_last_n_blocks(name, n):
    net = get_model(name, classes=4, unfreeze=n)
    listed = blocks(net)
    expected = set().union(*({p.name for p in b.collect_params().values()
                              if p._differentiable} for _, b in listed[-n:]))
    assert trainable_names(net) == expected
    for layer in batchnorm_layers(net):
        frozen = all(p.grad_req == "null" for p in layer.collect_params().values())
        assert layer._kwargs["use_global_stats"] is frozen


def test_stage_granularity_and_trainer_numbering():
    net = get_model("resnet18_v1", classes=2, unfreeze=2, granularity="stage")
    assert list(net.finetune_blocks) == [
        "features.0", "features.1", "features.4", "features.5", "features.6", "features.7",
        "output"]
    trainer = LayerwiseTrainer(net, "sgd", layers={-2: 0.1})
    assert trainer._granularity == "stage"
    assert net.features[7][0].body[0].weight.lr_mult == 0.1


def test_pretrained_weights_from_a_local_store(tmp_path):
    source = gluon.model_zoo.vision.get_model("resnet18_v1")
    source.initialize(mx.init.Xavier())
    source(mx.nd.zeros((1, 3, 32, 32)))
    source.save_parameters(str(tmp_path / "resnet18_v1.params"))
    net = get_model("resnet18_v1", pretrained=True, root=str(tmp_path), classes=5)
    for mine, theirs in zip(list(net.features.collect_params().values()),
                            list(source.features.collect_params().values())):
        assert np.array_equal(mine.data().asnumpy(), theirs.data().asnumpy())
    assert net.output.weight.shape == (5, 512)
    # a file path works too
    again = get_model("resnet18_v1", pretrained=str(tmp_path / "resnet18_v1.params"))
    assert again.output.weight.shape == (1000, 512)


def test_missing_weights_error_says_what_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        get_model("resnet18_v1", pretrained=True, root=str(tmp_path))
    message = str(err.value)
    assert "resnet18_v1" in message and str(tmp_path) in message
    assert "resnet18_v1.params" in message and "pretrained=" in message
    with pytest.raises(FileNotFoundError, match="nowhere.params"):
        get_model("alexnet", pretrained=str(tmp_path / "nowhere.params"))


@pytest.mark.parametrize("kwargs,error,message", [
    ({"unfreeze": -1}, ValueError, "unfreeze=-1 is out of range.*11 blocks"),
    ({"unfreeze": 12}, ValueError, "unfreeze=12 is out of range"),
    ({"unfreeze": 1.5}, TypeError, "1.5"),
    ({"unfreeze": True}, TypeError, "True"),
    ({"classes": 0}, ValueError, "classes must be an int >= 1.*0"),
    ({"classes": "3"}, ValueError, "'3'"),
    ({"bn": "fixed"}, ValueError, "fixed"),
    ({"granularity": "layer"}, ValueError, "layer"),
    ({"pretrained": 1}, TypeError, "pretrained"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        get_model("resnet18_v1", **kwargs)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="resnet18_v1"):
        get_model("resnet18_v11")


def test_freeze_and_unfreeze_on_any_block():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(4, in_units=3), gluon.nn.BatchNorm(in_channels=4),
            gluon.nn.Dense(2, in_units=4))
    net.initialize()
    assert unfreeze(net, 1) == ["2"]
    assert trainable_names(net) == {net[2].weight.name, net[2].bias.name}
    assert net[1]._kwargs["use_global_stats"] is True
    assert unfreeze(net, None) == ["0", "1", "2"]
    assert net[1]._kwargs["use_global_stats"] is False
    assert freeze(net, "*_bias") == sorted([net[0].bias.name, net[2].bias.name])
    assert net[0].weight.grad_req == "write" and net[0].bias.grad_req == "null"
    unfreeze(net, None)
    assert sorted(freeze(net, slice(0, -1))) == sorted(
        p.name for i in (0, 1) for p in net[i].collect_params().values())
    assert trainable_names(net) == {net[2].weight.name, net[2].bias.name}
    with pytest.raises(ValueError, match="3 blocks"):
        unfreeze(net, 4)
    with pytest.raises(TypeError, match="gluon.Block"):
        freeze("net")


def test_a_new_head_is_named_under_the_networks_prefix():
    net = get_model("squeezenet1.1", prefix="deep_dog_", classes=2)
    names = list(net.collect_params().keys())
    head = [p.name for p in net.output.collect_params().values()]
    assert head and all(name.startswith("deep_dog_conv") for name in head)
    assert len(set(names)) == len(names)
