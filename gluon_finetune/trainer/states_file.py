"""The states file: written, read and checked before any trainer changes.

The file is the one ``gluon.Trainer`` writes, a pickled ``(updater states,
optimizer)``, so stock ``gluon.Trainer.load_states`` reads ours (momentum
and per-layer rates included: they travel inside our optimizer). Ours also
records, in the optimizer's ``LayerwiseState``, each parameter's structural
path, shape and dtype (``signature``). Reading checks the file: a file that
does not unpickle, does not hold trainer states, or belongs to another model
(count, shapes, dtypes of the state arrays, structural paths) is a
``StatesError`` naming the file. Loading unpickles: only load files you trust.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from mxnet import nd
from mxnet.optimizer import Optimizer

from .._compat import update_counts
from ..errors import InvalidTypeError, StatesError
from ..optim.optimizer import is_layerwise, layerwise
from ..structure.index import param_shape

__all__ = ["Signature", "Loaded", "signature", "write", "read"]

Signature = List[Tuple[Optional[str], Tuple[int, ...], str]]


class Loaded(NamedTuple):
    """A checked states file, moved to the loading trainer's parameter indices."""

    states: bytes              # the updater states, pickled (each updater unpickles its own)
    optimizer: Optimizer       # layerwise; its ``layerwise`` state is empty for a stock file
    ours: bool                 # written by LayerwiseTrainer (else by gluon.Trainer)
    renames: Optional[Dict[str, str]] = None  # saved parameter name -> this trainer's


def signature(params, paths: Optional[Dict[str, str]]) -> Signature:
    """Per parameter: structural path in the network (if known), shape, dtype."""
    return [((paths or {}).get(p.name), param_shape(p), _dtype(p.dtype)) for p in params]



def _dtype(dtype) -> str:
    return getattr(dtype, "__name__", None) or str(dtype)


def write(fname, updater_states: dict, optimizer, sig: Signature, aggregate_num: int,
          names: Sequence[str] = ()) -> None:
    """Write the states file atomically (a crash never leaves half a file).

    The optimizer is written with ``aggregate_num``, MXNet's own choice: a
    stock trainer that reads the file sets its updaters up for that (a
    LayerwiseTrainer that loads it picks its update path again). ``names``
    (the parameters', in index order) let rules keyed by name follow a
    rebuilt network."""
    state, aggregate = optimizer.layerwise, optimizer.aggregate_num
    state.signature, state.names = sig, list(names) or None
    optimizer.aggregate_num = aggregate_num
    try:
        data = pickle.dumps((updater_states, optimizer))
    except Exception as err:
        raise InvalidTypeError("cannot save trainer states: the optimizer cannot be pickled "
                               f"({err}); a trainer-level lr_scheduler must be picklable") from err
    finally:
        state.signature, state.names, optimizer.aggregate_num = None, None, aggregate
    folder = os.path.dirname(os.path.abspath(fname))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".states-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, fname)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read(fname, params: Sequence, current: Signature) -> Loaded:
    """Read and check a states file for ``params``; nothing outside is changed."""
    updater_states, optimizer = _unpickle(fname)
    ours = is_layerwise(optimizer) and optimizer.layerwise.signature is not None
    optimizer = layerwise(optimizer)
    order, renames = list(range(len(params))), {}
    if ours:
        state = optimizer.layerwise
        order = _check_signature(fname, state.signature, current, [p.name for p in params])
        if state.names is not None and len(state.names) == len(order):
            renames = {state.names[i]: params[j].name for i, j in enumerate(order)
                       if state.names[i] != params[j].name}
        state.signature = state.names = None
    _check_arrays(fname, updater_states, params, order)
    _reindex(order, updater_states)
    _reindex_optimizer(order, optimizer)
    return Loaded(pickle.dumps(updater_states), optimizer, ours, renames)


def _unpickle(fname) -> Tuple[dict, Optimizer]:
    try:
        with open(fname, "rb") as f:
            payload = pickle.load(f)
    except OSError:
        raise
    except Exception as err:  # truncated, corrupt, text, another pickle's classes, ...
        raise StatesError(f"{fname} is not a readable trainer states file ({type(err).__name__}: "
                          f"{err})") from None
    if not (isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[0], dict)
            and isinstance(payload[1], Optimizer)):
        raise StatesError(f"{fname} is not a trainer states file: expected the (states, "
                          f"optimizer) pair that save_states writes, got "
                          f"{type(payload).__name__}")
    return payload


def _shapes_agree(a: Tuple[int, ...], b: Tuple[int, ...]) -> bool:
    # 0 is an unknown dimension (deferred initialisation)
    return len(a) == len(b) and all(x == y or 0 in (x, y) for x, y in zip(a, b))


def _order(saved: Signature, current: Signature) -> List[int]:
    """Saved index -> current index. Parameters are matched by structural path when
    both sides know every path: a rebuilt network can sort its names differently
    (``dense100_`` before ``dense98_``) and gluon.Trainer indexes sorted names."""
    saved_keys = [k for k, _, _ in saved]
    current_keys = [k for k, _, _ in current]
    known = None not in saved_keys and None not in current_keys
    if known and len(set(current_keys)) == len(current_keys) \
            and sorted(saved_keys) == sorted(current_keys):
        where = {k: i for i, k in enumerate(current_keys)}
        return [where[k] for k in saved_keys]
    return list(range(len(saved)))


def _check_signature(fname, saved: Signature, current: Signature,
                     names: Sequence[str]) -> List[int]:
    """Match saved parameters to this trainer's (saved index -> current index), or raise
    naming the differences if the states belong to another model."""
    if len(saved) != len(current):
        raise StatesError(f"{fname}: these states are for {len(saved)} parameters, but this "
                          f"trainer has {len(current)}: they were saved from another model")
    order = _order(saved, current)
    problems = []
    for i, j in enumerate(order):
        (s_key, s_shape, s_dtype), (c_key, c_shape, c_dtype) = saved[i], current[j]
        if s_key is not None and c_key is not None and s_key != c_key:
            problems.append(f"{names[j]} ({c_key}): saved for {s_key!r}")
        elif not _shapes_agree(s_shape, c_shape) or s_dtype != c_dtype:
            problems.append(f"{names[j]}: saved {s_shape} {s_dtype}, here {c_shape} {c_dtype}")
    if problems:
        raise StatesError(f"{fname}: these states were saved from another model: "
                          f"{_some(problems)}")
    return order


def _some(problems: List[str]) -> str:
    more = f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more


def _arrays(state: Any) -> Iterator[nd.NDArray]:
    """The arrays inside one updater state (an array, a tuple of them, None, ...)."""
    if isinstance(state, nd.NDArray):
        yield state
    elif isinstance(state, (tuple, list)):
        for part in state:
            yield from _arrays(part)


def _check_arrays(fname, states: dict, params: Sequence, order: Sequence[int]) -> None:
    """Every state belongs to a parameter and has its shape (and its dtype, or float32
    for the master copy of a float16 weight): a stock file records nothing else."""
    problems = []
    for index, state in states.items():
        if not (isinstance(index, int) and 0 <= index < len(params)):
            problems.append(f"a state for parameter index {index!r}, but this trainer has "
                            f"{len(params)} parameters")
            continue
        param = params[order[index]]
        shape, dtype = param_shape(param), _dtype(param.dtype)
        for array in _arrays(state):
            allowed = {dtype, "float32"} if dtype == "float16" else {dtype}
            if not _shapes_agree(tuple(array.shape), shape) or _dtype(array.dtype) not in allowed:
                problems.append(f"{param.name}: state {tuple(array.shape)} "
                                f"{_dtype(array.dtype)}, parameter {shape} {dtype}")
                break
    if problems:
        raise StatesError(f"{fname}: these states do not fit this trainer's parameters (saved "
                          f"from another model?): {_some(problems)}")


def _reindex(order: Sequence[int], table: dict) -> None:
    """Move an index-keyed table to this trainer's indices, in place (the optimizer
    aliases one of its count dicts)."""
    if list(order) == list(range(len(order))):
        return
    moved = {order[k] if isinstance(k, int) and 0 <= k < len(order) else k: v
             for k, v in table.items()}
    table.clear()
    table.update(moved)


def _reindex_optimizer(order: Sequence[int], optimizer) -> None:
    """The optimizer's index-keyed tables: update counts, rates, declarations."""
    for counts in update_counts(optimizer)[0].values():
        _reindex(order, counts)
    state = optimizer.layerwise
    rates = dict(state.rates)
    _reindex(order, rates)
    state.set_rates(rates)
    if len(state.declared) == len(order):
        declared = list(state.declared)
        for saved, here in enumerate(order):
            declared[here] = state.declared[saved]
        state.declared = declared


