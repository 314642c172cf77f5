"""Gradual unfreezing: a thin epoch policy over ``LayerwiseTrainer.set_trainable_blocks``.

The trainer does the work (freezing, fresh optimizer state for thawed
layers, schedule restarts, saving the limit with ``save_states``); this class
only decides how many blocks may train at each epoch.
"""
from __future__ import annotations

import warnings
from typing import Callable, Mapping, Optional, Union

from mxnet.gluon.contrib.estimator.event_handler import EpochBegin

from ..checks import InvalidTypeError, InvalidValueError, check_int, is_int
from ..trainer import LayerwiseTrainer, describe_blocks

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

    Raises
    ------
    InvalidTypeError
        ``trainer`` is not a ``LayerwiseTrainer``, or ``schedule`` neither a dict
        nor a callable.
    InvalidValueError
        A trainer without its network; both or neither of ``schedule`` and
        ``every``; a schedule without epoch 0 or with more blocks than the
        network has (the message lists the blocks); an unknown ``restart``.

    Notes
    -----
    Thawed blocks start with fresh optimizer state; the limit and each block's
    schedule clock live in the optimizer, so ``save_states``/``load_states``
    resume mid-unfreezing bit for bit. It is also a ``gluon.contrib.estimator``
    event handler: ``estimator.fit(..., event_handlers=[unfreezer])``.

    Examples
    --------
    >>> from gluon_finetune import GradualUnfreezing, LayerwiseTrainer
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    >>> unfreezer = GradualUnfreezing(trainer, {0: 1, 2: 3})
    >>> for epoch in range(4):
    ...     trainable = unfreezer.on_epoch(epoch)
    ...     print(epoch, trainable, net.features[3].weight.grad_req)
    ...     # ... the epoch's training loop
    0 1 null
    1 1 null
    2 3 write
    3 3 write
    >>> GradualUnfreezing(trainer, every=2).blocks_at(5)
    3
    """

    def __init__(self, trainer: LayerwiseTrainer,
                 schedule: Union[Mapping[int, int], Callable[[int], int], None] = None, *,
                 every: Optional[int] = None, restart: Optional[str] = None):
        if not isinstance(trainer, LayerwiseTrainer):
            raise InvalidTypeError(f"trainer must be a LayerwiseTrainer, got "
                                   f"{type(trainer).__name__}", argument="trainer")
        if trainer.net is None:
            raise InvalidValueError("gradual unfreezing needs the network: build the trainer "
                                    "with LayerwiseTrainer(net, ...) or net=", argument="trainer")
        if (schedule is None) == (every is None):
            raise InvalidValueError("give exactly one of schedule= (epoch -> trainable "
                                    "blocks) and every= (epochs per newly thawed block)",
                                    argument="schedule")
        if every is not None:
            every = check_int("every", every, minimum=1)
        listed = trainer.block_list
        if isinstance(schedule, Mapping):
            schedule = _checked_mapping(schedule, listed)
        elif schedule is not None and not callable(schedule):
            raise InvalidTypeError(f"schedule must be a dict epoch -> blocks or a callable, "
                                   f"got {schedule!r}", argument="schedule")
        if restart not in _RESTARTS:
            raise InvalidValueError(f"restart must be one of {_RESTARTS}, got {restart!r}",
                                    argument="restart")
        self.trainer, self.schedule, self.every, self.restart = trainer, schedule, every, restart
        self._listed = listed
        self.block_count = len(listed)
        self.next_epoch = 0
        self._started = False

    def blocks_at(self, epoch: int) -> int:
        """How many blocks (from the head) train at ``epoch``; changes nothing.

        Parameters
        ----------
        epoch : int
            The epoch (>= 0).

        Returns
        -------
        int
            The number of trainable blocks, counted from the head.

        Raises
        ------
        InvalidValueError
            A negative epoch, or a callable schedule that returns no count in
            range.
        """
        epoch = check_int("epoch", epoch, minimum=0)
        if self.every is not None:
            return min(self.block_count, 1 + epoch // self.every)
        if isinstance(self.schedule, Mapping):
            return self.schedule[max(k for k in self.schedule if k <= epoch)]
        n = self.schedule(epoch)
        if not is_int(n) or not 0 <= n <= self.block_count:
            raise InvalidValueError(
                f"schedule({epoch}) returned {n!r}, but a number of trainable blocks is an "
                f"int in 0..{self.block_count}: the network has {self.block_count} blocks "
                f"({describe_blocks(self._listed)})", argument="schedule")
        return int(n)

    def on_epoch(self, epoch: int) -> int:
        """Call at the start of ``epoch``: exactly ``blocks_at(epoch)`` blocks become trainable.

        Freezes or thaws as needed, through ``trainer.set_trainable_blocks``; a
        block a rule freezes stays frozen.

        Parameters
        ----------
        epoch : int
            The epoch about to start (>= 0).

        Returns
        -------
        int
            The number of trainable blocks from now on.
        """
        n = self.blocks_at(epoch)
        if not self._started:
            self._check_start(epoch, n)
            self._started = True
        if n != self.trainer.trainable_blocks:
            self.trainer.set_trainable_blocks(n, restart=self.restart == "schedule")
        self.next_epoch = epoch + 1
        return n

    def _check_start(self, epoch: int, n: int) -> None:
        """Warn where the first epoch freezes blocks that a trainable-blocks limit or the
        model's own freezes (``get_model(..., unfreeze=k)``) left trainable: two starts
        that disagree (the command line refuses ``--unfreeze`` with ``--gradual``). A
        fully trainable model, or a resumed run (its limit below the epoch's), says
        nothing."""
        trainer, count = self.trainer, self.block_count
        k = trainer.trainable_blocks
        if k is None and trainer.frozen_before:
            trainable = {p.name for p in trainer.params if p.grad_req != "null"}
            live = [i for i, (_, names) in enumerate(self._listed) if names & trainable]
            k = count - live[0] if live else 0
        if k is None or n >= k:
            return
        why = f"set_trainable_blocks({k})" if trainer.trainable_blocks is not None else \
            "the model's own freezes, as get_model(..., unfreeze=k) leaves them"
        warnings.warn(f"GradualUnfreezing: epoch {epoch} trains {n} block{'s' * (n != 1)}, but "
                      f"{k} were trainable ({why}): it freezes {k - n} of them (blocks "
                      f"{count - k}:{count - n}); to start from {k}, give schedule={{{epoch}: "
                      f"{k}, ...}}, or start from the head with a model that has no frozen "
                      f"blocks and no limit", stacklevel=3)

    def epoch_begin(self, estimator, *args, **kwargs):
        """``gluon.contrib.estimator`` hook: calls ``on_epoch`` with the next epoch.

        Epochs are counted from 0 in the order the estimator runs them.

        Parameters
        ----------
        estimator : Estimator
            The estimator (not read).
        *args, **kwargs
            What the estimator passes (not read).
        """
        self.on_epoch(self.next_epoch)


def _checked_mapping(schedule: Mapping, listed) -> dict:
    """``{epoch: blocks}`` with Python ints, every value in range for the network."""
    out = {}
    for epoch, n in schedule.items():
        if not is_int(epoch) or epoch < 0:
            raise InvalidValueError(f"schedule keys must be epochs (ints >= 0), got "
                                    f"{epoch!r}", argument="schedule")
        if not is_int(n) or n < 0:
            raise InvalidValueError(f"schedule[{epoch}] must be a number of blocks >= 0, got "
                                    f"{n!r}", argument="schedule")
        if n > len(listed):
            raise InvalidValueError(
                f"schedule[{epoch}] = {n} trainable blocks, but the network has only "
                f"{len(listed)} blocks ({describe_blocks(listed)})", argument="schedule")
        out[int(epoch)] = int(n)
    if 0 not in out:
        raise InvalidValueError(f"schedule must say how many blocks train at epoch 0, got "
                                f"keys {sorted(out)}", argument="schedule")
    return out
