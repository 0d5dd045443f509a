"""augment_sample keeps masks on their pixels; augmented_iterator's passes are seeded."""
import numpy as np
import pytest

from maskrcnnlib.config import Config
from maskrcnnlib.dataset.augment import augment_sample, augmented_iterator
from maskrcnnlib.dataset.directory import ArrayDataset


def symmetries(array):
    """The 8 symmetries of the square on axes (0, 1), written independently of the code."""
    out = []
    for a in (array, np.swapaxes(array, 0, 1)):
        out += [a, a[::-1], a[:, ::-1], a[::-1, ::-1]]
    return out


def encoded_sample(height, width):
    """Image whose band i is non-zero exactly on mask i; band 2 numbers the pixels."""
    masks = np.zeros((height, width, 2), bool)
    masks[0:2, 0:3, 0] = True  # a corner object
    masks[1:height, width - 2:width, 1] = True
    image = np.zeros((height, width, 3), np.uint16)
    image[:, :, :2] = masks * np.arange(1, height * width + 1).reshape(height, width, 1)
    image[:, :, 2] = np.arange(height * width).reshape(height, width)
    return image, masks


@pytest.mark.parametrize("shape", [(5, 8), (8, 5)])
def test_masks_stay_on_their_pixels_and_shapes_swap(shape):
    image, masks = encoded_sample(*shape)
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(60):
        new_image, new_masks = augment_sample(image, masks, rng)
        assert new_image.dtype == image.dtype and new_masks.dtype == bool
        np.testing.assert_array_equal(new_image[:, :, :2] != 0, new_masks)
        matches = [i for i, s in enumerate(symmetries(image)) if
                   s.shape == new_image.shape and np.array_equal(s, new_image)]
        assert len(matches) == 1  # a rigid symmetry, not a resampling
        assert np.array_equal(symmetries(masks)[matches[0]], new_masks)
        assert new_image.shape[:2] in (shape, shape[::-1])
        seen.add(matches[0])
    assert seen == set(range(8))  # every symmetry occurs, both shapes among them


def test_same_seed_same_output():
    image, masks = encoded_sample(6, 4)
    draws = [[augment_sample(image, masks, rng)[0] for _ in range(10)]
             for rng in (np.random.default_rng(3), np.random.default_rng(3))]
    assert all(np.array_equal(a, b) for a, b in zip(*draws))


def small_setup(count=5):
    config = Config(num_classes=3, class_names=["a", "b"], bands=3, image_min_dim=0,
                    image_max_dim=64, max_gt_instances=2).validate()
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        image, masks = encoded_sample(20 + i, 30)
        samples.append((image + rng.integers(0, 3, image.shape).astype(np.uint16), masks,
                        np.array([1, 2], np.int32)))
    return config, ArrayDataset(samples)


def image_ids(stream):
    return [int(sample["image_meta"][0]) for sample in stream()]


def test_passes_are_permutations_and_repeat_with_the_seed():
    config, dataset = small_setup()
    first, second = augmented_iterator(dataset, config, seed=11), \
        augmented_iterator(dataset, config, seed=11)
    passes = [image_ids(first) for _ in range(3)]
    assert all(sorted(p) == list(range(5)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # a new permutation per pass
    for expected in passes:
        again = list(second())
        assert [int(s["image_meta"][0]) for s in again] == expected
    a, b = next(augmented_iterator(dataset, config, 5)()), next(augmented_iterator(
        dataset, config, 5)())
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_without_shuffle_and_augment_it_is_prepare_sample_in_order():
    from maskrcnnlib.dataset.pipeline import prepare_sample

    config, dataset = small_setup(3)
    stream = augmented_iterator(dataset, config, seed=1, augment=False, shuffle=False)
    for index, sample in enumerate(stream()):
        expected = prepare_sample(*dataset.load(index), config, image_id=index)
        assert sample.keys() == expected.keys()
        for key in ("image", "image_meta", "gt_boxes", "gt_class_ids", "gt_masks"):
            np.testing.assert_array_equal(sample[key], expected[key])


def test_feeds_training_dataset():
    from maskrcnnlib.dataset.pipeline import training_dataset

    config, dataset = small_setup(2)
    batches = training_dataset(augmented_iterator(dataset, config, seed=2), config,
                               batch_size=2, seed=2)
    batch = next(iter(batches))
    assert tuple(batch["image"].shape) == (2, 64, 64, 3)
    assert tuple(batch["gt_masks"].shape[:3]) == (2, 64, 64)


def test_radiometric_change_follows_its_formula():
    """Reference: the documented formula with the documented draws, in numpy float64."""
    from maskrcnnlib.dataset.augment import BAND_GAIN, BRIGHTNESS, CONTRAST, \
        radiometric_change

    image = np.random.default_rng(4).uniform(100, 3000, (9, 7, 4)).astype(np.float32)
    changed = radiometric_change(image, np.random.default_rng(21))
    rng = np.random.default_rng(21)
    t, c = rng.uniform(-BRIGHTNESS, BRIGHTNESS), rng.uniform(*CONTRAST)
    gain = rng.uniform(*BAND_GAIN, size=4)
    values = image.astype(np.float64)
    mean, spread = values.mean((0, 1)), values.std((0, 1))
    expected = gain * (mean + c * (values - mean) + t * spread)
    assert changed.dtype == np.float32 and changed.shape == image.shape
    np.testing.assert_allclose(changed, expected, rtol=1e-5)
    # small ranges: no band moves by more than a few tenths of its spread plus 5 %
    assert np.all(np.abs(changed - values) <= 0.06 * np.abs(values) + 0.3 * spread + 1e-3)
    assert not np.allclose(changed, values)


def test_radiometric_change_stays_in_the_range_of_integer_images():
    from maskrcnnlib.dataset.augment import radiometric_change

    image = np.zeros((6, 6, 3), np.uint8)
    image[:3] = 255  # half white: any gain above 1 or brightening would pass 255
    for seed in range(20):
        changed = radiometric_change(image, np.random.default_rng(seed))
        assert changed.min() >= 0 and changed.max() <= 255
    single = radiometric_change(np.full((4, 4), 10, np.uint16), np.random.default_rng(0))
    assert single.shape == (4, 4)  # a one-band image without a band axis


def test_radiometric_augmentation_leaves_masks_and_boxes_unchanged():
    from maskrcnnlib.dataset.pipeline import prepare_sample

    config, dataset = small_setup(3)
    stream = augmented_iterator(dataset, config, seed=1, augment=["radiometric"],
                                shuffle=False)
    changed_images = 0
    for index, sample in enumerate(stream()):
        expected = prepare_sample(*dataset.load(index), config, image_id=index)
        for key in ("gt_boxes", "gt_class_ids", "gt_masks"):
            np.testing.assert_array_equal(sample[key], expected[key])
        changed_images += not np.array_equal(sample["image"], expected["image"])
    assert changed_images == 3


def test_augment_names_are_checked():
    from maskrcnnlib.dataset.augment import augment_kinds

    assert augment_kinds(True) == {"flip_rotate"} and augment_kinds(False) == set()
    assert augment_kinds(["flip_rotate", "radiometric"]) == {"flip_rotate", "radiometric"}
    with pytest.raises(ValueError, match="colour"):
        augment_kinds(["colour"])
