"""The ``save_states`` file: optimizer state plus what stock Gluon forgets.

Stock Gluon pickles ``(updater states, optimizer)`` and nothing else: not
``Parameter.lr_mult`` and nothing that says which model the states belong to,
so loading another model's states succeeds without a word. Our file is a
pickled dict that also records each parameter's shape, dtype and
network-relative name, checked on load before anything changes.

Schedules that cannot be pickled (lambdas, closures) are stored as a marker
and taken back from the trainer that loads the file, which must have a
schedule for the same parameter. Loading unpickles: only load files you trust.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["FORMAT", "Signature", "signature", "pack", "unpack", "Unsaved", "check_signature"]

FORMAT = "gluon_finetune.states"
VERSION = 1

Signature = List[Tuple[Optional[str], Tuple[int, ...], str]]


class Unsaved:
    """Stands in for a schedule that could not be pickled (rule label kept)."""

    def __init__(self, rule):
        self.rule = rule

    def __repr__(self):
        return f"Unsaved(rule={self.rule!r})"

    def __call__(self, step):
        raise RuntimeError(f"the schedule of rule {self.rule!r} was not saved (it could not be "
                           f"pickled); load these states into a trainer that has that rule")


def signature(params, paths: Optional[Dict[str, str]]) -> Signature:
    """Per parameter: structural path in the network (if known), shape, dtype."""
    out = []
    for p in params:
        shape = tuple(int(d) for d in (p.shape or ()))
        dtype = getattr(p.dtype, "__name__", None) or str(p.dtype)
        out.append(((paths or {}).get(p.name), shape, dtype))
    return out


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


def check_signature(saved: Signature, current: Signature, names: Sequence[str]) -> List[int]:
    """Match saved parameters to this trainer's: returns saved index -> current index,
    or raises ValueError naming the differences if the states belong to another model."""
    if len(saved) != len(current):
        raise ValueError(f"these states are for {len(saved)} parameters, but this trainer has "
                         f"{len(current)}: they were saved from another model")
    order = _order(saved, current)
    problems = []
    for i, j in enumerate(order):
        (s_key, s_shape, s_dtype), (c_key, c_shape, c_dtype) = saved[i], current[j]
        if s_key is not None and c_key is not None and s_key != c_key:
            problems.append(f"{names[j]} ({c_key}): saved for {s_key!r}")
        elif not _shapes_agree(s_shape, c_shape) or s_dtype != c_dtype:
            problems.append(f"{names[j]}: saved {s_shape} {s_dtype}, here {c_shape} {c_dtype}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)"
                                           if len(problems) > 5 else "")
        raise ValueError(f"these states were saved from another model: {shown}")
    return order


def reindex(order: Sequence[int], table: dict) -> None:
    """Move an index-keyed table (updater states, rate table, update counts) to this
    trainer's indices, in place (the optimizer aliases one of its count dicts)."""
    if list(order) == list(range(len(order))):
        return
    moved = {order[k] if isinstance(k, int) and 0 <= k < len(order) else k: v
             for k, v in table.items()}
    table.clear()
    table.update(moved)


def optimizer_tables(optimizer) -> List[dict]:
    """The optimizer's index-keyed tables: rates and per-device update counts."""
    return [getattr(optimizer, "_layerwise_rates", {})] + \
        list(optimizer._all_index_update_counts.values())


def _picklable(obj) -> bool:
    try:
        pickle.dumps(obj)
        return True
    except Exception:
        return False


def _optimizer_bytes(optimizer) -> bytes:
    rates: Dict = getattr(optimizer, "_layerwise_rates", {})
    marked = {i: r._replace(lr_scheduler=Unsaved(r.rule))
              if r.lr_scheduler is not None and not _picklable(r.lr_scheduler) else r
              for i, r in rates.items()}
    optimizer._layerwise_rates = marked
    try:
        return pickle.dumps(optimizer)
    except Exception as err:
        raise TypeError(f"cannot save trainer states: the optimizer cannot be pickled ({err}); "
                        f"a trainer-level lr_scheduler must be picklable") from err
    finally:
        optimizer._layerwise_rates = rates


def pack(fname, updater_states: dict, optimizer, sig: Signature) -> None:
    """Write the states file atomically (a crash never leaves half a file)."""
    payload = {"format": FORMAT, "version": VERSION, "signature": sig,
               "states": pickle.dumps(updater_states), "optimizer": _optimizer_bytes(optimizer)}
    folder = os.path.dirname(os.path.abspath(fname))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".states-")
    try:
        with os.fdopen(fd, "wb") as out:
            pickle.dump(payload, out)
        os.replace(tmp, fname)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def unpack(fname) -> Tuple[bytes, object, Optional[Signature]]:
    """Read a states file (ours or stock Gluon's): (states bytes, optimizer, signature)."""
    with open(fname, "rb") as f:
        payload = pickle.load(f)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        if payload.get("version") != VERSION:
            raise ValueError(f"{fname}: states file version {payload.get('version')!r}; this "
                             f"gluon-finetune reads version {VERSION}")
        return payload["states"], pickle.loads(payload["optimizer"]), payload["signature"]
    if isinstance(payload, tuple) and len(payload) == 2:  # stock gluon.Trainer file
        states, optimizer = payload
        return pickle.dumps(states), optimizer, None
    raise ValueError(f"{fname} is not a trainer states file (neither gluon-finetune's nor "
                     f"gluon.Trainer's)")


def restore_unsaved(rates: Dict, current: Dict) -> Dict:
    """Put back, from the current trainer, the schedules the file could not hold."""
    out = {}
    for i, rate in rates.items():
        if isinstance(rate.lr_scheduler, Unsaved):
            mine = current.get(i)
            if mine is None or mine.lr_scheduler is None:
                raise ValueError(f"these states need the schedule of rule {rate.rule!r} "
                                 f"(it could not be saved); give this trainer that rule first")
            rate = rate._replace(lr_scheduler=mine.lr_scheduler)
        out[i] = rate
    return out
