"""What a distributed kvstore needs from the trainer's side.

Whether the optimizer will be pickled to the servers, whether a schedule can
make that trip, a worker that fails without hanging the job, and
``ParameterServerSync``, the ``gluon.Trainer`` overrides that keep the
servers in step with the rules. Used by ``trainer.py`` only (never imported
on a server).
"""
from __future__ import annotations

import os
import pickle
import pickletools
import sys
from typing import Any, Optional, Sequence

from mxnet import nd

from ..errors import InvalidTypeError

__all__ = ["ParameterServerSync", "sends_optimizer", "check_sendable", "exit_at_once_on_error"]


def sends_optimizer(kvstore: Any, update_on_kvstore: Optional[bool]) -> bool:
    """Whether gluon.Trainer will pickle the optimizer to kvstore servers.

    As its ``_init_kvstore`` decides for dense parameters: a ``dist_*`` kvstore
    (name or KVStore object) with ``update_on_kvstore`` True, or None and
    ``MXNET_UPDATE_ON_KVSTORE`` unset or 1; ``dist_async`` always.

    Examples
    --------
    >>> sends_optimizer("dist_sync", None), sends_optimizer("dist_sync", False)
    (True, False)
    """
    kind = kvstore if isinstance(kvstore, str) else getattr(kvstore, "type", "")
    if "dist" not in kind:
        return False
    if "async" in kind:
        return True
    if update_on_kvstore is not None:
        return bool(update_on_kvstore)
    return bool(int(os.environ.get("MXNET_UPDATE_ON_KVSTORE", "1")))


def check_sendable(what: str, schedule: Any) -> None:
    """Raise TypeError unless ``schedule`` can be unpickled on a kvstore server.

    Servers unpickle the optimizer inside their ``import mxnet``, before any
    user code runs: lambdas and local classes cannot be pickled at all, and
    classes or functions of ``__main__`` cannot be found there.

    Parameters
    ----------
    what : str
        Names the schedule's owner in the message (e.g. ``"rule 'l2'"``).
    schedule : callable or None
        The schedule; None passes.
    """
    if schedule is None:
        return
    hint = ("with a distributed kvstore and update_on_kvstore the optimizer is pickled to "
            "the servers: use an mx.lr_scheduler.LRScheduler, or a class or function "
            "defined at the top level of an importable module")
    try:
        data = pickle.dumps(schedule, 0)  # the protocol MXNet sends with
    except Exception as err:
        raise InvalidTypeError(f"{what}: the schedule {schedule!r} cannot be pickled ({err}); "
                               f"{hint}") from None
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL" and str(arg).split(" ")[0] == "__main__":
            raise InvalidTypeError(f"{what}: the schedule {schedule!r} uses {arg.split(' ')[1]!r} "
                                   "from __main__, which a server cannot import (it unpickles "
                                   f"before your script runs); {hint}")


def exit_at_once_on_error() -> None:
    """Make an uncaught exception end this worker at once (status 1, traceback printed).

    MXNet's dist kvstore waits at interpreter exit for all workers to finish, so
    a worker that raises would otherwise hang, and with it the whole job. The
    previous ``sys.excepthook`` still prints; installing twice is a no-op.
    """
    previous = sys.excepthook
    if getattr(previous, "gluon_finetune_exits", False):
        return

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    hook.gluon_finetune_exits = True
    sys.excepthook = hook


class ParameterServerSync:
    """The ``gluon.Trainer`` overrides a kvstore needs (mixed into
    ``LayerwiseTrainer``): each says what it adds to Gluon's own method.

    Expects ``self._to_servers`` (see ``sends_optimizer``), set before
    ``gluon.Trainer.__init__`` runs.
    """

    def _active_updaters(self) -> list:
        """The updaters that hold optimizer state: the trainer's, and the kvstore's when
        it updates (``update_on_kvstore`` with a local kvstore)."""
        updaters = list(self._updaters)
        kv_updater = getattr(self._kvstore, "_updater", None) if self._kvstore else None
        if self._update_on_kvstore and kv_updater is not None:
            updaters.append(kv_updater)
        return updaters

    def _check_sendable(self, what: str, schedule: Any) -> None:
        if self._to_servers:
            check_sendable(what, schedule)

    def _start_kvstore_early(self) -> None:
        """At construction, for a ``dist_*`` kvstore whose shapes are all known: set up
        the kvstore and broadcast rank 0's weights now. gluon.Trainer waits for the
        first step: by then each worker has computed a gradient on its own initial
        weights, and the lazy set-up races with it."""
        self._scale_sent = True  # False while the servers have rescale_grad from before step 1
        if self._is_dist_config() and not any(p._deferred_init for p in self._params):
            self._scale_sent = False
            self._init_kvstore()
            self._init_params()

    def _init_kvstore(self):
        """As gluon.Trainer, but ``update_on_kvstore=True`` without a kvstore (one device)
        updates locally instead of failing on ``None.is_capable``; on a distributed
        kvstore an uncaught exception then ends the worker at once (MXNet would make it
        wait at exit for the others)."""
        config = self._kvstore_params
        kv = config["kvstore"]
        no_store = kv is None or (isinstance(kv, str) and "dist" not in kv
                                  and len(self._contexts) == 1)
        if no_store and config["update_on_kvstore"]:
            self._kvstore_params = dict(config, update_on_kvstore=None)
        try:
            super()._init_kvstore()
        finally:
            self._kvstore_params = config
        if self._distributed:
            exit_at_once_on_error()

    def _is_dist_config(self) -> bool:
        kv = self._kvstore_params["kvstore"]
        return "dist" in (kv if isinstance(kv, str) else getattr(kv, "type", ""))

    def _send_to_servers(self, fresh: Sequence[int]) -> None:
        """Send the optimizer (rates, schedules, rescale_grad) to the kvstore servers again.

        The servers keep update counts and momentum, except for ``fresh``
        indices (see ``optimizer._take_over``). Waits for the pushes in flight
        first: they must be applied with the rates they were computed for.
        """
        if not (self._kv_initialized and self._distributed and self._update_on_kvstore):
            return
        nd.waitall()
        state = self._optimizer.layerwise
        state.resend = tuple(sorted(fresh))
        try:
            self._kvstore.set_optimizer(self._optimizer)
        finally:
            state.resend = None

    def _init_params(self):
        """As gluon.Trainer; on a distributed kvstore it also waits for the broadcast of
        initial weights, which otherwise races with the first gradient push (workers
        then diverge, about one run in three with ``update_on_kvstore=False``)."""
        super()._init_params()
        if self._distributed:
            nd.waitall()

    def _check_and_rescale_grad(self, scale):
        """As gluon.Trainer; but where the servers got the optimizer before the first
        step (the trainer initialises the kvstore at construction), the first step's
        ``rescale_grad`` is sent to them. Later batch-size changes raise as in Gluon."""
        if self._kv_initialized and self._distributed and self._update_on_kvstore \
                and not self._scale_sent:
            self._scale_sent = True
            if self._optimizer.rescale_grad != scale:
                self._optimizer.rescale_grad = scale
                self._send_to_servers(())
            return
        super()._check_and_rescale_grad(scale)

    def _update(self, ignore_stale_grad=False):
        """As gluon.Trainer; where the servers update, also counts the step on the
        worker's optimizer, so that ``learning_rate``, the clock of a layer that
        thaws, and re-sent optimizers see the servers' step count."""
        super()._update(ignore_stale_grad)
        if self._distributed and self._update_on_kvstore:
            self._optimizer.num_update += 1
