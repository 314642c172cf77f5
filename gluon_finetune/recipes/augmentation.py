"""Preprocessing and augmentation presets, and randomness that is a function of (seed, epoch).

Validation and prediction resize the shorter side to ``resize`` and take the
centre ``image_size`` square (``resize = floor(image_size / 0.875)``, timm's
and GluonCV's ImageNet convention: 256 for 224). Training adds one of three
presets, built from ``gluon.data.vision.transforms``:

========  ===========================================================================
none      the validation transform
light     RandomResizedCrop(scale 0.35-1), RandomFlipLeftRight, RandomColorJitter(0.1)
standard  RandomResizedCrop(scale 0.08-1), RandomFlipLeftRight, RandomColorJitter(0.4),
          RandomLighting(0.1) (GluonCV's ImageNet training)
========  ===========================================================================

MXNet cannot save its random state, so a resumed run can only repeat an epoch
exactly if the epoch's randomness is a function of (seed, epoch):
:func:`seed_epoch` seeds Python's, NumPy's and MXNet's generators from both
(augmentation draws from Python's ``random`` and MXNet's operators, Dropout
from MXNet), and :class:`EpochSampler` orders the images from both.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon.data.vision import transforms

from ..checks import InvalidTypeError, InvalidValueError, check_int, check_positive_int, is_real

__all__ = ["AUGMENTATIONS", "IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing", "EpochSampler",
           "seed_epoch"]

AUGMENTATIONS = ("none", "light", "standard")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875
# preset -> (RandomResizedCrop's scale range, colour jitter strength, lighting (PCA) noise)
_PRESETS = {"light": ((0.35, 1.0), 0.1, 0.0), "standard": ((0.08, 1.0), 0.4, 0.1)}


def check_augment(augment: Any) -> str:
    """``augment`` if it names a preset, else InvalidValueError."""
    if not isinstance(augment, str) or augment not in AUGMENTATIONS:
        raise InvalidValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got "
                                f"{augment!r}", argument="augment")
    return augment


def _triple(name: str, value: Any) -> Tuple[float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and
            all(is_real(v) and math.isfinite(v) for v in value)):
        raise InvalidTypeError(f"{name} must be three finite numbers (R, G, B), got {value!r}",
                               argument=name)
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input: a ``(3, image_size, image_size)`` float
    array, RGB, scaled to [0, 1], then normalised with ``mean`` and ``std``.

    A frozen record (a run folder keeps it in ``run.json``): validation and
    prediction resize the shorter side to ``resize`` and crop the centre
    ``image_size`` square (:meth:`eval_transform`); training adds a preset's
    random steps (:meth:`train_transform`).

    Parameters
    ----------
    image_size : int
        The side of the square input, >= 1.
    resize : int
        The shorter side before the centre crop, >= ``image_size``
        (:meth:`for_size` gives ImageNet's ``floor(image_size / 0.875)``).
    mean, std : three floats
        Per channel (R, G, B), on the [0, 1] scale; ImageNet's by default.

    Raises
    ------
    InvalidTypeError
        If ``resize`` is not an int, or ``mean`` or ``std`` is not three
        finite numbers.
    InvalidValueError
        If ``image_size`` is not a positive int, ``resize`` < ``image_size``
        or a ``std`` is not > 0.

    Examples
    --------
    >>> p = Preprocessing.for_size(224)
    >>> p.resize, p.image_size
    (256, 224)
    >>> Preprocessing.from_dict(p.to_dict()) == p
    True
    >>> image = mx.nd.array(np.random.randint(0, 256, (300, 400, 3)), dtype="uint8")
    >>> p.eval_transform()(image).shape
    (3, 224, 224)
    >>> Preprocessing.for_size(32).train_transform("light")(image).shape
    (3, 32, 32)
    """

    image_size: int
    resize: int
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_positive_int("image_size", self.image_size))
        object.__setattr__(self, "resize", check_int("resize", self.resize,
                                                     minimum=self.image_size))
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        std = _triple("std", self.std)
        if min(std) <= 0:
            raise InvalidValueError(f"std must be > 0, got {std}", argument="std")
        object.__setattr__(self, "std", std)

    @classmethod
    def for_size(cls, image_size: int) -> Preprocessing:
        """The ImageNet convention for ``image_size``: resize to ``image_size / 0.875``."""
        image_size = check_positive_int("image_size", image_size)
        return cls(image_size, max(image_size, math.floor(image_size / CROP_FRACTION)))

    def to_dict(self) -> Dict[str, Any]:
        """Plain data for JSON: the fields, plus the layout, channel order and scaling as
        words for readers of the file (``from_dict`` ignores those)."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std),
                "layout": "NCHW", "channels": "RGB", "scale": "1/255, then (x - mean) / std"}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Preprocessing:
        """The inverse of ``to_dict`` (a run record's ``preprocessing``)."""
        if not isinstance(data, dict) or not {"image_size", "resize"} <= set(data):
            raise InvalidValueError(f"preprocessing must be a mapping with image_size and "
                                    f"resize, got {data!r}", argument="preprocessing")
        return cls(data["image_size"], data["resize"], tuple(data.get("mean", IMAGENET_MEAN)),
                   tuple(data.get("std", IMAGENET_STD)))

    def _tensor(self):
        return [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]

    def eval_transform(self) -> transforms.Compose:
        """Validation and prediction: resize the shorter side, centre crop."""
        return transforms.Compose([transforms.Resize(self.resize, keep_ratio=True),
                                   transforms.CenterCrop(self.image_size), *self._tensor()])

    def train_transform(self, augment: str = "none") -> transforms.Compose:
        """Training: the validation transform (``"none"``) or a preset's random one.

        Parameters
        ----------
        augment : {"none", "light", "standard"}
            ``"light"``: random resized crop (scale 0.35-1), flip, colour jitter 0.1;
            ``"standard"``: crop scale 0.08-1, flip, jitter 0.4, lighting noise 0.1.
            Another value raises InvalidValueError.
        """
        if check_augment(augment) == "none":
            return self.eval_transform()
        scale, jitter, lighting = _PRESETS[augment]
        steps = [transforms.RandomResizedCrop(self.image_size, scale=scale),
                 transforms.RandomFlipLeftRight(),
                 transforms.RandomColorJitter(brightness=jitter, contrast=jitter,
                                              saturation=jitter)]
        if lighting:
            steps.append(transforms.RandomLighting(lighting))
        return transforms.Compose(steps + self._tensor())


def _states(seed: int, epoch: int, count: int) -> np.ndarray:
    seed = check_int("seed", seed, minimum=0)
    epoch = check_int("epoch", epoch, minimum=0)
    return np.random.SeedSequence([seed, epoch]).generate_state(count)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed Python's, NumPy's and MXNet's generators as a function of ``(seed, epoch)``.

    Call at the start of every epoch (before its first batch is drawn), in a
    first run and in a resumed one alike: each epoch then draws the same
    random numbers however the run got there. (Seeding MXNet costs a few
    milliseconds, so it is done once an epoch, not once an image.)

    Examples
    --------
    >>> seed_epoch(0, 3); a = random.random()
    >>> seed_epoch(0, 3); a == random.random()
    True
    """
    python, numpy, mxnet = (int(s) for s in _states(seed, epoch, 3))
    random.seed(python)
    np.random.seed(numpy)
    mx.random.seed(mxnet)


class EpochSampler(gluon.data.Sampler):
    """A shuffled order of ``range(length)`` that is a function of ``(seed, epoch)``.

    With :meth:`shard`, one worker's part of that order: every worker gets the
    same number of indices (the order wraps around to fill the last ones, as
    PyTorch's ``DistributedSampler`` does), so every worker takes as many steps.

    Examples
    --------
    >>> sampler = EpochSampler(5, seed=1)
    >>> sampler.set_epoch(2); first = list(sampler)
    >>> sampler.set_epoch(0); sampler.set_epoch(2); list(sampler) == first
    True
    >>> sampler.shard(1, 2); len(sampler), list(sampler) == first[1::2] + first[:1]
    (3, True)
    """

    def __init__(self, length: int, seed: int = 0):
        self._length = check_int("length", length, minimum=0)
        self._seed = check_int("seed", seed, minimum=0)
        self.epoch = 0
        self.rank, self.workers = 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int("epoch", epoch, minimum=0)

    def shard(self, rank: int, workers: int) -> None:
        """From now on, worker ``rank``'s part (of ``workers``) of each epoch's order."""
        workers = check_int("workers", workers, minimum=1)
        self.rank = check_int("rank", rank, minimum=0, maximum=workers - 1)
        self.workers = workers

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng(_states(self._seed, self.epoch, 4)).permutation(
            self._length)
        if self.workers > 1:
            order = np.resize(order, len(self) * self.workers)[self.rank::self.workers]
        return iter(order.tolist())

    def __len__(self) -> int:
        return -(-self._length // self.workers)
