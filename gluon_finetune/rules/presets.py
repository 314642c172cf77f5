"""Rule sets for common fine-tuning recipes, as plain rule dicts.

``no_weight_decay(net)`` gives the usual "no weight decay on biases and
normalization layers" rules (timm's ``weight_decay_exclude_1d``, the BERT
convention, fastai's ``wd_bn_bias=False``). Its rules set only ``wd_mult``,
so they compose field by field with any rate rules::

    layers = {**layer_decay(net, 1e-3, 0.75), **no_weight_decay(net)}
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Set, Tuple

from mxnet import gluon

from .._compat import own_params
from ..checks import check_bool
from ..errors import RuleError
from ..structure.index import check_block, walk
from ..structure.normalization import (
    NORM_TYPES,
    graph_biases,
    graph_norms,
    is_norm_layer,
    symbol_blocks,
)
from .keys import key_id, plain_key
from .resolution import rule_items
from .values import GROUPS

__all__ = ["no_weight_decay", "combine", "norm_layers", "NORM_TYPES"]


def norm_layers(net) -> List[Tuple[str, gluon.Block]]:
    """``(structural path, layer)`` of every normalization layer of ``net``, by type."""
    check_block(net)
    return [(path, block) for path, block in walk(net) if is_norm_layer(block)]


def _biases(net) -> Set[str]:
    """Names of the parameters registered as a layer's ``bias`` (or ``*_bias``: RNN cells);
    a SymbolBlock's come from its graph instead."""
    out = set()
    for _, block in walk(net):
        if isinstance(block, gluon.SymbolBlock):
            continue
        for attr, param in own_params(block).items():
            if attr == "bias" or attr.endswith("_bias"):
                out.add(param.name)
    return out


def _graph_params(net, biases: bool, norms: bool) -> Set[str]:
    """Bias and normalization parameters read off the graph of every SymbolBlock in ``net``
    (an imported model has no layers to find by type)."""
    out: Set[str] = set()
    for _, block in symbol_blocks(net):
        if biases:
            out |= graph_biases(block)
        if norms:
            out.update(name for norm in graph_norms(block) for name in norm.params + norm.stats)
    return out


def no_weight_decay(net, biases: bool = True, norms: bool = True) -> Dict[str, Dict[str, float]]:
    """Rules ``{key: {"wd_mult": 0}}`` for every bias and normalization parameter of ``net``.

    Normalization layers are found by type (BatchNorm, SyncBatchNorm,
    BatchNormReLU, LayerNorm, GroupNorm, InstanceNorm, and layers that subclass
    or wrap them), biases as the parameters layers register as ``bias``; in a
    ``SymbolBlock`` (alone or nested in another block) both are read off the
    graph by operator (``structure.normalization``), and keyed by name. Each rule sets only the
    weight decay, so it composes with any rate rule (a frozen parameter
    stays frozen).

    Parameters
    ----------
    net : Block
        The network.
    biases : bool
        Include the biases.
    norms : bool
        Include the normalization layers (scale and shift).

    Returns
    -------
    dict
        Norm layers by structural path, biases by parameter name, each
        ``{"wd_mult": 0.0}``: merge them with rate rules (``{**rates, **these}``
        where keys differ, :func:`combine` where they may not).

    Raises
    ------
    InvalidTypeError
        ``net`` is not a Block, or ``biases``/``norms`` is not a bool.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="net_")
    >>> with net.name_scope():
    ...     net.add(nn.Dense(4, in_units=3), nn.BatchNorm(in_channels=4))
    >>> sorted(no_weight_decay(net).items())
    [('1', {'wd_mult': 0.0}), ('net_dense0_bias', {'wd_mult': 0.0})]
    """
    check_block(net)
    check_bool("biases", biases)
    check_bool("norms", norms)
    zero = {"wd_mult": 0.0}
    params = net.collect_params()
    rules: Dict[str, Dict[str, float]] = {}
    norm_params: Set[str] = set()
    if norms:
        for path, layer in norm_layers(net):
            layer_params = set(layer.collect_params().keys())
            if path and layer_params:
                rules[path] = dict(zero)
            elif layer_params:  # the root itself is a norm layer: name its parameters
                rules.update({name: dict(zero) for name in sorted(layer_params)})
            norm_params |= layer_params
    # names, not paths, inside a SymbolBlock: its names come from the file, stable
    named = _graph_params(net, biases, norms) | (_biases(net) - norm_params if biases else set())
    rules.update({name: dict(zero) for name in sorted(named) if name in params})
    return rules


def _as_fields(value: Any) -> Dict[str, Any]:
    """A rule value in dict form: a multiplier is ``lr_mult``, 0 or None freezes."""
    if isinstance(value, Mapping):
        return dict(value)
    if value is None or value == 0:
        return {"frozen": True}
    return {"lr_mult": value}


def _merged(key: Any, first: Any, second: Any) -> Any:
    a, b = _as_fields(first), _as_fields(second)
    for group, fields in GROUPS.items():
        mine = {f: a[f] for f in fields if f in a}
        theirs = {f: b[f] for f in fields if f in b}
        if mine and theirs and mine != theirs:
            raise RuleError(f"combine: rule {key!r} sets the {group} twice, to {mine} and "
                            f"{theirs}; give one of them")
    return {**a, **b}


def combine(*rule_sets: Any) -> Any:
    """One rule set from several, merging the values of a key given in more than one.

    Values merge field by field (a rate from one, ``wd_mult`` from another),
    where ``{**a, **b}`` would keep only ``b``'s value of a shared key. Keys are
    compared as the rule engine compares them: ``np.int64(2)`` is ``2`` and
    ``"0:2"`` is ``slice(0, 2)``; a merged key keeps the first spelling given
    (NumPy integers become ``int``).

    Parameters
    ----------
    *rule_sets : dict or sequence of (key, value) pairs
        Rule sets as ``LayerwiseTrainer(layers=...)`` takes them.

    Returns
    -------
    dict or list of (key, value)
        A dict when every key can be one (hashable, and no two keys equal in
        Python but not to the rule engine, as ``True`` and ``1``), else
        ``(key, value)`` pairs (a ``slice`` cannot be a dict key before Python 3.12).

    Raises
    ------
    RuleError
        A key whose rate, or whose weight decay, two sets give differently.

    Examples
    --------
    >>> from gluon_finetune import combine, layer_decay, no_weight_decay
    >>> combine({"features.1": 0.1}, {"features.1": {"wd_mult": 0.0}, "output": 2.0})
    {'features.1': {'lr_mult': 0.1, 'wd_mult': 0.0}, 'output': 2.0}
    >>> rules = combine(layer_decay(net, 0.01), no_weight_decay(net))
    >>> rules[4], rules["features.1"]
    ({'learning_rate': 0.01}, {'wd_mult': 0.0})
    """
    pairs: List[Tuple[Any, Any]] = []
    where: Dict[str, int] = {}
    for rules in rule_sets:
        for key, value in rule_items(rules):
            slot = key_id(key)  # np.int64(2) is 2, "0:2" is slice(0, 2): as resolve sees them
            if slot in where:
                i = where[slot]
                pairs[i] = (pairs[i][0], _merged(pairs[i][0], pairs[i][1], value))
            else:
                where[slot] = len(pairs)
                pairs.append((plain_key(key), value))
    try:
        merged = dict(pairs)
    except TypeError:  # a slice key (unhashable before Python 3.12)
        return pairs
    # keys the rule engine tells apart but a dict does not (True and 1, 2.0 and 2) stay
    # pairs: one dict entry would drop a rule without a word (the trainer then names it)
    return merged if len(merged) == len(pairs) else pairs
