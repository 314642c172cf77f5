"""Image folders as loaders, and folders that cannot train a classifier, found before training."""
import numpy as np
import pytest
from image_folder import make_image_folder

from gluon_finetune.recipes.data import image_folders, unreadable_images


def corrupt(path, size=300, seed=0):
    path.write_bytes(np.random.RandomState(seed).bytes(size))
    return path


def test_loaders_classes_and_numpy_sizes(tmp_path):
    data = image_folders(make_image_folder(tmp_path / "images"), np.int64(16), np.int32(4))
    assert data.classes == ["blue", "red"]
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 16, 16) and len(data.val) == 2


@pytest.mark.parametrize("layout", ["flat", "split"])
def test_one_class_folder_is_refused_with_the_folder_and_the_count(tmp_path, layout):
    root = tmp_path / "one"
    folder = root / "train" if layout == "split" else root
    make_image_folder(tmp_path / "made", per_class=(3, 0))
    (folder / "red").mkdir(parents=True)
    for image in (tmp_path / "made" / "train" / "red").iterdir():
        (folder / "red" / image.name).write_bytes(image.read_bytes())
    with pytest.raises(ValueError) as err:
        image_folders(root)
    assert f"{str(folder)!r} has 1 class folder ['red']" in str(err.value)
    assert "at least 2" in str(err.value)


def test_a_training_class_without_images_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "images")
    (root / "train" / "green").mkdir()
    (root / "val" / "green").mkdir()
    with pytest.raises(ValueError, match=r"class folder\(s\) \['green'\] of .* have no images"):
        image_folders(root)


@pytest.mark.parametrize("split, name", [("train", "broken.jpg"), ("val", "empty.png")])
def test_a_corrupt_image_is_named_before_training(tmp_path, split, name):
    root = make_image_folder(tmp_path / "images")
    bad = root / split / "red" / name
    if name.startswith("empty"):
        bad.write_bytes(b"")
    else:
        corrupt(bad)
    with pytest.raises(ValueError) as err:
        image_folders(root)
    message = str(err.value)
    assert "1 of the " in message and f"{bad} (" in message and "cannot be decoded" in message
    assert "\n" not in message
    data = image_folders(root, check_images=False)  # the check can be skipped
    assert data.classes == ["blue", "red"]


def test_many_corrupt_images_are_counted(tmp_path):
    root = make_image_folder(tmp_path / "images")
    for i in range(7):
        corrupt(root / "train" / "blue" / f"bad{i}.jpg", seed=i)
    with pytest.raises(ValueError, match=r"7 of the 19 images .* and 2 more; remove or "
                                         r"replace them"):
        image_folders(root)


def test_unreadable_images_lists_file_and_reason(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=(2, 0))
    bad = corrupt(root / "train" / "red" / "x.jpg")
    from mxnet.gluon.data.vision import ImageFolderDataset
    found = unreadable_images(ImageFolderDataset(str(root / "train")))
    assert [path for path, _ in found] == [str(bad)]
    assert "Decoding failed" in found[0][1]


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folders(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="root must be a folder"):
        image_folders(3)
    with pytest.raises(ValueError, match="image_size must be a positive integer, got True"):
        image_folders(tmp_path, image_size=True)
    with pytest.raises(TypeError, match="check_images must be True or False"):
        image_folders(tmp_path, check_images="yes")
