"""``save_states``/``load_states``: the file, checked before anything changes, and what
loading means for the trainer's rules.

The file is the one ``gluon.Trainer`` writes, a pickled ``(updater states,
optimizer)``, so stock ``gluon.Trainer.load_states`` reads ours (momentum
and per-layer rates included: they travel inside our optimizer). Ours also
records, in the optimizer's ``LayerwiseState``, each parameter's structural
path, shape and dtype (``signature``), and the rules the rates came from.

Reading checks the file before the trainer changes: a file that does not
unpickle, does not hold trainer states, or belongs to another model (count,
shapes, dtypes of the state arrays, structural paths) is a ``StatesError``
naming the file. Loading unpickles: only load files you trust.

``StatesFiles`` holds the two ``gluon.Trainer`` overrides (mixed into
``LayerwiseTrainer``) and decides which rules the trainer has after loading.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from mxnet import nd
from mxnet.optimizer import Optimizer

from .._compat import update_counts
from ..errors import InvalidTypeError, StatesError, UnsupportedError
from ..optim import rates as rate_table
from ..optim.optimizer import is_layerwise, layerwise
from ..optim.rates import Rate, Unsaved, base_lr
from ..rules.keys import renamed_rules
from ..structure.index import param_paths, param_shape

__all__ = ["StatesError", "Signature", "Loaded", "signature", "write", "read", "StatesFiles"]

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


class StatesFiles:
    """``save_states``/``load_states`` of ``LayerwiseTrainer``, mixed into it: each says
    what it adds to Gluon's own method. Uses the trainer's rule helpers (``_resolve``,
    ``_fresh_rates``, ``_install``) and its settings (``_bn``, ``_strict``, ``_net``);
    the rules, their table and the rates live in the optimizer's ``LayerwiseState``."""

    def save_states(self, fname):
        """Save what ``gluon.Trainer`` saves (it reads the file too), and what resuming needs:
        the rate table, its rules, each schedule's state, per-parameter update counts, the
        trainable-blocks limit and a signature of the parameters (paths, names, shapes).
        A rule's schedule that cannot be pickled is not saved: a warning says so.

        Parameters
        ----------
        fname : str
            The file to write (on rank 0 only under Horovod). A distributed kvstore
            with ``update_on_kvstore=True`` raises ``UnsupportedError``.

        Examples
        --------
        >>> from gluon_finetune import LayerwiseTrainer
        >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
        ...                            layers={"features": 0.1})
        >>> trainer.save_states("run.states")
        >>> resumed = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
        >>> resumed.load_states("run.states")  # built without rules: takes the file's
        >>> resumed.layers
        {'features': 0.1}
        """
        if not isinstance(fname, (str, os.PathLike)):
            raise InvalidTypeError(f"fname must be a path, got {fname!r}")
        if not self._kv_initialized:
            self._init_kvstore()
        if self._params_to_init:
            self._init_params()
        if self._update_on_kvstore and self._distributed:
            raise UnsupportedError("Cannot save states for distributed training with "
                                   "update_on_kvstore=True (the state lives on the servers)")
        updater = self._active_updaters()[-1] if self._update_on_kvstore else self._updaters[0]
        for rule, what in self._optimizer.layerwise.unsaved():
            warnings.warn(f"rule {rule!r}: its schedule ({what}) cannot be pickled (a lambda or "
                          f"a local function), so it is not saved in the states file; load the "
                          f"file into a trainer built with that rule, or make the schedule a "
                          f"module-level function or an mx.lr_scheduler.LRScheduler",
                          stacklevel=2)
        names = [p.name for p in self._params]
        self._write_on_rank_zero(lambda: write(fname, updater.states, self._optimizer,
                                               self._signature(), self._stock_aggregate_num,
                                               names))

    def load_states(self, fname):
        """Load states saved by ``save_states`` or by ``gluon.Trainer``.

        Parameters are matched by structural path, so a rebuilt network whose
        names sort differently gets each state back. A file of ours carries its
        rules: a trainer built with rules must have the same ones, a trainer built
        without takes the file's; rates, schedules, clocks and the trainable-blocks
        limit continue from it. A ``gluon.Trainer`` file carries optimizer state
        only. Unpickles: trusted files only.

        Parameters
        ----------
        fname : str
            A file written by ``save_states`` (ours or ``gluon.Trainer``'s). A file
            of other parameters or rules, or no states file at all, raises
            ``StatesError`` and changes nothing.
        """
        if not isinstance(fname, (str, os.PathLike)):
            raise InvalidTypeError(f"fname must be a path, got {fname!r}")
        if self._to_servers:
            raise UnsupportedError("Cannot load states for distributed training with "
                                   "update_on_kvstore=True (the state lives on the servers)")
        loaded = read(fname, self._params, self._signature())
        rates = self._rules_after_loading(fname, loaded)
        if not self._kv_initialized:
            self._init_kvstore()
        if self._params_to_init:
            self._init_params()
        optimizer = loaded.optimizer
        optimizer.param_dict = dict(enumerate(self._params))
        for updater in self._active_updaters():
            updater.states = pickle.loads(loaded.states)  # each updater its own arrays
            updater.states_synced = dict.fromkeys(updater.states, False)
            updater.optimizer = optimizer
        self._optimizer = optimizer  # its LayerwiseState holds the rules, table and limit
        self._choose_update_path()
        if optimizer.layerwise.table is not None:
            self._install(rates, fresh_state=False)

    def _rules_after_loading(self, fname, loaded) -> Dict[int, Rate]:
        """Give the file's ``LayerwiseState`` the rules the trainer has after loading, and
        return the rates; raises, changing nothing here, when the trainer's own rules
        differ from the file's."""
        saved, opt, mine = loaded.optimizer.layerwise, loaded.optimizer, \
            self._optimizer.layerwise
        if not loaded.ours or saved.rules is None:  # no rules in the file: keep ours
            if not loaded.ours:  # nor a limit, nor clocks: ours, on the file's counts
                saved.trainable_blocks = mine.trainable_blocks
                saved.set_rates({})
            table = mine.table
            if table is None and saved.trainable_blocks is None:
                saved.set_rules(mine.rules, None, None, self._bn)
                return {}
            table = table or self._resolve({}, self._params, None, self._strict)
            saved.set_rules(mine.rules, table, mine.rules_lr, self._bn)
            return rate_table.keep_clocks(saved.rates, self._fresh_rates(opt), opt.num_update,
                                          opt.begin_num_update, False)
        _follow_renames(saved, loaded.renames)
        rules, table, rules_lr = mine.rules, mine.table, mine.rules_lr
        if rules is None:  # a trainer built without rules takes the file's
            _check_schedules_saved(fname, saved)
            rules, rules_lr = saved.rules, saved.reference_lr(base_lr(opt))
            table = self._resolve(rules, self._params, rules_lr, self._strict)
        _check_same_rules(fname, saved.declared, rate_table.declarations(table, self._bn),
                          self._params, took_the_files=mine.rules is None)
        saved.restore_unsaved(mine.rates or self._fresh_rates_for(opt, rules, table, rules_lr))
        saved.set_rules(rules, table, rules_lr, self._bn)
        return saved.rates

    def _fresh_rates_for(self, opt, rules, table, rules_lr) -> Dict[int, Rate]:
        """The rates ``table`` gives, without installing it (to find schedules a file
        could not hold)."""
        state = opt.layerwise
        before = (state.rules, state.table, state.rules_lr, state.declared)
        state.set_rules(rules, table, rules_lr, self._bn)
        try:
            return self._fresh_rates(opt)
        finally:
            state.rules, state.table, state.rules_lr, state.declared = before

    def _signature(self):
        paths = param_paths(self._net) if self._net is not None else None
        return signature(self._params, paths)


def _follow_renames(state, renames: Optional[Dict[str, str]]) -> None:
    """Rules keyed by a parameter's name follow it to its name here (a network rebuilt in
    the same process has new prefixes), as structural paths do: the file's rule keys, and
    its rule labels in the declarations and rates."""
    if not renames or state.rules is None:
        return
    state.rules, labels = renamed_rules(state.rules, renames)
    if not labels:
        return
    # declarations() writes each label as "rule 'label'" ("wd rule 'label'" too): one pass
    pattern = re.compile("rule (" + "|".join(re.escape(repr(old)) for old in labels) + ")")
    relabel = {repr(old): f"rule {new!r}" for old, new in labels.items()}
    state.declared = [pattern.sub(lambda m: relabel[m.group(1)], text) for text in state.declared]
    state.set_rates({i: r._replace(rule=labels.get(r.rule, r.rule),
                                   wd_rule=labels.get(r.wd_rule, r.wd_rule))
                     for i, r in state.rates.items()})


def _check_schedules_saved(fname, state) -> None:
    """A trainer without rules of its own takes the file's: every schedule must be in it."""
    lost = {r.rule: r.lr_scheduler.describe() for r in state.rates.values()
            if isinstance(r.lr_scheduler, Unsaved)}
    if lost:
        named = ", ".join(f"{rule!r} ({what})" for rule, what in sorted(lost.items()))
        raise StatesError(
            f"{fname}: the schedule of rule {named} was not saved in this file: it could not "
            f"be pickled (a lambda or a local function), and this trainer, built without "
            f"layers=, has no rule to take it from. Build the trainer with layers= holding the "
            f"rules it was saved with (that schedule included) and load again; to keep a "
            f"schedule in the file, make it a module-level function or an "
            f"mx.lr_scheduler.LRScheduler")


def _check_same_rules(fname, saved: List[str], here: List[str], params,
                      took_the_files: bool) -> None:
    """The file's rules and the trainer's must declare the same for every parameter."""
    saved = saved or ["no rule"] * len(params)
    here = here or ["no rule"] * len(params)
    differ = [f"{p.name}: saved with {a}; this trainer has {b}"
              for p, a, b in zip(params, saved, here) if a != b]
    if differ:
        shown = "; ".join(differ[:3]) + (f"; ... ({len(differ)} in all)" if len(differ) > 3
                                          else "")
        if took_the_files:  # the file's own rules, resolved on this network
            raise StatesError(f"{fname}: the rules saved in this file declare other settings "
                              f"on this network than on the one they were saved from, so the "
                              f"run would not continue as saved: {shown}. Is it the same "
                              f"network?")
        raise StatesError(f"{fname}: these states were saved with other rules than this "
                          f"trainer's, so the run would not continue as saved: {shown}. Build the "
                          "trainer with the rules it was saved with (or without layers= to take "
                          "the file's)")
