"""MXNet 1.9.1's private attributes, read and written in one place.

Fine-tuning needs some things MXNet 1.9.1 keeps private: a block's children
and own parameters, a layer's operator flags, a parameter's data and trainer,
a trainer's kvstore settings, an optimizer's update counts. MXNet is frozen at
1.9.1, so the access stays; it is gathered here, one small function per fact,
so that what depends on MXNet's internals can be seen (and changed) in one
module. Apart from this module only the trainer's own overrides of
``gluon.Trainer`` (``trainer/``) touch private attributes (a test counts them).

Imports nothing from MXNet: ``optim`` uses it, and a kvstore server imports
``optim`` while ``import mxnet`` is still running (see the import contracts).

Examples
--------
>>> from mxnet.gluon import nn
>>> net = nn.HybridSequential()
>>> net.add(nn.Dense(2, in_units=3), nn.BatchNorm(in_channels=2))
>>> list(children(net)), list(own_params(children(net)["0"]))
(['0', '1'], ['weight', 'bias'])
>>> operator_flags(children(net)["1"])["use_global_stats"]
False
"""
from __future__ import annotations

import types
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

__all__ = [
    "children", "set_child", "own_params", "has_empty_prefix", "graph_inputs", "graph_output",
    "set_graph_output",
    "operator_flags", "has_global_stats", "uses_global_stats", "set_global_stats",
    "dense_flatten", "dense_units", "conv_channels", "conv_in_channels", "clear_cached_op",
    "hybridize_flags", "batchnorm_base", "is_initialized", "param_data", "is_differentiable",
    "storage_type", "param_trainer", "set_param_trainer", "deferred_init", "after_init",
    "fresh_grad", "set_fresh_grad", "trainer_params", "trainer_contexts", "kvstore_in_use",
    "requested_kvstore", "updates_on_kvstore", "grad_scale", "compression_params",
    "update_counts", "set_update_counts", "count_update", "stock_lrs", "same_update",
    "init_weight", "model_hashes", "listed_params", "set_param_data", "set_differentiable",
    "cached_graph", "compose", "out_format", "params_by_path",
]


# ----------------------------------------------------------------- blocks

def children(block) -> Mapping[str, Any]:
    """``block``'s child blocks by registration key, in registration order (live)."""
    return block._children


def set_child(parent, key: str, child) -> None:
    """Register ``child`` under ``key`` in place of the child there (its position kept)."""
    parent._children[key] = child


def own_params(block) -> Mapping[str, Any]:
    """The parameters ``block`` registered itself (attribute name -> Parameter), not its
    children's."""
    return block._reg_params


def has_empty_prefix(block) -> bool:
    """Whether ``block`` was made with ``prefix=''`` (its ``name_scope()`` does nothing)."""
    return bool(getattr(block, "_empty_prefix", False))


def graph_inputs(block) -> Sequence[Any]:
    """The input symbols of a SymbolBlock's graph."""
    return block._cached_graph[0]


def graph_output(block):
    """The output symbol of a SymbolBlock's graph."""
    return block._cached_graph[1]


def set_graph_output(block, symbol) -> None:
    """Give a SymbolBlock another output symbol over the same inputs (its cached op is
    not rebuilt until ``clear_cached_op``)."""
    block._cached_graph = (block._cached_graph[0], symbol)


def operator_flags(block) -> Optional[Dict[str, Any]]:
    """The operator arguments a layer passes on each call (live: BatchNorm's
    ``use_global_stats``, Conv2D's ``kernel``), or None for a block without them."""
    flags = getattr(block, "_kwargs", None)
    return flags if isinstance(flags, dict) else None


def has_global_stats(block) -> bool:
    """Whether ``block`` runs MXNet's BatchNorm operator itself, with its
    ``use_global_stats`` switch (BatchNorm, and layers such as GluonCV's that wrap it)."""
    flags = operator_flags(block)
    return flags is not None and "use_global_stats" in flags


def uses_global_stats(layer) -> bool:
    """A BatchNorm-like layer's ``use_global_stats`` switch (True: running statistics)."""
    return layer._kwargs["use_global_stats"]


def set_global_stats(layer, value: bool) -> None:
    """Set the switch; a hybridized network keeps the old value until its graph is rebuilt
    (``clear_cached_op``)."""
    layer._kwargs["use_global_stats"] = value


def dense_flatten(layer) -> bool:
    """A Dense layer's ``flatten`` argument."""
    return layer._flatten


def dense_units(layer) -> int:
    """A Dense layer's number of outputs."""
    return layer._units


def conv_channels(layer) -> int:
    """A convolution layer's number of output channels."""
    return layer._channels


def conv_in_channels(layer) -> int:
    """A convolution layer's ``in_channels`` argument (0: inferred)."""
    return layer._in_channels


def clear_cached_op(block) -> None:
    """Make a hybridized block build its graph again at its next call."""
    block._clear_cached_op()


def hybridize_flags(block) -> Optional[Dict[str, Any]]:
    """The flags ``block`` was hybridized with, or None when it is not hybridized."""
    return dict(block._flags) if getattr(block, "_active", False) else None


def batchnorm_base(nn) -> type:
    """The base class of MXNet's BatchNorm layers (BatchNorm, BatchNormReLU, SyncBatchNorm);
    ``nn`` is ``mxnet.gluon.nn`` (this module imports nothing from MXNet)."""
    return nn.basic_layers._BatchNorm


# ----------------------------------------------------------------- parameters and arrays

def is_initialized(param) -> bool:
    """Whether ``param`` has data (not deferred, not waiting for ``initialize``)."""
    return param._data is not None


def param_data(param) -> Optional[list]:
    """``param``'s arrays, one per context, or None before it has data (no check, no copy)."""
    return param._data


def is_differentiable(param) -> bool:
    """``param``'s ``differentiable`` flag (False: statistics such as BatchNorm's)."""
    return bool(param._differentiable)


def cached_graph(block) -> tuple:
    """A hybridized block's ``(input symbols, output symbol)`` (a SymbolBlock has one)."""
    return block._cached_graph


def compose(symbol, **inputs) -> None:
    """Bind ``symbol``'s named inputs to other symbols, in place."""
    symbol._compose(**inputs)


def out_format(block):
    """How a block regroups its flat outputs (``mxnet.gluon.block._regroup``'s format)."""
    return block._out_format


def set_differentiable(param, value: bool) -> None:
    """Set ``param``'s ``differentiable`` flag (False: MXNet keeps ``grad_req`` at 'null')."""
    param._differentiable = value


def set_param_data(param, arrays: list) -> None:
    """Give ``param`` these arrays (one per context) in place of its own, as they are."""
    param._data = arrays


def params_by_path(block) -> Dict[str, Any]:
    """Structural path -> Parameter, as ``Block.save_parameters`` names them (a shared
    Parameter under each of its paths)."""
    return block._collect_params_with_prefix()


def listed_params(block) -> Dict[str, Any]:
    """The ordered name -> Parameter dict behind ``block.params`` (live: edits show)."""
    return block.params._params


def storage_type(param) -> str:
    """``param``'s storage type (``'default'``, ``'row_sparse'``)."""
    return param._stype


def param_trainer(param):
    """The trainer ``param`` is bound to, or None."""
    return param._trainer


def set_param_trainer(param, trainer) -> None:
    """Bind ``param`` to ``trainer`` (None: to none); no check."""
    param._trainer = trainer


def deferred_init(param) -> Optional[tuple]:
    """``param``'s pending initialisation (initializer, contexts, ...), or None."""
    return param._deferred_init or None


def after_init(param, hook: Callable[[Any], None]) -> None:
    """Call ``hook(param)`` right after ``param``'s deferred initialisation makes its data
    (its first forward pass), before anything reads that data."""
    make = param._init_impl

    def init_then_hook(self, *args, **kwargs):
        make(*args, **kwargs)
        hook(self)
    param._init_impl = types.MethodType(init_then_hook, param)


def fresh_grad(array) -> bool:
    """Whether ``array`` holds a gradient that no step has used yet."""
    return array._fresh_grad


def set_fresh_grad(array, fresh: bool) -> None:
    array._fresh_grad = fresh


# ----------------------------------------------------------------- gluon.Trainer

def trainer_params(trainer) -> list:
    """The parameters a ``gluon.Trainer`` updates, in its index order."""
    return trainer._params


def trainer_contexts(trainer) -> list:
    """The contexts a ``gluon.Trainer`` updates on."""
    return trainer._contexts


def kvstore_in_use(trainer):
    """The trainer's kvstore: the one it made, or before its first step the one asked for
    (a name, a KVStore or None)."""
    return trainer._kvstore if trainer._kv_initialized else trainer._kvstore_params["kvstore"]


def requested_kvstore(trainer):
    """The kvstore the trainer was built with (a name, a KVStore or None)."""
    return trainer._kvstore_params["kvstore"]


def updates_on_kvstore(trainer) -> Optional[bool]:
    """Whether the trainer updates on the kvstore: decided at its first step, before that
    what was asked for (None: MXNet decides)."""
    if trainer._kv_initialized:
        return trainer._update_on_kvstore
    return trainer._kvstore_params["update_on_kvstore"]


def grad_scale(trainer) -> float:
    """The trainer's gradient scale (``rescale_grad`` before ``step`` divides by the batch)."""
    return trainer._scale


def compression_params(trainer) -> Optional[dict]:
    return trainer._compression_params


# ----------------------------------------------------------------- optimizers

def update_counts(optimizer) -> Tuple[Dict[Any, Dict[int, int]], Dict[int, int]]:
    """``(per device: index -> update count, the current device's table)`` (live)."""
    return optimizer._all_index_update_counts, optimizer._index_update_count


def set_update_counts(optimizer, counts: Dict[Any, Dict[int, int]],
                      current: Dict[int, int]) -> None:
    """Give ``optimizer`` these update-count tables (``current``: the one it counts in)."""
    optimizer._all_index_update_counts = counts
    optimizer._index_update_count = current


def count_update(optimizer, indices) -> None:
    """Count one update of ``indices``, as an update does (schedules read the counts)."""
    optimizer._update_count(indices)


def stock_lrs(optimizer, indices) -> list:
    """The rates ``optimizer`` gives ``indices`` now (what its updates use)."""
    return optimizer._get_lrs(indices)


def same_update(cls: type, base: type) -> bool:
    """Whether ``cls``, a subclass of optimizer class ``base``, updates with ``base``'s own
    update (no override of it)."""
    return cls._update_impl is base._update_impl


def init_weight(initializer, name, array) -> None:
    """Fill ``array`` as ``initializer`` fills a weight (what it does for a name ending in
    ``weight``), whatever the name."""
    initializer._init_weight(name, array)


# ----------------------------------------------------------------- model stores

def model_hashes(store) -> Dict[str, str]:
    """A model zoo's ``model_store`` table: file name -> SHA-1 of the official file."""
    return store._model_sha1
