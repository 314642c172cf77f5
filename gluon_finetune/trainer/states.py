"""``save_states``/``load_states`` of ``LayerwiseTrainer``: what loading means for the rules.

``StatesFiles`` holds the two ``gluon.Trainer`` overrides (mixed into
``LayerwiseTrainer``) and decides which rules the trainer has after loading;
the file itself (format, checks) is ``states_file``.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from typing import Dict, List, Optional

from ..errors import InvalidTypeError, StatesError, UnsupportedError
from ..optim import rates as rate_table
from ..optim.rates import Rate, Unsaved, base_lr
from ..rules.keys import renamed_rules
from ..structure.listing import param_paths
from .states_file import read, signature, write

__all__ = ["StatesError", "StatesFiles"]


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
