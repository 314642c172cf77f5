"""What a distributed kvstore needs from the trainer's side, apart from its overrides.

Whether the optimizer will be pickled to the servers, whether a schedule can
make that trip, and a worker that fails without hanging the job. Used by
``trainer.py`` only (never imported on a server).
"""
from __future__ import annotations

import os
import pickle
import pickletools
import sys
from typing import Any, Optional

__all__ = ["sends_optimizer", "check_sendable", "exit_at_once_on_error"]


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
        raise TypeError(f"{what}: the schedule {schedule!r} cannot be pickled ({err}); "
                        f"{hint}") from None
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL" and str(arg).split(" ")[0] == "__main__":
            raise TypeError(f"{what}: the schedule {schedule!r} uses {arg.split(' ')[1]!r} "
                            f"from __main__, which a server cannot import (it unpickles "
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
