"""The processes of one training job, as the run folder sees them: rank 0 writes.

Under Horovod (a trainer built with ``kvstore="horovod"``) every worker runs
the same loop on its shard of the images; what must be the same everywhere
(the epoch's history, hence the best epoch and early stopping) is rank 0's,
sent to the others, and the files are rank 0's alone. Without Horovod this is
one process, rank 0 of 1, and every method does nothing beyond the obvious.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from .._compat import kvstore_in_use
from ..errors import UnsupportedError
from ..trainer import HorovodKVStore, horovod_store_of

__all__ = ["Workers"]


class Workers:
    """Rank, number of workers, and the few collective steps a run needs."""

    def __init__(self, store: Optional[HorovodKVStore] = None):
        self._store = store
        self.rank = 0 if store is None else store.rank
        self.size = 1 if store is None else store.num_workers

    @classmethod
    def of(cls, trainer) -> Workers:
        """The workers of ``trainer``'s job (its Horovod kvstore's, else this process).

        A parameter server's kvstore (``dist_sync`` ...) is refused: a run would not know
        its workers, so each would train on every image and write the same folder."""
        store = kvstore_in_use(trainer)
        kind = store if store is None or isinstance(store, str) else store.type
        if kind is not None and ("dist" in kind or kind == "byteps"):
            raise UnsupportedError(
                f"a run (train_run, gluon-finetune train) goes in one process or on Horovod "
                f"workers, but the trainer's kvstore is {kind!r}: each worker would train on "
                f"every image and write the same run folder. Use kvstore='horovod' under "
                f"horovodrun, or your own loop for {kind} (the scaling-out guide)",
                argument="trainer")
        return cls(horovod_store_of(trainer))

    @property
    def writer(self) -> bool:
        """Whether this process writes the files and prints (rank 0)."""
        return self.rank == 0

    def shard(self, data) -> None:
        """Give ``data`` (an ``EpochData``) this worker's share of every epoch (all of it
        for one worker). Do it before anything counts its batches (a schedule's length)."""
        if self.size > 1:
            data.shard(self.rank, self.size)

    def barrier(self) -> None:
        """Wait here until every worker gets here."""
        if self.size > 1:
            self._store.barrier()

    def average(self, values: Dict[str, float], tag: str) -> Dict[str, float]:
        """Each value's mean over the workers."""
        if self.size == 1:
            return dict(values)
        names = sorted(values)
        return dict(zip(names, self._store.average([values[n] for n in names], tag)))

    def share(self, value: Any, tag: str) -> Any:
        """Rank 0's ``value``, on every worker."""
        return value if self.size == 1 else self._store.broadcast_object(value, tag)
