"""Feature caching: run a frozen trunk once, then train only what follows it.

With ``get_model(..., unfreeze=n)`` every epoch recomputes the same outputs
of the frozen prefix. ``cache_features`` cuts the network at its first
trainable block into a frozen ``prefix`` and a trainable ``suffix`` (both
share the network's Parameters), runs the prefix once over a dataset, and
keeps the outputs. Training ``suffix`` on them gives the weights that
training the whole network would give, at the cost of the suffix alone.

The cut must be a pure sequential cut: the network's output must equal
``suffix(prefix(x))``. Below the root, the cut only goes through ``Sequential``
containers, which chain their children, so only the root can break that (a
custom ``forward`` that adds a skip or reorders its children); a first
trainable block inside anything else (a BERT layer, a SymbolBlock's layer, a
group of paths) is refused with a ValueError.
A root that is not a plain ``Sequential`` is therefore checked: a
``HybridBlock`` root by tracing both with a symbol and comparing the graphs
(free: no data runs), any other root on the first batch. A mismatch is an
error.
"""
from __future__ import annotations

import json
import warnings
import weakref

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from .._compat import (
    children,
    hybridize_flags,
    uses_global_stats,
)
from ..checks import InvalidTypeError, InvalidValueError, check_int
from ..structure.arrays import concat, on_context, symbol_input, symbolic_call
from ..structure.index import _is_container, check_block, descendants
from ..structure.normalization import BATCHNORM_OPS, batchnorm_nodes, on_global_stats, symbol_blocks
from ..trainer import batchnorm_layers
from .splitting import split_frozen

__all__ = ["cache_features", "split_frozen", "FeatureCache"]


class FeatureCache:
    """The frozen prefix's outputs over a dataset, and the suffix to train on them.

    ``cache_features`` makes it; ``len(cache)`` is the number of items.

    Parameters
    ----------
    prefix : Block
        The frozen leading part of the network.
    suffix : Block
        The rest: ``net(x) == suffix(prefix(x))``; both share ``net``'s
        Parameters, so training ``suffix`` trains ``net``.
    split : str
        Structural path of the first block of ``suffix`` (the first trainable one).
    features : NDArray
        ``prefix`` outputs, in dataset order.
    labels : NDArray
        The labels, in dataset order.

    Examples
    --------
    >>> from gluon_finetune import cache_features, unfreeze
    >>> unfreeze(net, 1)  # only the head trains
    ['output']
    >>> cache_features(net, train_dataset, batch_size=8)
    FeatureCache(16 items, features (16,), suffix from 'output')
    """

    def __init__(self, prefix, suffix, split: str, features, labels):
        self.prefix, self.suffix, self.split = prefix, suffix, split
        self.features, self.labels = features, labels

    @property
    def dataset(self) -> gluon.data.ArrayDataset:
        """``(feature, label)`` items (an ``ArrayDataset``), in the dataset's order."""
        return gluon.data.ArrayDataset(self.features, self.labels)

    def loader(self, batch_size: int, shuffle: bool = True, **kwargs) -> gluon.data.DataLoader:
        """A ``DataLoader`` over the cached ``(feature, label)`` pairs.

        Make it once and iterate it every epoch (it reshuffles each time):
        MXNet 1.9.1's ``DataLoader`` runs ``gc.collect()`` when created, which
        can cost more than a whole epoch over cached features.

        Parameters
        ----------
        batch_size : int
            Items per batch (>= 1).
        shuffle : bool
            Reshuffle at every pass.
        **kwargs
            More ``gluon.data.DataLoader`` arguments (``last_batch``, ``sampler``, ...).

        Returns
        -------
        gluon.data.DataLoader
            Batches of ``(features, labels)``.
        """
        return gluon.data.DataLoader(self.dataset, batch_size=_check_batch_size(batch_size),
                                     shuffle=shuffle, **kwargs)

    def __len__(self) -> int:
        return self.features.shape[0]

    def __repr__(self) -> str:
        return (f"FeatureCache({len(self)} items, features {self.features.shape[1:]}, "
                f"suffix from {self.split!r})")


def _check_batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size, minimum=1)


def _warn_inexact(prefix) -> None:
    """Where the prefix is not deterministic in training mode it runs in inference mode:
    say where uncached training would differ."""
    dropout = [b.name for b in descendants(prefix) if isinstance(b, nn.Dropout)]
    live_bn = [b.name for b in batchnorm_layers(prefix) if not uses_global_stats(b)] + \
        [n.node for _, block in symbol_blocks(prefix) for n in batchnorm_nodes(block).values()
         if not n.global_stats]
    if dropout:
        warnings.warn(f"the frozen prefix contains Dropout {dropout}: cached features are "
                      f"computed without dropout, uncached training would apply it",
                      stacklevel=3)
    if live_bn:
        warnings.warn(f"BatchNorm layers {live_bn} in the frozen prefix use batch statistics "
                      f"when training (use_global_stats=False); cached features use running "
                      f"statistics. Freeze with bn='frozen' for results equal to uncached "
                      f"training", stacklevel=3)


def _batches(dataset, batch_size: int):
    """``(data, label)`` batches in dataset order (no DataLoader: it runs gc.collect())."""
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        if not isinstance(items[0], (list, tuple)) or len(items[0]) != 2:
            size = len(items[0]) if isinstance(items[0], (list, tuple)) else 1
            raise InvalidValueError("dataset items must be (data, label) pairs, got items of "
                                    f"{size} field(s)")
        yield gluon.data.dataloader.default_batchify_fn(items)


def _graph(symbol):
    """A symbol's computation: ops, attributes, wiring and variable names. Op names are
    left out: blocks with an empty prefix name their ops after the enclosing scope."""
    nodes = json.loads(symbol.tojson())["nodes"]
    return [(n["op"], n["name"] if n["op"] == "null" else "", n.get("attrs"),
             [edge[:2] for edge in n["inputs"]]) for n in nodes]


def _traced_same(net, prefix, suffix) -> bool:
    """Whether tracing both with a symbol gives the same graph (no data needed)."""
    data = symbol_input("data")
    try:
        expected = symbolic_call(net, data)
    except Exception as err:
        raise InvalidValueError(f"cannot trace {type(net).__name__} with one input to check that "
                                f"it is a chain of its children: {err}") from None
    return isinstance(expected, mx.sym.Symbol) and \
        _graph(expected) == _graph(symbolic_call(suffix, symbolic_call(prefix, data)))


def _computed_same(net, prefix, suffix, x) -> bool:
    expected, got = net(x).asnumpy(), suffix(prefix(x)).asnumpy()
    return expected.shape == got.shape and np.allclose(expected, got, rtol=1e-4, atol=1e-5)


def _check_chain(net, prefix, suffix, first_batch) -> None:
    """A root that is not a plain Sequential may compute more than its children in order:
    compare graphs (hybrid blocks) or outputs on the first batch (others)."""
    if _is_container(net):
        return
    hybrid = all(isinstance(b, gluon.HybridBlock) for b in (net, prefix, suffix))
    same = _traced_same(net, prefix, suffix) if hybrid else \
        _computed_same(net, prefix, suffix, first_batch())
    if not same:
        raise InvalidValueError(f"{type(net).__name__}'s forward is not the chain of its children "
                                "in registration order (suffix(prefix(x)) differs from net(x)), "
                                "so its frozen prefix cannot be cached by cutting it")


def cache_features(net, dataset, batch_size: int = 64, ctx=None) -> FeatureCache:
    """Compute the frozen prefix's outputs over ``dataset`` once, to train the suffix on.

    The network is cut at its first trainable block (``split_frozen``). The
    prefix runs once, not recorded, in training mode when that is
    deterministic there (BatchNorm on running statistics, as ``bn='frozen'``
    makes it, and no Dropout): the very computation uncached training does.
    Otherwise it runs in inference mode (Dropout off, BatchNorm on running
    statistics) and a warning says that uncached training would differ.
    Training ``cache.suffix`` on the features then gives the weights that
    training ``net`` on ``dataset`` in the same order gives. Data
    augmentation would be applied once and frozen: cache only deterministic
    transforms. A root that is not a ``Sequential`` is checked to be a chain
    of its children (by tracing it, or on the first batch if it is not a
    ``HybridBlock``).

    Parameters
    ----------
    net : Block
        A network whose leading blocks are frozen, e.g. ``get_model(name, unfreeze=n)``.
    dataset : gluon.data.Dataset
        Items are ``(data, label)`` pairs.
    batch_size : int
        Batch size of the one pass through the prefix.
    ctx : Context, optional
        Where the prefix runs and the features are kept; default: where
        ``net``'s parameters are.

    Returns
    -------
    FeatureCache
        ``.suffix`` (to call on features), ``.loader(batch_size)``, ``.dataset``,
        ``.features``, ``.labels``, ``.prefix``, ``.split``.

    Raises
    ------
    InvalidValueError
        A network ``split_frozen`` cannot cut, a root that is not a chain of its
        children, an empty dataset, a bad batch size (``InvalidTypeError``: a
        ``net`` or ``dataset`` of the wrong type).

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, cache_features, unfreeze
    >>> _ = unfreeze(net, 1)                         # a frozen trunk, a trainable head
    >>> cache = cache_features(net, train_dataset, batch_size=8)  # one pass through the trunk
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01})
    >>> loader = cache.loader(8)                     # make it once
    >>> for epoch in range(3):
    ...     for features, y in loader:
    ...         with autograd.record():
    ...             loss = loss_fn(cache.suffix(features), y)
    ...         loss.backward()
    ...         trainer.step(features.shape[0])
    """
    batch_size = _check_args(net, dataset, batch_size, ctx)
    ctx = ctx or next(iter(net.collect_params().values())).list_ctx()[0]
    prefix, suffix, split = _checked_split(
        net, lambda: on_context(next(_batches(dataset, batch_size))[0], ctx))
    _warn_inexact(prefix)
    features, labels = _run(prefix, dataset, batch_size, ctx)
    return FeatureCache(prefix, suffix, split, features, labels)


# net -> (cut, chains); weak, and not an attribute: Gluon warns about Blocks in containers
_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _checked_split(net, first_batch):
    """``split_frozen``, checked and hybridized, reusing the chains of an earlier call for
    the same cut of the same blocks: their compiled graphs and memory then serve every
    later cache (a validation set, a re-run) instead of being built again."""
    prefix, suffix, split = split_frozen(net)
    blocks_now = (tuple(children(prefix).values()), tuple(children(suffix).values()))
    memo = _CHECKED.get(net)
    if memo is not None and memo[0] == (split, blocks_now):
        return memo[1]
    with autograd.pause(train_mode=False):
        _check_chain(net, prefix, suffix, first_batch)
    _hybridize_like(net, prefix, suffix)
    _CHECKED[net] = ((split, blocks_now), (prefix, suffix, split))
    return prefix, suffix, split


def _check_args(net, dataset, batch_size, ctx) -> int:
    """``batch_size`` as an int, after checking every argument."""
    check_block(net)
    if not isinstance(dataset, gluon.data.Dataset):
        raise InvalidTypeError(f"dataset must be a mxnet.gluon.data.Dataset of (data, label) "
                               f"pairs (e.g. gluon.data.ArrayDataset(x, y)), got "
                               f"{type(dataset).__name__}", argument="dataset")
    if len(dataset) == 0:
        raise InvalidValueError("dataset is empty: nothing to cache", argument="dataset")
    batch_size = _check_batch_size(batch_size)
    if ctx is not None and not isinstance(ctx, mx.Context):
        raise InvalidTypeError(f"ctx must be a mxnet Context such as mx.cpu(), got {ctx!r}",
                               argument="ctx")
    return batch_size


# ops that compute differently in training mode (and BatchNorm, unless on running statistics)
_MODE_DEPENDENT = ("Dropout", "RNN")


def _training_mode_is_deterministic(prefix) -> bool:
    """Whether the prefix computes the same in training mode: only then may the cache run
    it so (uncached training's own computation; oneDNN's training kernels are faster)."""
    if not isinstance(prefix, gluon.HybridBlock):
        return False  # cannot see inside: inference mode is the safe reading
    nodes = json.loads(symbolic_call(prefix, symbol_input("data")).tojson())["nodes"]
    return not any(n["op"] in _MODE_DEPENDENT or
                   (n["op"] in BATCHNORM_OPS and not on_global_stats(n)) for n in nodes)


def _run(prefix, dataset, batch_size: int, ctx):
    """The prefix's outputs over the dataset (not recorded), and the labels."""
    features, labels = [], []
    with autograd.pause(train_mode=_training_mode_is_deterministic(prefix)):
        for x, y in _batches(dataset, batch_size):
            features.append(prefix(on_context(x, ctx)))
            labels.append(on_context(y, ctx))
    return concat(features), concat(labels)


def _hybridize_like(net, *chains) -> None:
    """Hybridize the chains as the network is (one cached graph each instead of per child)."""
    flags = hybridize_flags(net) if isinstance(net, gluon.HybridBlock) else None
    if flags is not None:
        for chain in chains:
            if isinstance(chain, gluon.HybridBlock):
                chain.hybridize(True, **flags)
