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
