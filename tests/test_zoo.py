"""get_model over MXNet's and GluonCV's zoos: head swap, unfreeze=n, offline weights."""
import warnings

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import train_batches, trainable_names
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer, blocks, freeze, get_model, unfreeze
from gluon_finetune.models.input_size import check_input_size
from gluon_finetune.trainer.freezing import batchnorm_layers

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
    ({"classes": "3"}, TypeError, "classes must be an int >= 1, got str '3'"),
    ({"classes": np.int64(0)}, ValueError, "classes must be an int >= 1, got 0"),
    ({"classes": True}, TypeError, "got bool True"),
    ({"unfreeze": np.int64(12)}, ValueError, "unfreeze=12 is out of range"),
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
    assert sorted(freeze(net, slice(0, -1))) == sorted(  # not BatchNorm's running statistics
        [net[0].weight.name, net[0].bias.name, net[1].gamma.name, net[1].beta.name])
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


# ----------------------------------------------------------------- reloading one's own weights

def saved_model(path, name="resnet18_v1", classes=None, side=32, seed=0):
    """A model saved as fine-tuning leaves it: ``classes`` outputs (None: the zoo's)."""
    mx.random.seed(seed)
    net = get_model(name, classes=classes)
    net(mx.nd.zeros((1, 3, side, side)))
    mx.nd.waitall()
    net.save_parameters(str(path))
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def loaded(net):
    mx.nd.waitall()
    return {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize("name, head, side", [("resnet18_v1", "output", 32),
                                              ("squeezenet1.1", "output.0", 224)])
def test_a_file_whose_head_has_classes_outputs_loads_into_the_new_head(tmp_path, name, head,
                                                                        side):
    path = tmp_path / "my_3class.params"
    saved = saved_model(path, name, classes=3, side=side)
    net = get_model(name, classes=3, pretrained=str(path), unfreeze=1)
    got = loaded(net)
    assert got.keys() == saved.keys()
    assert all(np.array_equal(got[k], saved[k]) for k in saved)  # head included
    assert got[f"{head}.weight"].shape[0] == 3
    assert trainable_names(net) == {p.name for p in head_of(net, head).collect_params().values()}


def test_a_file_with_the_zoos_head_loads_the_trunk_and_gets_a_new_head(tmp_path):
    path = tmp_path / "resnet18_v1.params"
    saved = saved_model(path)
    for pretrained, root in ((str(path), None), (True, str(tmp_path))):
        got = loaded(get_model("resnet18_v1", classes=3, pretrained=pretrained, root=root))
        trunk = [k for k in saved if not k.startswith("output.")]
        assert all(np.array_equal(got[k], saved[k]) for k in trunk)
        assert got["output.weight"].shape == (3, 512)


def test_ones_own_weights_from_the_model_store_load_with_their_head(tmp_path):
    saved = saved_model(tmp_path / "resnet18_v1.params", classes=4)
    got = loaded(get_model("resnet18_v1", classes=4, pretrained=True, root=str(tmp_path)))
    assert np.array_equal(got["output.weight"], saved["output.weight"])


def test_a_head_of_another_size_is_a_clear_error(tmp_path):
    path = tmp_path / "five.params"
    saved_model(path, classes=5)
    with pytest.raises(ValueError) as err:
        get_model("resnet18_v1", classes=3, pretrained=str(path))
    message = str(err.value)
    assert str(path) in message and "5 outputs" in message
    assert "1000 (the zoo's) or 3 (classes)" in message
    with pytest.raises(ValueError, match=r"5 outputs.*pass classes=5"):
        get_model("resnet18_v1", pretrained=str(path))


def test_a_file_of_another_model_or_not_of_weights_is_a_clear_error(tmp_path):
    other = tmp_path / "resnet34.params"
    net = gluon.model_zoo.vision.resnet34_v1()
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.save_parameters(str(other))
    with pytest.raises(ValueError, match=r"cannot load '.*resnet34.params' into resnet18_v1: "):
        get_model("resnet18_v1", classes=2, pretrained=str(other))
    junk = tmp_path / "junk.params"
    junk.write_bytes(np.random.RandomState(0).bytes(256))
    with pytest.raises(ValueError) as err:
        get_model("resnet18_v1", pretrained=str(junk))
    assert "cannot read weights from" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_model("resnet18_v1", pretrained=str(tmp_path))  # a folder is not a file


def test_numpy_integers_for_classes_and_unfreeze():
    net = get_model("resnet18_v1", classes=np.int64(3), unfreeze=np.int32(1))
    assert net.output._units == 3 and type(net.output._units) is int
    assert trainable_names(net) == {net.output.weight.name, net.output.bias.name}


# ----------------------------------------------------------------- input size

@pytest.mark.parametrize("name, size, smallest", [("squeezenet1.1", 32, 209),
                                                  ("squeezenet1.1", 200, 209),
                                                  ("alexnet", 32, 63)])
def test_too_small_an_input_says_which_layer_and_the_size_that_works(name, size, smallest):
    net = get_model(name, classes=2)
    with pytest.raises(ValueError) as err:
        check_input_size(net, size, name)
    message = str(err.value)
    assert message.startswith(f"{name} cannot take {size}x{size} images (")
    assert "kernel size" in message and message.endswith(f"that works is {smallest}")
    check_input_size(net, smallest, name)
    mx.nd.waitall()
    assert net(mx.nd.zeros((1, 3, smallest, smallest))).shape == (1, 2)  # it really works
    with pytest.raises(mx.base.MXNetError):
        net(mx.nd.zeros((1, 3, smallest - 1, smallest - 1))).wait_to_read()


def test_input_size_with_loaded_weights_fixes_a_dense_layers_input(tmp_path):
    path = tmp_path / "alexnet.params"
    saved_model(path, "alexnet", side=224)
    net = get_model("alexnet", classes=2, pretrained=str(path))
    check_input_size(net, 224)
    with pytest.raises(ValueError, match=r"cannot take 300x300 images \(.*Shape inconsistent"
                                         r".*no larger size works; the largest smaller one "
                                         r"that does is 254"):
        check_input_size(net, 300, "alexnet")
    check_input_size(get_model("resnet18_v1"), 16)  # global pooling: any size
