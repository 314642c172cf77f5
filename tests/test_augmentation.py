"""Preprocessing, augmentation presets and the (seed, epoch) randomness of a run's loaders."""
import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from image_folder import make_image_folder
from mxnet.gluon.data.vision import transforms

from gluon_finetune.recipes.augmentation import EpochSampler, Preprocessing
from gluon_finetune.recipes.data import epoch_data


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("aug") / "images")


def epoch_batches(data, epoch):
    data.start_epoch(epoch)
    return [(x.asnumpy(), y.asnumpy()) for x, y in data.train]


@pytest.mark.parametrize("augment", ["light", "standard"])
def test_an_epoch_is_a_function_of_the_seed_and_the_epoch(images, augment):
    data = epoch_data(images, image_size=16, batch_size=4, augment=augment, seed=1)
    first = epoch_batches(data, 1)
    epoch_batches(data, 0)
    mx.random.uniform(shape=10)  # anything drawn in between does not matter
    again = epoch_batches(data, 1)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(first, again))
    other = epoch_batches(data, 2)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    reseeded = epoch_batches(epoch_data(images, image_size=16, batch_size=4, augment=augment,
                                        seed=2), 1)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, reseeded))


def test_without_augmentation_training_sees_the_validation_transform(images):
    data = epoch_data(images, image_size=16, batch_size=12, augment="none", seed=0)
    data.start_epoch(0)
    x, y = next(iter(data.train))
    order = list(data._sampler)
    dataset = mx.gluon.data.vision.ImageFolderDataset(str(images / "train"))
    expected = [data.preprocessing.eval_transform()(dataset[i][0]).asnumpy() for i in order]
    assert np.array_equal(x.asnumpy(), np.stack(expected))
    assert sorted(order) == list(range(12)) and order != list(range(12))


def test_validation_resizes_the_shorter_side_and_crops_the_centre():
    p = Preprocessing.for_size(8)
    assert (p.image_size, p.resize) == (8, 9)
    image = mx.nd.array(np.random.RandomState(0).randint(0, 255, (18, 36, 3)), dtype="uint8")
    resized = transforms.Resize((18, 9))(image)  # shorter side 18 -> 9: 9 x 18
    crop = resized[0:8, 5:13].astype("float32") / 255  # rows 0.5 -> 0, columns (18 - 8) / 2
    expected = ((crop - mx.nd.array(p.mean)) / mx.nd.array(p.std)).transpose((2, 0, 1))
    assert np.allclose(p.eval_transform()(image).asnumpy(), expected.asnumpy(), atol=1e-6)


def test_preprocessing_round_trip_and_errors():
    p = Preprocessing.for_size(224)
    assert (p.resize, Preprocessing.from_dict(p.to_dict())) == (256, p)
    with pytest.raises(ValueError, match="augment must be one of none, light, standard"):
        p.train_transform("strong")
    with pytest.raises(ValueError, match="resize must be an int >= 224"):
        Preprocessing(224, 200)
    with pytest.raises(TypeError, match="mean must be three finite numbers"):
        Preprocessing(8, 8, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="std must be > 0"):
        Preprocessing(8, 8, std=(1, 0, 1))
    with pytest.raises(ValueError, match="preprocessing must be a mapping with image_size"):
        Preprocessing.from_dict({"size": 3})


def test_the_sampler_is_a_permutation_per_epoch():
    sampler = EpochSampler(10, seed=3)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] == orders[2] != orders[1] and sorted(orders[1]) == list(range(10))
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        sampler.set_epoch(-1)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(0, 40), workers=st.integers(1, 5), seed=st.integers(0, 9),
       epoch=st.integers(0, 3))
def test_shards_cover_the_epoch_with_equal_shares(length, workers, seed, epoch):
    """Every worker gets as many indices (so takes as many steps); together they hold every
    index of the epoch's order, dealt in turn, and only the padding repeats any."""
    whole = EpochSampler(length, seed)
    whole.set_epoch(epoch)
    order = list(whole)
    shards = []
    for rank in range(workers):
        sampler = EpochSampler(length, seed)
        sampler.shard(rank, workers)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
    share = -(-length // workers)
    assert all(len(s) == share for s in shards)
    dealt = [shards[k % workers][k // workers] for k in range(share * workers)]
    assert dealt == [order[k % length] for k in range(len(dealt))]  # wraps round to pad


def test_a_shard_out_of_range_is_refused():
    sampler = EpochSampler(5)
    with pytest.raises(ValueError, match="rank"):
        sampler.shard(2, 2)
    with pytest.raises(ValueError, match="workers"):
        sampler.shard(0, 0)
    assert (sampler.rank, sampler.workers) == (0, 1)
