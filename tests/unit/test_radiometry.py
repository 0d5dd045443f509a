"""Normalization of the training data: statistics over every image (streamed), and the
percentile stretch of non-8-bit data for pretrained RGB weights. References are
numpy over all the images at once."""
import numpy as np
import pytest

from maskrcnnlib.config import default_pixel_mean
from maskrcnnlib.dataset.radiometry import band_percentiles, band_statistics, normalization
from maskrcnnlib.model.molding import mold_image


class Images:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def load(self, index):
        return self.images[index], None, None


def sixteen_bit(seed=0, count=60):
    """More images than the 50 the old statistics read, the last ones much brighter."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(200, 1800, (16, 12, 3)).astype(np.uint16) for _ in range(count)]
    images[-1][:] = 6000
    return images


def test_statistics_cover_every_image():
    images = sixteen_bit()
    stats = band_statistics(Images(images), 3)
    every = np.concatenate([i.reshape(-1, 3) for i in images]).astype(np.float64)
    np.testing.assert_allclose(stats.mean, every.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, every.std(axis=0), rtol=1e-9)
    assert stats.maximum == [6000.0] * 3 and stats.whole_numbers and not stats.eight_bit


def test_integer_percentiles_are_exact():
    images = sixteen_bit(1)
    stats = band_statistics(Images(images), 3)
    found = band_percentiles(Images(images), stats, (2.0, 50.0, 98.0))
    every = np.concatenate([i.reshape(-1, 3) for i in images])
    for band in range(3):
        # the smallest value with at least p % of the cells at or below it
        ordered = np.sort(every[:, band])
        for value, percentile in zip(found[band], (2.0, 50.0, 98.0)):
            rank = int(np.ceil(percentile / 100 * len(ordered))) - 1
            assert value == ordered[max(rank, 0)]


def test_float_percentiles_within_two_bins():
    rng = np.random.default_rng(2)
    images = [rng.uniform(0.0, 0.4, (20, 20, 2)) for _ in range(10)]
    stats = band_statistics(Images(images), 2)
    assert not stats.whole_numbers
    found = band_percentiles(Images(images), stats)
    every = np.concatenate([i.reshape(-1, 2) for i in images])
    bin_width = (np.array(stats.maximum) - np.array(stats.minimum)) / 4096
    for band in range(2):
        expected = np.percentile(every[:, band], [2, 98])
        # a bin, and a neighbouring order statistic (percentile definitions differ)
        assert np.all(np.abs(np.array(found[band]) - expected) <= 2 * bin_width[band])


def test_pretrained_16_bit_data_is_stretched_to_the_8_bit_range():
    """The 2nd percentile of each band reaches the network as 0 - mean pixel, the 98th
    as 255 - mean pixel, through the ordinary pixel_mean / pixel_std."""
    images = sixteen_bit(3)
    mean, std, facts = normalization(Images(images), 3, pretrained_rgb=True,
                                     rgb_mean=default_pixel_mean(3))
    assert facts["method"].startswith("percentile stretch")
    every = np.concatenate([i.reshape(-1, 3) for i in images])
    low, high = np.percentile(every, 2, axis=0), np.percentile(every, 98, axis=0)
    probe = np.stack([low, high])[None]  # [1, 2, 3]: the two percentiles, per band
    molded = mold_image(probe, mean, std)[0]
    coco = np.array(default_pixel_mean(3))
    np.testing.assert_allclose(molded[0], 0 - coco, atol=255 / (high - low).min())
    np.testing.assert_allclose(molded[1], 255 - coco, atol=255 / (high - low).min())


def test_pretrained_8_bit_data_and_scratch_training():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (8, 8, 3)).astype(np.uint8) for _ in range(5)]
    mean, std, facts = normalization(Images(images), 3, True, default_pixel_mean(3))
    assert (mean, std) == (default_pixel_mean(3), [1.0] * 3)
    assert facts["method"] == "8-bit values minus the mean pixel"
    mean, std, facts = normalization(Images(sixteen_bit()), 3, False, default_pixel_mean(3))
    every = np.concatenate([i.reshape(-1, 3) for i in sixteen_bit()]).astype(np.float64)
    np.testing.assert_allclose(mean, every.mean(axis=0))
    assert facts["method"] == "mean and standard deviation"


def test_a_band_count_that_changes_is_named():
    from maskrcnnlib.errors import DatasetError

    images = [np.zeros((4, 4, 3)), np.zeros((4, 4, 2))]
    with pytest.raises(DatasetError, match="2 bands, the first one 3"):
        band_statistics(Images(images), 3)
