"""Which weights ``add_lora`` adapts: rule keys, or by default attention's query and value.

``targets`` takes the keys rules take (structural paths, parameter names,
globs, ``re:`` regexes, block indices and ranges, ``"*"``, or a tuple of
these); each selects the weights among its parameters, that is the ones with
two or more dimensions that can train (biases, norms and running statistics
are passed over). Without ``targets``: where the network has attention, its
query and value projections (PEFT's default: ``query_weight``/``value_weight``
of GluonNLP's attention cells, or the weights of layers named ``proj_query``,
``q_proj``, ``value`` ...); otherwise every ``Dense`` and convolution weight
outside the head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from mxnet import gluon
from mxnet.gluon import nn

from ..errors import FinetuneError, InvalidTypeError, InvalidValueError
from ..rules import resolve
from ..structure import can_train, param_shape
from ..structure.adapted import is_locked
from ..structure.listing import param_paths
from ._blocks import walk_registrations
from .adapters import adapters_of

__all__ = ["Target", "candidates", "select"]

QUERY_VALUE_ATTRS = frozenset({"query_weight", "value_weight"})
QUERY_VALUE_LAYERS = frozenset({"proj_query", "proj_value", "query", "value", "q_proj",
                                "v_proj", "query_proj", "value_proj"})
LAYERS = (nn.Dense, nn.Conv1D, nn.Conv2D, nn.Conv3D, nn.Conv1DTranspose, nn.Conv2DTranspose,
          nn.Conv3DTranspose)


@dataclass(frozen=True)
class Target:
    """A weight that can be adapted: where it is registered and why not, if it cannot."""

    weight: gluon.Parameter
    attr: str                            # its attribute in the blocks that register it
    blocks: Tuple[gluon.Block, ...]
    path: str                            # its structural path, for messages and files
    problem: Optional[str] = None        # why it cannot be adapted (None: it can)
    skipped: bool = False                # not a weight (1-D, never trains): passed over

    @property
    def name(self) -> str:
        return self.weight.name


def _problem(weight, attr: str, blocks, attrs) -> Tuple[Optional[str], bool]:
    """(why ``weight`` cannot be adapted, whether it is simply not a weight)."""
    if not (can_train(weight) or is_locked(weight)) or len(param_shape(weight)) < 2:
        return "not a weight matrix (fewer than 2 dimensions, or it never trains)", True
    if any(isinstance(b, gluon.SymbolBlock) for b in blocks):
        return ("it is a weight of a SymbolBlock, an imported graph whose forward cannot be "
                "given an adapted weight: build the network from its Gluon class, load the "
                "weights (net.load_parameters) and add LoRA there"), False
    plain = [b for b in blocks if not isinstance(b, gluon.HybridBlock)]
    if plain:
        return (f"its block ({type(plain[0]).__name__}) is a plain gluon.Block whose forward "
                f"reads the parameter itself; LoRA adapts weights that a HybridBlock's "
                f"hybrid_forward receives: make the layer a HybridBlock"), False
    if len(attrs) > 1:
        return f"it is registered under several names ({sorted(attrs)})", False
    if any(attr in adapters_of(b) for b in blocks):
        return "it has LoRA adapters already: merge_lora(net) first to adapt it anew", False
    if any("hybrid_forward" in b.__dict__ and not adapters_of(b) for b in blocks):
        return "its block's hybrid_forward was replaced on the instance", False
    shape = weight.shape or ()
    if shape[0] <= 0 or (len(shape) > 2 and sum(d <= 0 for d in shape[1:]) > 1):
        return ("its shape is not known yet (deferred initialisation): run one forward pass "
                "(net(x)) before add_lora"), False
    return None, False


def candidates(net: gluon.Block) -> Dict[str, Target]:
    """Every parameter of ``net`` as a :class:`Target`, by name, in ``collect_params`` order."""
    found: Dict[str, List] = {}
    for block, attr, param in walk_registrations(net):
        found.setdefault(param.name, [param, [], set()])
        found[param.name][1].append(block)
        found[param.name][2].add(attr)
    paths = param_paths(net)
    out = {}
    for name in net.collect_params().keys():
        if name not in found:
            continue
        param, blocks, attrs = found[name]
        attr = sorted(attrs)[0]
        problem, skipped = _problem(param, attr, blocks, attrs)
        out[name] = Target(param, attr, tuple(blocks), paths.get(name, name), problem, skipped)
    return out


def _is_query_value(target: Target) -> bool:
    parts = target.path.split(".")
    return target.attr in QUERY_VALUE_ATTRS or \
        (target.attr == "weight" and len(parts) > 1 and parts[-2] in QUERY_VALUE_LAYERS)


def _default(found: Dict[str, Target], head: FrozenSet[str]) -> List[Target]:
    outside = [t for t in found.values() if t.name not in head and not t.skipped]
    chosen = [t for t in outside if _is_query_value(t)]
    if not chosen:
        chosen = [t for t in outside if t.attr == "weight" and
                  any(isinstance(b, LAYERS) for b in t.blocks)]
    if not chosen:
        raise InvalidValueError("add_lora found no attention query/value weights and no Dense or "
                                "convolution weights outside the head: pass targets= (rule "
                                "keys of the weights to adapt)", argument="targets")
    return chosen


def _label(key: Any) -> str:
    return repr(key) if not isinstance(key, str) else f"'{key}'"


def _matched(key: Any, names: Sequence[str], scope: Dict[str, Any]) -> List[str]:
    try:
        table = resolve([(key, 0)], names, **scope)
    except FinetuneError:
        raise
    except TypeError as err:
        raise InvalidTypeError(f"targets: {err}", argument="targets") from None
    except ValueError as err:
        raise InvalidValueError(f"targets: {err}", argument="targets") from None
    return [s.name for s in table if s.rule is not None]


def select(net: gluon.Block, targets: Any, head: FrozenSet[str],
           scope: Dict[str, Any]) -> List[Target]:
    """The weights ``targets`` selects (see the module docstring), checked, in net order.

    ``scope``: ``paths`` and ``block_list`` for ``rules.resolve``.
    """
    found = candidates(net)
    if targets is None:
        chosen = _default(found, head)
    else:
        keys = list(targets) if isinstance(targets, list) else \
            [targets] if not isinstance(targets, tuple) else list(targets)
        if not keys:
            raise InvalidValueError("targets is empty: give rule keys of the weights to adapt, "
                                    "or None for the default", argument="targets")
        names = set()
        for key in keys:
            mine = [found[n] for n in _matched(key, list(found), scope)]
            usable = [t for t in mine if not t.skipped]
            if not usable:
                raise InvalidValueError(f"targets {_label(key)} selects no weight LoRA can "
                                        f"adapt: {', '.join(t.name for t in mine[:5])} "
                                        f"{'are' if len(mine) > 1 else 'is'} not a weight "
                                        f"matrix (fewer than 2 dimensions, or never trains)",
                                        argument="targets")
            names.update(t.name for t in usable)
        chosen = [t for name, t in found.items() if name in names]
    for target in chosen:
        if target.problem is not None:
            raise InvalidValueError(f"cannot add LoRA to {target.name} ({target.path}): "
                                    f"{target.problem}", argument="targets")
    return chosen
