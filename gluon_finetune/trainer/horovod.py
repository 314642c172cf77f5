"""Horovod as a kvstore: gradients averaged across workers, every rule applied by each worker.

``kvstore="horovod"`` (MXNet 2.0's spelling) makes a ``HorovodKVStore``: MXNet
1.9.1's own string silently makes a local kvstore that Gluon drops on one
device (no synchronisation, no error). Gluon's ``Trainer`` already knows what
to do with a ``KVStoreBase`` that cannot update: it broadcasts each weight
through it once and all-reduces each gradient through it at every step, then
updates locally. So each worker runs the layerwise optimizer itself, with the
same rules, on the average gradient: the weights stay bit-identical across
workers.

What this module adds around that, for ``LayerwiseTrainer`` (``HorovodSync``):
weights broadcast from rank 0 when the trainer starts (deferred parameters
right after their first forward, as ``hvd.broadcast_parameters`` does), a check
that every rank trains the same parameters after each rule change (a rank that
all-reduces another set hangs the job without a word), states files written by
rank 0, and refusals for what Horovod cannot do. Horovod is imported only when
a Horovod kvstore is made.
"""
from __future__ import annotations

import itertools
import warnings
import zlib
from typing import Any, List, Optional

from mxnet.kvstore import KVStoreBase

from .._compat import after_init, deferred_init, requested_kvstore
from ..errors import InvalidTypeError, InvalidValueError

__all__ = ["HorovodKVStore", "horovod_store", "horovod_store_of", "is_horovod",
           "check_not_horovod_optimizer", "HorovodSync"]

_INSTANCES = itertools.count()  # tensor names must be unique per job: one prefix per store


def _hvd():
    try:
        import horovod.mxnet as hvd
    except ImportError as err:
        raise InvalidValueError(
            f"kvstore='horovod' needs Horovod built with MXNet support ({err}); install it "
            f"with HOROVOD_WITH_MXNET=1 (see the scaling-out guide)", argument="kvstore") from None
    return hvd


@KVStoreBase.register
class HorovodKVStore(KVStoreBase):
    """A kvstore that averages gradients across Horovod workers (Gloo or MPI).

    Gives ``gluon.Trainer`` and ``LayerwiseTrainer`` alike data-parallel
    training under ``horovodrun``: weights are broadcast from rank 0, gradients
    all-reduced (averaged) at each step, and each worker updates its own copy.
    One device per process, as Horovod expects. ``LayerwiseTrainer(...,
    kvstore="horovod")`` makes one for you.

    Examples
    --------
    >>> from mxnet import gluon
    >>> from gluon_finetune.trainer.horovod import HorovodKVStore
    >>> net = gluon.nn.Dense(2, in_units=3)
    >>> net.initialize()
    >>> kv = HorovodKVStore()  # one process without horovodrun: a job of size 1
    >>> kv.type, kv.rank, kv.num_workers
    ('horovod', 0, 1)
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", kvstore=kv)
    """

    def __init__(self):
        self._hvd = _hvd()
        self._hvd.init()
        self._prefix = f"gluon_finetune.{next(_INSTANCES)}."

    @property
    def type(self) -> str:
        return "horovod"

    @property
    def rank(self) -> int:
        return self._hvd.rank()

    @property
    def num_workers(self) -> int:
        return self._hvd.size()

    def broadcast(self, key, value, out, priority=0):
        """Every ``out`` array gets rank 0's ``value``."""
        out = out if isinstance(out, list) else [out]
        self._hvd.broadcast_(value, root_rank=0, name=self._name(key, "init"),
                             priority=priority)
        for array in out:
            if array is not value:
                array[:] = value

    def pushpull(self, key, value, out=None, priority=0):
        """The average of ``value`` over the workers, in place (or into ``out``)."""
        values = value if isinstance(value, list) else [value]
        if len(values) != 1:
            raise InvalidValueError(f"Horovod runs one device per process; this trainer has "
                                    f"{len(values)} (pass one context)", argument="contexts")
        self._hvd.allreduce_(values[0], average=True, name=self._name(key, "grad"),
                             priority=priority)
        for array in (out if isinstance(out, list) else [out] if out is not None else []):
            array[:] = values[0]

    def barrier(self) -> None:
        """Wait until every worker gets here (a one-number all-reduce)."""
        from mxnet import nd
        self._hvd.allreduce(nd.zeros(1), name=self._name("barrier", 0)).wait_to_read()

    def allgather_ints(self, values: List[int], tag: str) -> List[List[int]]:
        """Each worker's ``values`` (same length on every worker), in rank order."""
        from mxnet import nd
        mine = nd.array([values], dtype="int64")
        gathered = self._hvd.allgather(mine, name=self._name("gather", tag))
        return [list(map(int, row)) for row in gathered.asnumpy()]

    def average(self, values: List[float], tag: str) -> List[float]:
        """The mean of each of ``values`` over the workers (same length on every worker)."""
        from mxnet import nd
        mine = nd.array(values, dtype="float64")
        return [float(v) for v in self._hvd.allreduce(
            mine, average=True, name=self._name("average", tag)).asnumpy()]

    def broadcast_object(self, value: Any, tag: str) -> Any:
        """Rank 0's ``value`` (any picklable object), on every worker."""
        return self._hvd.broadcast_object(value, root_rank=0, name=self._name("object", tag))

    def set_optimizer(self, optimizer):
        raise InvalidValueError("a Horovod kvstore does not run the optimizer: each worker "
                                "updates its own weights (update_on_kvstore=False)",
                                argument="update_on_kvstore")

    @staticmethod
    def is_capable(capability):
        return False  # no optimizer on the store: Gluon updates on each worker

    def save_optimizer_states(self, fname, dump_optimizer=False):
        raise InvalidValueError("a Horovod kvstore holds no optimizer state")

    def load_optimizer_states(self, fname):
        raise InvalidValueError("a Horovod kvstore holds no optimizer state")

    def _name(self, key, kind) -> str:
        return f"{self._prefix}{kind}.{key}"


def horovod_store(kvstore: Any, update_on_kvstore) -> Any:
    """``kvstore``, with the string ``'horovod'`` made into a ``HorovodKVStore``."""
    if not is_horovod(kvstore):
        return kvstore
    if update_on_kvstore:
        raise InvalidValueError("update_on_kvstore=True with Horovod: there is no server to "
                                "update on; each worker updates its own weights (leave it None)",
                                argument="update_on_kvstore")
    return HorovodKVStore() if isinstance(kvstore, str) else kvstore


def horovod_store_of(trainer: Any) -> Optional[HorovodKVStore]:
    """The Horovod kvstore ``trainer`` (a ``LayerwiseTrainer`` or ``gluon.Trainer``) was
    given, or None."""
    kv = requested_kvstore(trainer)
    return kv if isinstance(kv, HorovodKVStore) else None


def is_horovod(kvstore: Any) -> bool:
    """The ``'horovod'`` string or a Horovod kvstore object."""
    if isinstance(kvstore, str):
        return kvstore.lower() == "horovod"
    return getattr(kvstore, "type", None) == "horovod"


def check_not_horovod_optimizer(optimizer: Any) -> None:
    """Refuse ``hvd.DistributedOptimizer``: its wrapper keeps the trainer's ``lr_mult``,
    ``wd_mult`` and ``rescale_grad`` to itself, so the real optimizer never sees them
    (a frozen weight moves, the scale is off by the batch size): silently wrong."""
    if type(optimizer).__module__.startswith("horovod."):
        raise InvalidTypeError(
            f"{type(optimizer).__name__} from Horovod cannot drive a LayerwiseTrainer: the "
            f"per-layer rates and rescale_grad would never reach the optimizer it wraps. "
            f"Pass the plain optimizer and kvstore='horovod' instead", argument="optimizer")


def fingerprint(names: List[str]) -> int:
    """A 32-bit digest of a list of parameter names (equal lists, equal digests)."""
    return zlib.crc32("\n".join(names).encode())


class HorovodSync:
    """The ``LayerwiseTrainer`` side of a Horovod kvstore (mixed into it)."""

    def _horovod_store(self):
        return horovod_store_of(self)

    def _start_horovod(self) -> None:
        """Broadcast rank 0's weights now (deferred ones right after they are made)."""
        store = self._horovod_store()
        if store is None:
            return
        if len(self._contexts) > 1:
            raise InvalidValueError(
                f"Horovod runs one device per process; the parameters live on "
                f"{len(self._contexts)} contexts {self._contexts}: start one process per "
                f"device (horovodrun -np N) with one context each", argument="contexts")
        if self._bn in ("stats", "train"):
            warnings.warn(f"bn={self._bn!r} under Horovod: BatchNorm running statistics are "
                          f"not synchronised, each worker keeps its own (rank 0's are saved)",
                          stacklevel=3)
        # Gluon broadcasts at the first step, after each worker's first forward and
        # backward on its own initial weights: too late for the same run on every rank.
        for index, param in enumerate(self._params):
            if deferred_init(param):
                _broadcast_when_made(param, store, index)
            else:
                arrays = param.list_data()
                store.broadcast(index, arrays[0], arrays)
        self._params_to_init = []  # all broadcast (or hooked): Gluon's first step need not again

    def _check_same_on_every_rank(self) -> None:
        """Every rank must all-reduce the same gradients: compare what each trains."""
        store = self._horovod_store()
        if store is None or store.num_workers == 1:
            return
        trained = [p.name for p in self._params if p.grad_req != "null"]
        digests = store.allgather_ints([fingerprint(trained), len(trained)], "trainable")
        differ = [rank for rank, row in enumerate(digests) if row != digests[0]]
        if differ:
            raise InvalidValueError(
                f"the workers train different parameters (ranks {differ} differ from rank 0; "
                f"this rank trains {len(trained)}): every rule change (set_layers, "
                f"set_trainable_blocks, gradual unfreezing) must happen at the same step on "
                f"every worker")

    def _write_on_rank_zero(self, write) -> None:
        """States files under Horovod: rank 0 writes, every rank waits for the file."""
        store = self._horovod_store()
        if store is None:
            write()
            return
        if store.rank == 0:
            write()
        store.barrier()


def _broadcast_when_made(param, store: HorovodKVStore, index: int) -> None:
    """After a deferred parameter is made (its first forward), give it rank 0's values."""
    def broadcast(made) -> None:
        arrays = made.list_data()
        store.broadcast(index, arrays[0], arrays)
    after_init(param, broadcast)
