"""Image folders (``gluon.data.vision.ImageFolderDataset`` layout) as train/val loaders.

``root/<class>/<image>``, or ``root/train/<class>/...`` with an optional
``root/val/<class>/...``. Images are resized to a square and normalized with
the ImageNet mean and deviation the zoo models were trained with.
"""
from __future__ import annotations

import os
from typing import List, NamedTuple, Optional

from mxnet import gluon
from mxnet.gluon.data.vision import transforms

from .checks import check_positive_int

__all__ = ["ImageFolders", "image_folders"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolders(NamedTuple):
    train: gluon.data.DataLoader
    val: Optional[gluon.data.DataLoader]
    classes: List[str]


def _dataset(folder: str) -> gluon.data.vision.ImageFolderDataset:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder!r} does not exist")
    dataset = gluon.data.vision.ImageFolderDataset(folder)
    if not dataset.synsets:
        raise ValueError(f"image folder {folder!r} has no class subfolders; expected "
                         f"{folder}/<class>/<image>")
    if len(dataset) == 0:
        raise ValueError(f"image folder {folder!r} has class folders {dataset.synsets} but "
                         f"no images (.jpg, .jpeg, .png)")
    return dataset


def image_folders(root: str, image_size: int = 224, batch_size: int = 32,
                  num_workers: int = 0) -> ImageFolders:
    """Loaders for an image folder: shuffled training batches and, if present, validation.

    Parameters
    ----------
    root : str
        ``root/<class>/*.jpg``, or ``root/train/<class>/...`` (+ ``root/val/...``).
    image_size : int
        Images are resized to ``image_size`` x ``image_size``.
    batch_size, num_workers
        As for ``gluon.data.DataLoader``.

    Returns
    -------
    ImageFolders
        ``(train, val, classes)``; ``val`` is None without ``root/val``.
    """
    check_positive_int("image_size", image_size)
    check_positive_int("batch_size", batch_size)
    train_dir = os.path.join(root, "train")
    split = os.path.isdir(train_dir)
    train = _dataset(train_dir if split else root)
    val_dir = os.path.join(root, "val")
    val = _dataset(val_dir) if split and os.path.isdir(val_dir) else None
    if val is not None and val.synsets != train.synsets:
        raise ValueError(f"{val_dir!r} has classes {val.synsets}, but {train_dir!r} has "
                         f"{train.synsets}; they must be the same")
    transform = transforms.Compose([transforms.Resize((image_size, image_size)),
                                    transforms.ToTensor(),
                                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def loader(dataset, shuffle):
        return gluon.data.DataLoader(dataset.transform_first(transform), batch_size=batch_size,
                                     shuffle=shuffle, num_workers=num_workers)
    return ImageFolders(loader(train, True), None if val is None else loader(val, False),
                        list(train.synsets))
