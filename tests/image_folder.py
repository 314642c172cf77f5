"""A tiny generated image folder (two colour classes) for the CLI and example tests."""
import numpy as np
from PIL import Image


def make_image_folder(root, per_class=(6, 3), size=20, seed=0):
    """root/train/{red,blue}/*.png and root/val/{red,blue}/*.png; returns root."""
    rng = np.random.RandomState(seed)
    for split, count in zip(("train", "val"), per_class):
        if not count:
            continue
        for name, channel in (("red", 0), ("blue", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.randint(0, 80, (size, size, 3)).astype("uint8")
                pixels[..., channel] += 150
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def make_class_folder(root, classes=6, per_class=2, size=12, seed=0):
    """root/c0 .. root/c<classes-1>, each image mostly one colour of its own; returns root."""
    rng = np.random.RandomState(seed)
    for k in range(classes):
        folder = root / f"c{k}"
        folder.mkdir(parents=True)
        colour = rng.randint(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.randint(-20, 20, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(folder / f"{i}.png")
    return root
