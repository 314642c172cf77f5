"""Adapter files: save_lora writes the adapters and what else trains; load_lora checks first."""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd
from test_lora import X, conv_net, train

from gluon_finetune import LayerwiseTrainer, add_lora, load_lora, save_lora
from gluon_finetune.errors import FinetuneError, MissingFileError


def trained(tmp_path, rank=2, **kwargs):
    """A conv net's base weights saved, then adapted and trained: (net, base file)."""
    net = conv_net()
    net(X)
    base = str(tmp_path / "base.params")
    net.save_parameters(base)
    add_lora(net, rank=rank, **kwargs)
    train(net, LayerwiseTrainer(net, "adam", {"learning_rate": 0.05}))
    return net, base


def rebuilt(base, seed=7, rank=2, **kwargs):
    """The same network built again (other names, other random adapters), base loaded."""
    net = conv_net(seed=seed)
    net.load_parameters(base)
    add_lora(net, rank=rank, **kwargs)
    return net


def test_a_round_trip_reproduces_the_trained_outputs_exactly(tmp_path):
    net, base = trained(tmp_path)
    path = str(tmp_path / "adapters.params")
    assert save_lora(net, path) == path
    saved = mx.nd.load(path)
    assert sorted(k for k in saved if k != "__lora__") == [
        "0.weight_lora_a", "0.weight_lora_b", "3.weight_lora_a", "3.weight_lora_b", "4.bias",
        "4.weight"]
    assert os.path.getsize(path) < os.path.getsize(base)
    fresh = rebuilt(base)
    assert not np.array_equal(fresh(X).asnumpy(), net(X).asnumpy())
    loaded = load_lora(fresh, path)
    assert len(loaded) == 6
    assert np.array_equal(fresh(X).asnumpy(), net(X).asnumpy())


def test_moving_running_statistics_are_saved_with_bn_stats(tmp_path):
    net, base = trained(tmp_path, bn="stats")
    path = save_lora(net, str(tmp_path / "a.params"))
    assert {"1.running_mean", "1.running_var"} <= set(mx.nd.load(path))
    fresh = rebuilt(base, bn="stats")
    load_lora(fresh, path)
    assert np.array_equal(fresh(X).asnumpy(), net(X).asnumpy())


@pytest.mark.parametrize("kwargs,message", [
    ({"rank": 3}, "trained with rank 2, alpha 16.0 for 0.weight; the network's adapters have "
                  "rank 3"),
    ({"alpha": 4}, "alpha 4.0"),
    ({"targets": "0"}, "for another network or other targets: it adapts 2 weights, the "
                       "network 1; only in the file: \\['3.weight'\\]"),
])
def test_a_file_for_another_rank_or_other_targets_is_refused_and_nothing_changes(
        tmp_path, kwargs, message):
    net, base = trained(tmp_path)
    path = save_lora(net, str(tmp_path / "a.params"))
    fresh = rebuilt(base, **dict({"rank": 2}, **kwargs))
    before = fresh(X).asnumpy()
    with pytest.raises(ValueError, match=message):
        load_lora(fresh, path)
    assert np.array_equal(before, fresh(X).asnumpy())


def test_a_file_for_another_network_is_refused(tmp_path):
    net, _ = trained(tmp_path)
    path = save_lora(net, str(tmp_path / "a.params"))
    wider = mx.gluon.nn.HybridSequential(prefix="w_")
    with wider.name_scope():
        wider.add(mx.gluon.nn.Conv2D(4, 3, in_channels=3), mx.gluon.nn.BatchNorm(),
                  mx.gluon.nn.Activation("relu"), mx.gluon.nn.Dense(16), mx.gluon.nn.Dense(3))
    wider.initialize()
    wider(X)
    add_lora(wider, rank=2)
    with pytest.raises(ValueError, match="does not fit this network: 3.weight_lora_b: shape "
                                         "\\(8, 2\\) in the file, \\(16, 2\\) in the network"):
        load_lora(wider, path)


def test_missing_foreign_and_adapterless_cases_are_clear_errors(tmp_path):
    net, base = trained(tmp_path)
    with pytest.raises(MissingFileError, match="does not exist"):
        load_lora(net, str(tmp_path / "nope.params"))
    with pytest.raises(ValueError, match="not an adapter file written by save_lora"):
        load_lora(net, base)
    (tmp_path / "junk.params").write_bytes(b"not mxnet")
    with pytest.raises(ValueError, match="cannot read"):
        load_lora(net, str(tmp_path / "junk.params"))
    plain = conv_net()
    plain(X)
    for call in (lambda: save_lora(plain, str(tmp_path / "x.params")),
                 lambda: load_lora(plain, save_lora(net, str(tmp_path / "y.params")))):
        with pytest.raises(FinetuneError, match="no LoRA adapters: call add_lora"):
            call()
    with pytest.raises(TypeError, match="path must be a file name"):
        save_lora(net, 3)


def test_deferred_adapters_take_their_shapes_from_the_file(tmp_path):
    net, base = trained(tmp_path)
    path = save_lora(net, str(tmp_path / "a.params"))
    fresh = conv_net(seed=3, in_channels=0)
    add_lora(fresh, rank=2)
    fresh.load_parameters(base, allow_missing=True)  # the adapters are not in the base file
    assert fresh[0].weight_lora_a.shape == (2, 0)
    load_lora(fresh, path)
    assert np.array_equal(fresh(X).asnumpy(), net(X).asnumpy())
    assert nd.norm(fresh[0].weight_lora_b.data()).asscalar() > 0
