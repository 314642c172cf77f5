"""Gradual unfreezing: a thin epoch policy over ``LayerwiseTrainer.set_trainable_blocks``.

The trainer does the work (freezing, fresh optimizer state for thawed
layers, schedule restarts, saving the limit with ``save_states``); this class
only decides how many blocks may train at each epoch.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Union

from mxnet.gluon.contrib.estimator.event_handler import EpochBegin

from .structure import block_names
from .trainer import LayerwiseTrainer

__all__ = ["GradualUnfreezing"]

_RESTARTS = (None, "schedule")


class GradualUnfreezing(EpochBegin):
    """Thaw blocks from the head backwards as epochs pass.

    Parameters
    ----------
    trainer : LayerwiseTrainer
        A trainer that knows its network (``LayerwiseTrainer(net, ...)``).
    schedule : dict or callable, optional
        Epoch -> number of trainable blocks (counted from the head). A dict
        holds from its key until the next key (``{0: 1, 2: 3}``: epochs 0-1
        train the head, epoch 2 on the last three blocks); it must have key 0.
    every : int, optional
        Instead of ``schedule``: start with the head and thaw one more block
        every ``every`` epochs (ULMFiT).
    restart : {None, "schedule"}
        With ``"schedule"`` a thawed block's own schedule (e.g. a warm-up)
        starts again at the step it thaws, instead of running from step 0.

    Examples
    --------
    >>> unfreezer = GradualUnfreezing(trainer, every=1)           # doctest: +SKIP
    >>> for epoch in range(epochs):                               # doctest: +SKIP
    ...     unfreezer.on_epoch(epoch)
    ...     train_one_epoch()
    >>> estimator.fit(data, epochs=4, event_handlers=[unfreezer])  # doctest: +SKIP
    """

    def __init__(self, trainer: LayerwiseTrainer,
                 schedule: Union[Mapping[int, int], Callable[[int], int], None] = None, *,
                 every: Optional[int] = None, restart: Optional[str] = None):
        if not isinstance(trainer, LayerwiseTrainer):
            raise TypeError(f"trainer must be a LayerwiseTrainer, got {type(trainer).__name__}")
        if trainer.net is None:
            raise ValueError("gradual unfreezing needs the network: build the trainer with "
                             "LayerwiseTrainer(net, ...) or net=")
        if (schedule is None) == (every is None):
            raise ValueError("give exactly one of schedule= (epoch -> trainable blocks) and "
                             "every= (epochs per newly thawed block)")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        if isinstance(schedule, Mapping):
            _check_mapping(schedule)
        elif schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a dict epoch -> blocks or a callable, got "
                            f"{schedule!r}")
        if restart not in _RESTARTS:
            raise ValueError(f"restart must be one of {_RESTARTS}, got {restart!r}")
        self.trainer, self.schedule, self.every, self.restart = trainer, schedule, every, restart
        self.block_count = len(block_names(trainer.net, trainer._granularity, trainer._blocks))
        self.next_epoch = 0

    def blocks_at(self, epoch: int) -> int:
        """How many blocks (from the head) train at ``epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        if self.every is not None:
            return min(self.block_count, 1 + epoch // self.every)
        if isinstance(self.schedule, Mapping):
            return self.schedule[max(k for k in self.schedule if k <= epoch)]
        return self.schedule(epoch)

    def on_epoch(self, epoch: int) -> int:
        """Call at the start of ``epoch``: exactly ``blocks_at(epoch)`` blocks become
        trainable (freezing or thawing as needed). Returns that number."""
        n = self.blocks_at(epoch)
        if n != self.trainer.trainable_blocks:
            self.trainer.set_trainable_blocks(n, restart=self.restart == "schedule")
        self.next_epoch = epoch + 1
        return n

    def epoch_begin(self, estimator, *args, **kwargs):
        """Estimator hook: epochs are counted from 0 in the order the estimator runs them."""
        self.on_epoch(self.next_epoch)


def _check_mapping(schedule: Mapping) -> None:
    if 0 not in schedule:
        raise ValueError(f"schedule must say how many blocks train at epoch 0, got keys "
                         f"{sorted(schedule)}")
    for epoch, n in schedule.items():
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"schedule keys must be epochs (ints >= 0), got {epoch!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"schedule[{epoch}] must be a number of blocks >= 0, got {n!r}")
