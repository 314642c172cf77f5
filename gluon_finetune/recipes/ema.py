"""An exponential moving average of a network's trainable weights (timm's ``ModelEmaV2``).

After each ``trainer.step``, :meth:`ModelEMA.update` moves every *trainable*
weight's average towards it: ``ema = decay * ema + (1 - decay) * weight``.
Frozen parameters (``grad_req='null'``) and running statistics are neither
averaged nor copied at a step: a frozen weight's average is the weight
itself, and the network's own running statistics are used with the averaged
weights. The averages start as a copy of the weights when the object is made
(as timm's deep copy of the model does), so a block thawed later by gradual
unfreezing averages from the value it had while frozen.

:meth:`ModelEMA.average` swaps the averages into the network for an
evaluation (or ``save_parameters``) and puts the trained weights back bit for
bit when it ends.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Dict, Iterator, Set

from mxnet import gluon, nd
from mxnet.base import MXNetError

from ..checks import InvalidTypeError, InvalidValueError, MissingFileError, check_real, last_line
from ..structure import can_train
from ..structure.listing import param_paths

__all__ = ["ModelEMA"]


def _data(param: gluon.Parameter, path: str) -> nd.NDArray:
    try:
        return param.data()
    except (RuntimeError, MXNetError):  # not initialised, or deferred until a forward pass
        raise InvalidValueError(f"net must be initialised (and have run once) first: {path} "
                                f"({param.name}) has no data yet", argument="net") from None


class ModelEMA:
    """Exponential moving average of ``net``'s trainable weights.

    Parameters
    ----------
    net : gluon.Block
        An initialised network.
    decay : float
        In (0, 1); timm's default for ImageNet is 0.9998. With few steps per
        epoch, smaller values (0.99-0.999) follow the weights sooner.

    Raises
    ------
    InvalidTypeError
        If ``net`` is not a ``gluon.Block`` or ``decay`` not a number.
    InvalidValueError
        If ``decay`` is not in (0, 1), or a trainable parameter of ``net``
        has no data yet (not initialised, or its shape deferred until a
        forward pass).

    Examples
    --------
    >>> import mxnet as mx
    >>> from mxnet import autograd, gluon
    >>> net = gluon.nn.Dense(2, in_units=3, prefix="example_"); net.initialize()
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> ema = ModelEMA(net, decay=0.9)
    >>> before = net.weight.data().copy()
    >>> with autograd.record():
    ...     loss = net(mx.nd.ones((4, 3))).sum()
    >>> loss.backward(); trainer.step(4); ema.update()
    >>> with ema.average():   # the averaged weights, for evaluation
    ...     averaged = net.weight.data().copy()
    >>> bool((averaged == 0.9 * before + 0.1 * net.weight.data()).min())
    True
    >>> ema.save("ema.params")             # beside a checkpoint, to resume averaging
    >>> again = ModelEMA(net, decay=0.9); again.load("ema.params")
    >>> bool((again.shadow["weight"] == ema.shadow["weight"]).min())
    True
    """

    def __init__(self, net: gluon.Block, decay: float = 0.9998):
        if not isinstance(net, gluon.Block):
            raise InvalidTypeError(f"net must be a gluon.Block, got {type(net).__name__}",
                                   argument="net")
        self.decay = check_real("decay", decay)
        if not 0.0 < self.decay < 1.0:
            raise InvalidValueError(f"decay must be in (0, 1), got {decay!r}", argument="decay")
        by_name = {p.name: p for p in net.collect_params().values()}
        self._params: Dict[str, gluon.Parameter] = {
            path: by_name[name] for name, path in param_paths(net).items()
            if can_train(by_name[name], net)}
        self.shadow: Dict[str, nd.NDArray] = {path: _data(p, path).copy()
                                              for path, p in self._params.items()}
        self._updated: Set[str] = set()

    def update(self) -> None:
        """Call after each ``trainer.step``: average the weights that are trainable now."""
        keep, take = self.decay, 1.0 - self.decay
        for path, param in self._params.items():
            if param.grad_req == "null":
                continue
            shadow = self.shadow[path]
            nd.elemwise_add(shadow * keep, param.data() * take, out=shadow)
            self._updated.add(path)

    @contextmanager
    def average(self) -> Iterator[None]:
        """Inside, the network holds the averaged weights; on leaving, its own again, bit for
        bit. Weights never averaged (frozen throughout) are not touched."""
        saved = {path: self._params[path].data().copy() for path in self._updated}
        try:
            for path in saved:
                self._params[path].set_data(self.shadow[path])
            yield
        finally:
            for path, data in saved.items():
                self._params[path].set_data(data)

    def save(self, fname: str) -> None:
        """Write the averages that moved (by structural path) with ``mx.nd.save``.

        Parameters
        ----------
        fname : str or os.PathLike
            The file to write (replaced if it exists); :meth:`load` reads it.
        """
        nd.save(os.fspath(fname), {path: self.shadow[path] for path in sorted(self._updated)})

    def load(self, fname: str) -> None:
        """Read averages written by :meth:`save` for the same network.

        Checks the whole file before changing any average; the averages read
        count as moved (:meth:`average` swaps them in, :meth:`save` writes them).

        Parameters
        ----------
        fname : str or os.PathLike
            A file written by :meth:`save`.

        Raises
        ------
        MissingFileError
            If ``fname`` does not exist.
        InvalidValueError
            If it is not a file of ``mx.nd.save``'s, holds a path that is not a
            trainable weight of this network, or an array of another shape.
        """
        if not os.path.isfile(fname):
            raise MissingFileError(f"EMA file {fname!r} does not exist", argument="fname")
        try:
            loaded = nd.load(os.fspath(fname))
        except Exception as err:  # MXNetError: not a file of nd.save's
            raise InvalidValueError(f"cannot read EMA weights from {fname!r}: "
                                    f"{last_line(err)}", argument="fname") from None
        unknown = sorted(set(loaded) - set(self._params)) if isinstance(loaded, dict) else None
        if unknown is None or unknown:
            raise InvalidValueError(f"{fname!r} does not hold EMA weights of this network "
                                    f"(unknown: {unknown})", argument="fname")
        for path, data in loaded.items():
            if data.shape != self.shadow[path].shape:
                raise InvalidValueError(f"{fname!r}: {path} has shape {data.shape}, the "
                                        f"network's is {self.shadow[path].shape}",
                                        argument="fname")
        for path, data in loaded.items():
            self.shadow[path][:] = data
            self._updated.add(path)
