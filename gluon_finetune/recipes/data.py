"""Image folders (``gluon.data.vision.ImageFolderDataset`` layout) as train/val loaders.

``root/<class>/<image>``, or ``root/train/<class>/...`` with an optional
``root/val/<class>/...``. Images are resized to a square and normalized with
the ImageNet mean and deviation the zoo models were trained with.

Folders are checked before anything trains: at least two classes, images in
every training class, and every image decodable by the loader's own decoder
(a corrupt file is named, not found mid-epoch).
"""
from __future__ import annotations

import os
from collections import Counter
from typing import List, NamedTuple, Optional, Tuple

import mxnet as mx
from mxnet import gluon
from mxnet.gluon.data.vision import transforms

from ..checks import (
    InvalidTypeError,
    InvalidValueError,
    MissingFileError,
    check_bool,
    check_int,
    check_positive_int,
    last_line,
)
from .augmentation import IMAGENET_MEAN, IMAGENET_STD, EpochSampler, Preprocessing, seed_epoch

__all__ = ["ImageFolders", "image_folders", "unreadable_images", "EpochData", "epoch_data"]

_SHOWN = 5  # unreadable files named in a message; the rest are counted


class ImageFolders(NamedTuple):
    train: gluon.data.DataLoader
    val: Optional[gluon.data.DataLoader]
    classes: List[str]


def _dataset(folder: str) -> gluon.data.vision.ImageFolderDataset:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InvalidValueError(f"image folder {folder!r} is a file, not a folder; give the "
                                f"folder that holds <class>/<image>", argument="root")
    if not os.path.isdir(folder):
        raise MissingFileError(f"image folder {folder!r} does not exist", argument="root")
    dataset = gluon.data.vision.ImageFolderDataset(folder)
    if not dataset.synsets:
        raise InvalidValueError(f"image folder {folder!r} has no class subfolders; expected "
                                f"{folder}/<class>/<image>", argument="root")
    if len(dataset) == 0:
        raise InvalidValueError(f"image folder {folder!r} has class folders {dataset.synsets} "
                                f"but no images (.jpg, .jpeg, .png)", argument="root")
    return dataset


def _check_classes(dataset, folder: str) -> None:
    """A classifier needs two classes, and a training class needs images."""
    count = len(dataset.synsets)
    if count < 2:
        raise InvalidValueError(f"image folder {folder!r} has {count} class folder "
                                f"{dataset.synsets}: a classifier needs at least 2 "
                                f"({folder}/<class>/<image>, one folder per class)",
                                argument="root")
    images = Counter(label for _, label in dataset.items)
    empty = [name for i, name in enumerate(dataset.synsets) if not images[i]]
    if empty:
        raise InvalidValueError(f"class folder(s) {empty} of {folder!r} have no images "
                                f"(.jpg, .jpeg, .png): every class needs training images",
                                argument="root")


def unreadable_images(dataset) -> List[Tuple[str, str]]:
    """The images of a dataset that the loader cannot decode.

    Parameters
    ----------
    dataset : gluon.data.vision.ImageFolderDataset
        Its ``items`` are ``(file, label)`` pairs; each file is decoded once
        with MXNet's own decoder, as training would call it.

    Returns
    -------
    list of (str, str)
        ``(file, reason)`` for each file that fails, in the dataset's order.
    """
    bad = []
    for path, _ in dataset.items:
        try:
            mx.image.imread(path, 1).wait_to_read()
        except mx.base.MXNetError as err:
            bad.append((path, last_line(err)))
    return bad


def _check_images(dataset, folder: str) -> None:
    bad = unreadable_images(dataset)
    if not bad:
        return
    shown = ", ".join(f"{path} ({reason})" for path, reason in bad[:_SHOWN])
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    raise InvalidValueError(f"{len(bad)} of the {len(dataset)} images in {folder!r} cannot be "
                            f"decoded: {shown}{more}; remove or replace them",
                            argument="root")


def _folders(root: str, check_images: bool):
    train_dir = os.path.join(root, "train")
    split = os.path.isdir(train_dir)
    train_dir = train_dir if split else root
    train = _dataset(train_dir)
    _check_classes(train, train_dir)
    val_dir = os.path.join(root, "val")
    val = _dataset(val_dir) if split and os.path.isdir(val_dir) else None
    if val is not None and val.synsets != train.synsets:
        raise InvalidValueError(f"{val_dir!r} has classes {val.synsets}, but {train_dir!r} "
                                f"has {train.synsets}; they must be the same", argument="root")
    if check_images:
        for dataset, folder in ((train, train_dir), (val, val_dir)):
            if dataset is not None:
                _check_images(dataset, folder)
    return train, val


def image_folders(root: str, image_size: int = 224, batch_size: int = 32,
                  num_workers: int = 0, check_images: bool = True) -> ImageFolders:
    """Loaders for an image folder: shuffled training batches and, if present, validation.

    Parameters
    ----------
    root : str
        ``root/<class>/*.jpg``, or ``root/train/<class>/...`` (+ ``root/val/...``);
        at least two class folders, each with training images.
    image_size : int
        Images are resized to ``image_size`` x ``image_size``.
    batch_size : int
        Images per batch.
    num_workers : int
        Worker processes, as for ``gluon.data.DataLoader``.
    check_images : bool
        Decode every image once now (about 2 ms an image) so that a corrupt
        file is an error naming it, before any training.

    Returns
    -------
    ImageFolders
        ``(train, val, classes)``; ``val`` is None without ``root/val``.
        Images are ImageNet-normalized.

    Raises
    ------
    MissingFileError
        ``root`` does not exist.
    InvalidValueError
        ``root`` is a file; fewer than two classes; a training class without
        images; train and val with different classes; corrupt images (the first
        five named, then a count); a size or count out of range.
    InvalidTypeError
        ``root`` is not a path.

    Examples
    --------
    ``data_dir`` holds ``train/{blue,red}/*.png`` and ``val/{blue,red}/*.png``:

    >>> from gluon_finetune import image_folders
    >>> data = image_folders(data_dir, image_size=32, batch_size=4)
    >>> data.classes
    ['blue', 'red']
    >>> x, y = next(iter(data.train))
    >>> x.shape, data.val is not None
    ((4, 3, 32, 32), True)
    """
    if not isinstance(root, (str, os.PathLike)):
        raise InvalidTypeError(f"root must be a folder, got {root!r}", argument="root")
    image_size = check_positive_int("image_size", image_size)
    batch_size = check_positive_int("batch_size", batch_size)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    check_bool("check_images", check_images)
    train, val = _folders(os.fspath(root), check_images)
    transform = transforms.Compose([transforms.Resize((image_size, image_size)),
                                    transforms.ToTensor(),
                                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def loader(dataset, shuffle):
        return gluon.data.DataLoader(dataset.transform_first(transform), batch_size=batch_size,
                                     shuffle=shuffle, num_workers=num_workers)
    return ImageFolders(loader(train, True), None if val is None else loader(val, False),
                        list(train.synsets))


def _items(dataset, folder: str) -> List[Tuple[str, int, int]]:
    """(path relative to ``folder``, label, size in bytes) of every image."""
    return [(os.path.relpath(path, folder).replace(os.sep, "/"), int(label),
             os.path.getsize(path)) for path, label in dataset.items]


class EpochData:
    """Loaders of an image folder whose order and augmentation depend on (seed, epoch) only.

    Call :meth:`start_epoch` before each epoch's first batch (``runs`` does):
    it seeds the generators and the order (``augmentation.seed_epoch``,
    ``EpochSampler``), so that epoch ``e`` draws the same batches in a run
    resumed at ``e`` as in one that was never stopped. Images are decoded and
    transformed in the training process (no worker processes, whose random
    state could not be seeded per epoch).

    Attributes
    ----------
    train, val : DataLoader
        Training batches (augmented per ``augment``; the last batch may be
        smaller) and validation batches (``None`` without ``root/val``).
    classes : list of str
    preprocessing : Preprocessing
    augment : str
    seed : int
    items : dict
        ``"train"``/``"val"``: ``(relative path, label, bytes)`` per image, for
        checking that a resumed run reads the same data.
    """

    def __init__(self, train, val, classes, preprocessing, augment, seed, batch_size, folders):
        self.classes, self.preprocessing = list(classes), preprocessing
        self.augment, self.seed, self.root = augment, seed, folders[0]
        self._sampler = EpochSampler(len(train), seed)
        self.train = gluon.data.DataLoader(
            train.transform_first(preprocessing.train_transform(augment)),
            batch_size=batch_size, sampler=self._sampler, last_batch="keep")
        self.val = None if val is None else gluon.data.DataLoader(
            val.transform_first(preprocessing.eval_transform()), batch_size=batch_size,
            shuffle=False)
        self.items = {"train": _items(train, folders[1])}
        if val is not None:
            self.items["val"] = _items(val, folders[2])

    def start_epoch(self, epoch: int) -> None:
        """Seed the order and the random transforms of ``epoch`` (0-based)."""
        self._sampler.set_epoch(epoch)
        seed_epoch(self.seed, epoch)

    def shard(self, rank: int, workers: int) -> None:
        """Train on worker ``rank``'s share of each epoch's order (one of ``workers``, all
        with as many batches); ``runs.train_run`` does this under Horovod. Validation is
        not sharded."""
        self._sampler.shard(rank, workers)

    @property
    def workers(self) -> int:
        """How many workers share the training images (1: not sharded)."""
        return self._sampler.workers


def epoch_data(root: str, image_size: int = 224, batch_size: int = 32, augment: str = "none",
               seed: int = 0, check_images: bool = True,
               preprocessing: Optional[Preprocessing] = None) -> EpochData:
    """Seeded loaders for an image folder (the layout of :func:`image_folders`).

    The order and the augmentation of each epoch depend on ``(seed, epoch)``
    only (call ``start_epoch(epoch)`` before its first batch), so a resumed
    run draws the same batches as one never stopped. Images are decoded in
    this process (no workers).

    Parameters
    ----------
    root : str
        ``root/<class>/<image>``, or ``root/train/...`` with ``root/val/...``
        (the same classes).
    image_size : int
        The network's input size; validation resizes the shorter side to
        ``floor(image_size / 0.875)`` and crops the centre (``Preprocessing``).
    batch_size : int
    augment : {"none", "light", "standard"}
        The training preset (``Preprocessing.train_transform``).
    seed : int
        With the epoch, decides the order and the augmentation of each epoch.
    check_images : bool
        Decode every image once first: a corrupt file is an error naming it.
    preprocessing : Preprocessing, optional
        Instead of the convention for ``image_size`` (a resumed run's own).

    Returns
    -------
    EpochData
        ``train`` and ``val`` loaders (``val`` None without ``root/val``),
        ``classes``, ``preprocessing``, ``augment``, ``seed``, ``items`` (each
        image's relative path, label and size) and ``start_epoch``.

    Raises
    ------
    InvalidTypeError
        If ``root`` is not a folder name or ``check_images`` not a bool.
    MissingFileError
        If ``root`` (or ``root/train``) does not exist.
    InvalidValueError
        If ``image_size``, ``batch_size`` or ``seed`` is out of range,
        ``augment`` is not a preset, ``root`` is a file, has fewer than two
        class folders, a class without images, validation classes unlike the
        training ones, or (with ``check_images``) images that cannot be decoded.

    Examples
    --------
    >>> data = epoch_data(data_dir, image_size=16, batch_size=4, augment="light", seed=0)
    >>> data.classes, len(data.items["train"]), len(data.items["val"])
    (['blue', 'red'], 12, 6)
    >>> data.start_epoch(0)
    >>> x, y = next(iter(data.train))
    >>> x.shape, y.shape
    ((4, 3, 16, 16), (4,))
    >>> data.start_epoch(0)                 # epoch 0 again: the same batch
    >>> bool((next(iter(data.train))[0] == x).min())
    True
    """
    if not isinstance(root, (str, os.PathLike)):
        raise InvalidTypeError(f"root must be a folder, got {root!r}", argument="root")
    preprocessing = preprocessing or Preprocessing.for_size(image_size)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_int("seed", seed, minimum=0)
    check_bool("check_images", check_images)
    root = os.fspath(root)
    train, val = _folders(root, check_images)
    split = os.path.isdir(os.path.join(root, "train"))
    folders = (root, os.path.join(root, "train") if split else root, os.path.join(root, "val"))
    return EpochData(train, val, train.synsets, preprocessing, augment, seed, batch_size, folders)
