"""cache_features: cached-feature training equals uncached training; clear refusals."""
import warnings

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import train_batches
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune import FeatureCache, LayerwiseTrainer, cache_features, freeze, split_frozen


def chain_net(seed=0):
    """A Sequential root: conv -> BN -> relu -> conv -> BN -> relu -> pool -> dense."""
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, in_channels=2), nn.BatchNorm(in_channels=4),
            nn.Activation("relu"), nn.Conv2D(6, 3, padding=1, in_channels=4),
            nn.BatchNorm(in_channels=6), nn.Activation("relu"), nn.GlobalAvgPool2D(),
            nn.Dense(3, in_units=6))
    net.initialize(mx.init.Xavier())
    return net


class ResNetLike(gluon.HybridBlock):
    """Like a zoo ResNet: a custom root whose forward is output(features(x))."""

    def __init__(self, skip=False, **kwargs):
        super().__init__(**kwargs)
        self.skip = skip
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Conv2D(4, 3, padding=1, in_channels=2),
                              nn.BatchNorm(in_channels=4), nn.Activation("relu"))
            stage = nn.HybridSequential()
            stage.add(nn.Conv2D(4, 3, padding=1, in_channels=4), nn.BatchNorm(in_channels=4),
                      nn.Dense(5, in_units=4 * 4 * 4, flatten=True))
            self.features.add(stage)
            self.output = nn.Dense(3, in_units=5)

    def hybrid_forward(self, f, x):
        features = self.features(x)
        out = self.output(features)
        return out + f.sum(x) if self.skip else out  # skip: not a chain of its children


def resnet_like(seed=0, skip=False):
    mx.random.seed(seed)
    net = ResNetLike(skip=skip)
    net.initialize(mx.init.Xavier())
    return net


def dataset(n=10, seed=0):
    rng = np.random.RandomState(seed)
    return gluon.data.ArrayDataset(rng.randn(n, 2, 4, 4).astype("float32"),
                                   rng.randint(0, 3, n).astype("float32"))


def train(model, trainer, loader, epochs=3):
    for _ in range(epochs):
        train_batches(model, trainer, loader)


def cached_vs_uncached(build, frozen, hybridize, epochs=3, bn="frozen"):
    results = []
    for cached in (False, True):
        net = build()
        freeze(net, frozen, bn=bn)
        if hybridize:
            net.hybridize()
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9,
                                                "wd": 1e-3}, layers={-1: 2.0}, bn=bn)
        if cached:
            cache = cache_features(net, dataset(), batch_size=4)
            train(cache.suffix, trainer, cache.loader(4, shuffle=False), epochs)
        else:
            train(net, trainer, gluon.data.DataLoader(dataset(), batch_size=4), epochs)
        mx.nd.waitall()
        results.append({k: p.data().asnumpy() for k, p in
                        zip(net.collect_params().keys(), net.collect_params().values())})
    return results


@pytest.mark.parametrize("hybridize", [False, True])
def test_head_only_cached_training_equals_uncached(hybridize):
    uncached, cached = cached_vs_uncached(chain_net, "0:4", hybridize)  # all but the head
    for (name, a), b in zip(uncached.items(), cached.values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("hybridize", [False, True])
def test_cut_inside_a_stage_of_a_custom_root(hybridize):
    """Suffix = features.3.1 (BN, trained on batch statistics) .. output."""
    uncached, cached = cached_vs_uncached(resnet_like, "0:3", hybridize)
    for (name, a), b in zip(uncached.items(), cached.values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_head_weights_move_and_prefix_stays():
    net = chain_net()
    freeze(net, "0:4")
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    cache = cache_features(net, dataset(), batch_size=3)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.5})
    train(cache.suffix, trainer, cache.loader(5))
    after = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    head = net[7].weight.name
    assert not np.array_equal(before[head], after[head])
    for name in net[:6].collect_params():
        assert np.array_equal(before[name], after[name]), name


def test_split_and_cache_contents():
    net = resnet_like()
    freeze(net, "0:2")
    prefix, suffix, split = split_frozen(net)
    assert split == "features.3.0"
    assert [type(b).__name__ for b in prefix] == ["Conv2D", "BatchNorm", "Activation"]
    assert [type(b).__name__ for b in suffix] == ["Conv2D", "BatchNorm", "Dense", "Dense"]
    assert suffix[3] is net.output  # the network's own blocks: Parameters shared
    cache = cache_features(net, dataset(7), batch_size=3)
    assert isinstance(cache, FeatureCache) and len(cache) == 7 and cache.split == split
    assert cache.features.shape == (7, 4, 4, 4) and cache.labels.shape == (7,)
    x = mx.nd.array(dataset(7)[:][0])
    np.testing.assert_allclose(cache.features.asnumpy(), prefix(x).asnumpy(), rtol=1e-6)
    np.testing.assert_allclose(suffix(cache.features).asnumpy(), net(x).asnumpy(),
                               rtol=1e-5, atol=1e-6)
    assert [b[0].shape[0] for b in cache.loader(3, shuffle=False)] == [3, 3, 1]
    assert "7 items" in repr(cache)


def test_root_that_is_not_a_chain_is_refused_unchanged():
    net = resnet_like(skip=True)
    freeze(net, "0:4")
    before = [(p.grad_req, p.data().asnumpy().copy()) for p in net.collect_params().values()]
    with pytest.raises(ValueError, match="ResNetLike's forward is not the chain of its "
                                         "children"):
        cache_features(net, dataset(), batch_size=4)
    after = [(p.grad_req, p.data().asnumpy()) for p in net.collect_params().values()]
    assert all(r0 == r1 and np.array_equal(a, b) for (r0, a), (r1, b) in zip(before, after))


class OwnParams(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.scale = self.params.get("scale", shape=(1,), init=mx.init.One())
            self.body = nn.Dense(4, in_units=4)
            self.head = nn.Dense(2, in_units=4)

    def hybrid_forward(self, f, x, scale):
        return self.head(self.body(x) * scale)


def test_root_with_its_own_parameters_is_refused():
    net = OwnParams()
    net.initialize()
    freeze(net, "body")
    with pytest.raises(ValueError, match=r"its forward uses its own parameters \['ownparams"):
        split_frozen(net)


def test_nothing_frozen_or_everything_frozen():
    net = chain_net()
    with pytest.raises(ValueError, match="nothing to cache: the first block '0' is trainable"):
        split_frozen(net)
    freeze(net)
    with pytest.raises(ValueError, match="nothing to train: every block .* is frozen"):
        cache_features(net, dataset(), 4)


def test_bad_arguments():
    net = chain_net()
    freeze(net, "0:4")
    with pytest.raises(TypeError, match="dataset must be a mxnet.gluon.data.Dataset.*list"):
        cache_features(net, [1, 2])
    with pytest.raises(ValueError, match="dataset is empty"):
        cache_features(net, gluon.data.ArrayDataset([]))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        cache_features(net, dataset(), batch_size=0)
    with pytest.raises(TypeError, match="ctx must be a mxnet Context.*'cpu'"):
        cache_features(net, dataset(), ctx="cpu")
    with pytest.raises(TypeError, match="net must be a mxnet.gluon.Block"):
        cache_features("resnet", dataset())
    unlabeled = gluon.data.ArrayDataset(np.zeros((4, 2, 4, 4), "float32"))
    with pytest.raises(ValueError, match=r"\(data, label\) pairs, got items of 1 field"):
        cache_features(net, unlabeled)
    cache = cache_features(net, dataset(), 4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got -1"):
        cache.loader(-1)


def test_warns_where_cached_training_would_differ():
    net = chain_net()
    freeze(net, "0:4", bn="stats")  # BatchNorm on batch statistics in training mode
    with pytest.warns(UserWarning, match="use batch statistics"):
        cache_features(net, dataset(), 4)
    mx.random.seed(0)
    dropped = nn.HybridSequential()
    dropped.add(nn.Dense(4, in_units=2 * 4 * 4), nn.Dropout(0.5), nn.Dense(3, in_units=4))
    dropped.initialize()
    freeze(dropped, 0)
    with pytest.warns(UserWarning, match="contains Dropout"):
        cache_features(dropped, dataset(), 4)
    freeze(net, "0:4", bn="frozen")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        cache_features(net, dataset(), 4)


class BlockRoot(gluon.Block):
    """A non-hybrid root (checked on the first batch, not by tracing)."""

    def __init__(self, chain=True, **kwargs):
        super().__init__(**kwargs)
        self.chain = chain
        with self.name_scope():
            self.l1 = nn.Dense(6, in_units=2 * 4 * 4, activation="tanh")
            self.l2 = nn.Dense(5, in_units=6, activation="tanh")
            self.l3 = nn.Dense(3, in_units=5)

    def forward(self, x):
        h = self.l2(self.l1(x))
        return self.l3(h if self.chain else h * 2)


@pytest.mark.parametrize("chain", [True, False])
def test_non_hybrid_root_is_checked_on_the_first_batch(chain):
    def build():
        mx.random.seed(0)
        net = BlockRoot(chain)
        net.initialize(mx.init.Xavier())
        return net

    if not chain:
        net = build()
        freeze(net, "l1")
        with pytest.raises(ValueError, match="BlockRoot's forward is not the chain"):
            cache_features(net, dataset(), 4)
        return
    uncached, cached = cached_vs_uncached(build, "l1", hybridize=False)
    for (name, a), b in zip(uncached.items(), cached.values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


class ModeSpy(nn.HybridBlock):
    """Identity that notes whether it ran in training mode."""

    seen: list = []

    def hybrid_forward(self, f, x):
        if not isinstance(x, mx.sym.Symbol):
            ModeSpy.seen.append(autograd.is_training())
        return x


@pytest.mark.parametrize("bn,training", [("frozen", True), ("stats", False)])
def test_prefix_runs_as_uncached_training_does_when_that_is_deterministic(bn, training):
    """Frozen BatchNorm, no Dropout: training mode, the very computation of uncached
    training. BatchNorm on batch statistics: inference mode (and a warning)."""
    net = chain_net()
    spied = nn.HybridSequential()
    spied.add(net[0], ModeSpy(), *net[1:])
    freeze(spied, "0:4", bn=bn)
    ModeSpy.seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache_features(spied, dataset(), 5)
    assert ModeSpy.seen and set(ModeSpy.seen) == {training}


def test_later_caches_reuse_the_checked_chains_until_the_cut_moves():
    """A validation set cached after the training set reuses the compiled prefix."""
    net = resnet_like()
    freeze(net, "0:3")
    net.hybridize()
    train_cache = cache_features(net, dataset(8, seed=1), 4)
    valid_cache = cache_features(net, dataset(6, seed=2), 4)
    assert valid_cache.prefix is train_cache.prefix and valid_cache.suffix is train_cache.suffix
    freeze(net, "0:4")  # the cut moves one block on: new chains
    moved = cache_features(net, dataset(6, seed=2), 4)
    assert moved.prefix is not train_cache.prefix and moved.split == "features.3.2"
    x = mx.nd.array(dataset(6, seed=2)[:][0])
    np.testing.assert_allclose(moved.suffix(moved.features).asnumpy(), net(x).asnumpy(),
                               rtol=1e-5, atol=1e-6)


def test_numpy_batch_sizes():
    net = chain_net()
    freeze(net, "0:4")
    cache = cache_features(net, dataset(7), batch_size=np.int64(3))
    assert len(cache) == 7
    assert [b[0].shape[0] for b in cache.loader(np.int32(4), shuffle=False)] == [4, 3]
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got bool True"):
        cache.loader(True)


def test_an_imported_model_after_the_frozen_prefix_is_cut_before(tmp_path):
    """Issue 21 items 4-5, variant: a frozen layer, then a SymbolBlock that trains whole;
    the first trainable block is the SymbolBlock's first layer, and cache_features refused
    to "cut inside SymbolBlock at '1'" where the cut before it is exact."""
    from finetune_helpers import exported_symbolblock
    block = exported_symbolblock(tmp_path)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(3, 1, in_channels=3), block)
    net[0].initialize(mx.init.Xavier())
    freeze(net, "0")
    x = mx.nd.random.uniform(shape=(5, 3, 8, 8))
    cache = cache_features(net, gluon.data.ArrayDataset(x, mx.nd.zeros(5)), batch_size=2)
    assert cache.split == "1.exp_conv0" and list(cache.suffix) == [block]  # its first layer
    np.testing.assert_allclose(cache.suffix(cache.features).asnumpy(), net(x).asnumpy(),
                               rtol=1e-5, atol=1e-6)
    freeze(net, "1.exp_conv0")  # now the cut would be inside the graph: refused
    with pytest.raises(ValueError, match=r"cannot cut inside SymbolBlock at '1'"):
        cache_features(net, gluon.data.ArrayDataset(x, mx.nd.zeros(5)), batch_size=2)
