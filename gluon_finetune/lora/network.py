"""``add_lora`` and ``merge_lora``: LoRA adapters on any Gluon network, and folding them in.

After ``add_lora`` only the adapters and what ``train`` names (the head, by
default: PEFT's ``modules_to_save``) can train. Everything else, the adapted
weights first, is *locked* (``structure.adapted``): never trainable, whatever
rule, ``unfreeze`` or gradual unfreezing says, as running statistics are, so
``{"*": 0.1}``, ``layer_decay`` and ``fine_tune`` rate the adapters (each as a
parameter of its weight's block) and the head, and nothing else. BatchNorm
layers whose scale and shift are locked use their running statistics
(``bn="frozen"``) or keep updating them (``bn="stats"``); ``bn="train"``
leaves scale and shift trainable. ``merge_lora`` folds each update into its
weight, removes the adapters and unlocks what ``add_lora`` locked.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from mxnet import gluon

from ..checks import FinetuneError, InvalidValueError, check_int, check_real
from ..rules import resolve
from ..structure import block_names, can_train, structural_paths
from ..structure.adapted import is_locked, lock, unlock
from ..structure.index import check_block, descendants
from ..trainer import batchnorm_layers, check_bn_policy, clear_cached_graphs
from ._blocks import (
    global_stats,
    plain_layout,
    registered,
    set_global_stats,
    walk_registrations,
)
from .adapters import Adapter, adapters_of, attach, detach, merged_weight, shape_known
from .targets import Target, select

__all__ = ["add_lora", "merge_lora", "lora_adapters", "BIAS_POLICIES"]

BIAS_POLICIES = ("none", "lora_only", "all")
_BN_BEFORE = "_finetune_lora_global_stats"  # on a BatchNorm add_lora switched: its own value


def lora_adapters(net: gluon.Block) -> Dict[str, Adapter]:
    """The adapters of ``net``: adapted weight's name -> :class:`Adapter` (net order).

    An adapter holds the weight, its ``a`` (``rank x fan_in``) and ``b``
    (``fan_out x rank``) parameters, ``rank``, ``alpha`` and ``scale``
    (``alpha / rank``). A weight shared by several blocks is listed once.

    Parameters
    ----------
    net : Block
        Any Gluon network, adapted or not.

    Returns
    -------
    dict of str to Adapter
        Empty when ``net`` has no adapters (never had, or merged).

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.Block``.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="n_")
    >>> with net.name_scope():
    ...     net.add(nn.Dense(4, in_units=3), nn.Dense(2, in_units=4))
    >>> net.initialize()
    >>> add_lora(net, rank=2)
    ['n_dense0_weight']
    >>> adapter = lora_adapters(net)["n_dense0_weight"]
    >>> adapter.a.shape, adapter.b.shape, adapter.scale
    ((2, 3), (4, 2), 8.0)
    """
    check_block(net)
    out: Dict[str, Adapter] = {}
    for block in descendants(net):
        for adapter in adapters_of(block).values():
            out.setdefault(adapter.weight.name, adapter)
    return out


def _check_args(net, rank, alpha, bias, bn) -> None:
    check_block(net)
    check_int("rank", rank, minimum=1)
    check_real("alpha", alpha, positive=True)
    if bias not in BIAS_POLICIES:
        raise InvalidValueError(f"bias must be one of {BIAS_POLICIES} ('none': no bias trains "
                                f"unless train= names it; 'lora_only': the biases of the "
                                f"adapted layers train; 'all': every bias trains), got "
                                f"{bias!r}", argument="bias")
    check_bn_policy(bn)


def _named(key: Any, scope: Dict[str, Any], names: List[str]) -> Set[str]:
    """The parameters the rule key ``key`` (``train=``) names."""
    try:
        table = resolve([(key, 1.0)], names, **scope)
    except FinetuneError:
        raise
    except (TypeError, ValueError) as err:
        raise InvalidValueError(f"train: {err}", argument="train") from None
    return {s.name for s in table if s.rule is not None}


def _biases_of(chosen: List[Target], bias: str, net) -> Set[str]:
    if bias == "all":
        return {p.name for _, attr, p in walk_registrations(net)
                if attr == "bias" or attr.endswith("_bias")}
    out = set()
    if bias == "lora_only":
        for target in chosen:
            for block in target.blocks:
                own = registered(block)
                attr = target.attr.replace("weight", "bias")
                attr = attr if attr in own else "bias"
                if attr in own:
                    out.add(own[attr].name)
    return out


def _kept(net, train, chosen: List[Target], bias: str, bn: str, scope) -> Set[str]:
    """What trains besides the adapters: ``train``'s parameters, the asked-for biases and,
    with ``bn='train'``, BatchNorm's scale and shift."""
    names = list(net.collect_params().keys())
    keep = _named(train, scope, names) if train is not None else set()
    keep |= _biases_of(chosen, bias, net)
    if bn == "train":
        keep |= {p.name for layer in batchnorm_layers(net)
                 for p in layer.collect_params().values() if can_train(p)}
    return keep


def _hold_batchnorm(net, bn: str) -> None:
    """With ``bn='frozen'``, layers whose scale and shift are locked use their running
    statistics (the trainer's BatchNorm policy leaves layers with nothing to train alone)."""
    if bn != "frozen":
        return
    for layer in batchnorm_layers(net):
        params = [p for p in layer.collect_params().values() if can_train(p) or is_locked(p)]
        if params and all(is_locked(p) for p in params) and not global_stats(layer):
            object.__setattr__(layer, _BN_BEFORE, False)
            set_global_stats(layer, True)


def _release_batchnorm(net) -> None:
    for layer in batchnorm_layers(net):
        if _BN_BEFORE in layer.__dict__:
            set_global_stats(layer, layer.__dict__.pop(_BN_BEFORE))


def _watch_shapes(net) -> None:
    """Rebuild ``net``'s graphs once after the first forward that gives every adapter its
    shape (a graph built before holds the deferred-shape probe of ``adapters.adapted``)."""
    handle = None

    def rebuild(block, inputs, outputs) -> None:
        forwards = [b.hybrid_forward for b in descendants(block) if adapters_of(b)]
        if any(not shape_known(a.a) for a in lora_adapters(block).values()):
            return
        if any(f.provisional for f in forwards):
            for forward in forwards:
                forward.provisional = False
            clear_cached_graphs(block)
        handle.detach()

    handle = net.register_forward_hook(rebuild)


def add_lora(net: gluon.Block, targets=None, rank: int = 8, alpha: float = 16, *,
             train=-1, bias: str = "none", bn: str = "frozen", granularity: Optional[str] = None,
             blocks=None) -> List[str]:
    """Add LoRA adapters to the weights ``targets`` selects; lock everything else but ``train``.

    Each selected weight ``W`` (name ``NAME``) gets ``NAME_lora_a``
    (``rank x fan_in``, PEFT's uniform initialisation) and ``NAME_lora_b``
    (``fan_out x rank``, zeros) in the block that owns it, and that block's
    forward receives ``W + (alpha / rank) * B @ A`` (reshaped to ``W``'s
    shape) in place of ``W``: the outputs are bit-identical until the
    adapters train. The adapters belong to their weight's block (rules, block
    indices, ``layer_decay``, ``explain`` and gradual unfreezing treat them as
    that layer's). ``W`` and every other parameter except ``train``'s are
    locked: no rule, ``unfreeze`` or gradual unfreezing thaws them;
    ``merge_lora`` undoes the lock.

    Parameters
    ----------
    net : Block
        Hybridized or not, on one or several contexts, initialised or not
        (deferred shapes are inferred at the first forward pass).
    targets : rule key or tuple of rule keys, optional
        Which weights (parameters of two or more dimensions) to adapt:
        structural paths, names, globs, ``re:`` regexes, block indices or
        ranges. Default: attention's query and value weights where the net
        has attention, else every Dense and convolution weight outside the
        head.
    rank : int, default 8
        The rank of the update ``B @ A`` (at least 1).
    alpha : float, default 16
        The update is scaled by ``alpha / rank`` (``alpha`` > 0).
    train : rule key or tuple, optional
        What trains besides the adapters (PEFT's ``modules_to_save``); it is
        made trainable. Default ``-1``: the head (the last block). ``None``:
        the adapters alone.
    bias : {'none', 'lora_only', 'all'}
        Which biases train: none (unless ``train`` names them), those of the
        adapted layers, or all.
    bn : {'frozen', 'stats', 'train'}
        BatchNorm layers outside ``train``: running statistics fixed, running
        statistics updated, or scale and shift trained too.
    granularity, blocks
        The block list that index keys and the head refer to (default: the
        net's own).

    Returns
    -------
    list of str
        The names of the adapted weights, in ``collect_params`` order.

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.Block``, ``rank`` not an int or ``alpha``
        not a number.
    InvalidValueError
        If ``rank`` < 1, ``alpha`` <= 0, ``bias``, ``bn`` or ``granularity``
        is not one of its choices, ``targets`` is empty, selects no weight
        matrix, or a weight that cannot be adapted (one with adapters
        already: ``merge_lora`` first), or the default finds nothing to adapt.
    RuleError
        If a key of ``targets`` or ``train`` is malformed or matches nothing
        (``NoMatchError``). Every check runs before ``net`` changes: after
        any of these errors it is as it was.

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="n_")
    >>> with net.name_scope():
    ...     net.add(nn.Dense(8, in_units=4), nn.Dense(8, in_units=8), nn.Dense(2, in_units=8))
    >>> net.initialize()
    >>> add_lora(net, rank=4, alpha=8)
    ['n_dense0_weight', 'n_dense1_weight']
    >>> [n for n, p in net.collect_params().items() if p.grad_req != "null"]
    ['n_dense0_weight_lora_a', 'n_dense0_weight_lora_b', 'n_dense1_weight_lora_a', \
'n_dense1_weight_lora_b', 'n_dense2_weight', 'n_dense2_bias']
    """
    _check_args(net, rank, alpha, bias, bn)
    listed = block_names(net, granularity, blocks)
    scope = dict(paths=structural_paths(net), block_list=listed)
    chosen = select(net, targets, listed[-1].names if listed else frozenset(), scope)
    keep = _kept(net, train, chosen, bias, bn, scope) - {t.name for t in chosen}
    for param in net.collect_params().values():  # every check passed: change things now
        if param.name in keep and can_train(param, net):
            param.grad_req = "write" if param.grad_req == "null" else param.grad_req
        elif can_train(param, net):
            lock(param)
    for target in chosen:
        lock(target.weight)
        plain_layout(target.weight)
        attach(target.blocks, target.attr, target.weight, rank, alpha)
    _hold_batchnorm(net, bn)
    clear_cached_graphs(net)
    if any(not shape_known(t.weight) for t in chosen):
        _watch_shapes(net)
    return [t.name for t in chosen]


def merge_lora(net: gluon.Block) -> List[str]:
    """Fold every adapter into its weight (``W + (alpha / rank) * B @ A``) and remove it.

    Afterwards ``net`` has exactly the parameters it had before ``add_lora``
    (the same ``Parameter`` objects, the weights updated), the class's own
    forward, and what ``add_lora`` locked unlocked (frozen or trainable as
    before); its outputs are the adapted network's (the merged weight is
    computed as the adapted forward computes it), and ``export()`` writes no
    adapter. A trainer built on the adapted network does not fit it any more.

    Parameters
    ----------
    net : Block
        A network given adapters by ``add_lora``.

    Returns
    -------
    list of str
        The names of the merged weights.

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.Block``.
    InvalidValueError
        If ``net`` has no adapters (nothing is changed).

    Examples
    --------
    >>> from mxnet.gluon import nn
    >>> net = nn.HybridSequential(prefix="m_")
    >>> with net.name_scope():
    ...     net.add(nn.Dense(4, in_units=3), nn.Dense(2, in_units=4))
    >>> net.initialize()
    >>> names = add_lora(net, rank=2)
    >>> merge_lora(net)
    ['m_dense0_weight']
    >>> sorted(net.collect_params().keys())
    ['m_dense0_bias', 'm_dense0_weight', 'm_dense1_bias', 'm_dense1_weight']
    """
    adapters = lora_adapters(net)
    if not adapters:
        raise InvalidValueError(f"{type(net).__name__} has no LoRA adapters: nothing to merge "
                                f"(add_lora adds them)", argument="net")
    merged = {name: merged_weight(adapter) for name, adapter in adapters.items()}
    for name, value in merged.items():
        if value is not None:  # None: never initialised, the update is still zero
            adapters[name].weight.set_data(value)
    for block in descendants(net):
        for attr in list(adapters_of(block)):
            detach(block, attr)
    for param in net.collect_params().values():
        unlock(param)
    _release_batchnorm(net)
    clear_cached_graphs(net)
    return list(adapters)

