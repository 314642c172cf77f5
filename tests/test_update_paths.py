"""update_paths.py: the rule that picks MXNet's update path, and that both give the same bits."""
import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import cosine, three_layers, train_step
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer
from gluon_finetune.optim.update_paths import choose_update_path


@pytest.mark.parametrize("aggregate", [0, 1, 3])
def test_fused_and_per_array_update_paths_are_bit_identical(aggregate):
    def run(aggregate_num):
        net = three_layers(2)
        opt = mx.optimizer.SGD(learning_rate=0.1, momentum=0.9, wd=1e-3)
        opt.aggregate_num = aggregate_num
        trainer = LayerwiseTrainer(net, opt, update_path="fused" if aggregate_num else
                                   "per_array", layers={
            "l1": {"lr_scheduler": mx.lr_scheduler.FactorScheduler(1, 0.7)},
            "l2": 0.3, "l3": {"lr_scheduler": cosine}})
        assert trainer.update_path == ("fused" if aggregate_num else "per_array")
        assert trainer._updaters[0].aggregate_updates == (aggregate_num > 0)
        for step in range(4):
            train_step(net, trainer, step)
        return [p.data().asnumpy() for p in net.collect_params().values()]

    reference = run(4)  # MXNet's default: fused multi_sgd_mom_update in chunks of 4
    for a, b in zip(run(aggregate), reference):
        assert np.array_equal(a, b)


def _dense(units, in_units):
    net = nn.Dense(units, in_units=in_units)
    net.initialize()
    return net


def test_update_path_rule(monkeypatch):
    monkeypatch.delenv("MXNET_OPTIMIZER_AGGREGATION_SIZE", raising=False)
    net = _dense(256, 128)   # weight 32,768 and bias 256: 16,512 elements on average
    momentum = {"momentum": 0.9}
    assert LayerwiseTrainer(net, "sgd", dict(momentum)).update_path == "per_array"  # faster
    assert LayerwiseTrainer(_dense(254, 128), "sgd", dict(momentum)).update_path == "fused"
    assert LayerwiseTrainer(three_layers(), "sgd", dict(momentum)).update_path == "fused"
    assert LayerwiseTrainer(net, "sgd").update_path == "fused"  # no faster kernel
    assert LayerwiseTrainer(net, "nag").update_path == "per_array"  # no fused path
    assert LayerwiseTrainer(net, "adam").update_path == "per_array"
    assert LayerwiseTrainer(net, "sgd", update_path="fused").update_path == "fused"
    monkeypatch.setenv("MXNET_OPTIMIZER_AGGREGATION_SIZE", "4")  # an explicit choice wins
    assert LayerwiseTrainer(net, "sgd", dict(momentum)).update_path == "fused"
    with pytest.raises(ValueError, match="'multi'"):
        LayerwiseTrainer(net, "sgd", update_path="multi")
    before = [(p.grad_req, p._trainer) for p in net.collect_params().values()]
    with pytest.raises(ValueError, match="Adam has no fused"):
        LayerwiseTrainer(net, "adam", update_path="fused")
    with pytest.raises(ValueError, match="LAMB's per-array update .* differs"):
        LayerwiseTrainer(net, "lamb", update_path="per_array")
    assert [(p.grad_req, p._trainer) for p in net.collect_params().values()] == before


@pytest.mark.parametrize("name,devices,env,expected", [
    ("sgd", ["cpu"], {}, "per_array"),               # measured faster, bit-identical
    ("sgd-tiny", ["cpu"], {}, "fused"),              # dispatch outweighs the faster kernel
    ("sgd-large", ["cpu"], {}, "per_array"),
    ("sgd", ["cpu", "cpu"], {}, "per_array"),
    ("ccsgd", ["cpu"], {}, "per_array"),              # an SGD subclass
    ("sgd", ["gpu"], {}, "fused"),                    # MXNet's default off the CPU
    ("sgd", ["cpu", "gpu"], {}, "fused"),
    ("sgd", ["cpu"], {"MXNET_OPTIMIZER_AGGREGATION_SIZE": "8"}, "fused"),  # explicit wins
    ("sgd-no-momentum", ["cpu"], {}, "fused"),       # no faster bit-identical kernel
    ("lars", ["cpu"], {}, "fused"),                   # fused only: per-array fails in MXNet
    ("lamb", ["cpu"], {}, "fused"),                   # fused only: per-array differs
    ("adam", ["cpu"], {}, "per_array"),               # no fused update at all
    ("nag", ["gpu"], {}, "per_array"),
])
def test_chosen_path_is_the_rules(name, devices, env, expected):
    sizes = {"sgd-tiny": [128, 9216, 2048, 4], "sgd-large": [65536, 16, 20000, 256]}.get(name)
    name = name.split("-")[0] if sizes else name

    def make():
        if name == "sgd-no-momentum":
            return mx.optimizer.create("sgd")
        return mx.optimizer.create(name, **({"momentum": 0.9} if "sgd" in name else {}))

    assert choose_update_path(make(), devices, "auto", sizes, env) == expected
    forced = "fused" if name in ("lars", "lamb") else "per_array"
    assert choose_update_path(make(), devices, forced, sizes, env) == forced


def test_trainer_takes_the_rules_path(monkeypatch):
    """The trainer asks the rule with its own devices and applies the answer."""
    monkeypatch.delenv("MXNET_OPTIMIZER_AGGREGATION_SIZE", raising=False)
    for net in (three_layers(ctx=[mx.cpu(0), mx.cpu(1)]), _dense(400, 100)):  # fused; per array
        _takes_the_rules_path(net)


def _takes_the_rules_path(net):
    contexts = net.weight.list_ctx() if hasattr(net, "weight") else [mx.cpu(0), mx.cpu(1)]
    sizes = [p.data().size for p in net.collect_params().values()]
    for name in ("sgd", "lamb", "adam"):
        args = {"momentum": 0.9} if name == "sgd" else {}
        trainer = LayerwiseTrainer(net, name, dict(args))
        expected = choose_update_path(mx.optimizer.create(name, **args),
                                      [c.device_type for c in contexts], array_sizes=sizes)
        assert trainer.update_path == expected
        assert all(u.aggregate_updates == (expected == "fused") for u in trainer._updaters)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_update_paths_bit_identical_with_schedules_and_frozen_layers(momentum):
    """Per-layer schedules, a frozen layer and gradient clipping: same bits on both paths."""
    def run(path):
        net = three_layers(3)
        trainer = LayerwiseTrainer(
            net, "sgd", {"learning_rate": 0.2, "momentum": momentum, "wd": 1e-3,
                         "clip_gradient": 0.05}, update_path=path,
            layers={"l1": 0, "l2": {"lr_scheduler": mx.lr_scheduler.PolyScheduler(20, 0.2)},
                    "l3": {"lr_scheduler": cosine}})
        assert trainer.update_path == path
        for step in range(5):
            train_step(net, trainer, step)
        return [p.data().asnumpy() for p in net.collect_params().values()]

    for a, b in zip(run("fused"), run("per_array")):
        assert np.array_equal(a, b)
