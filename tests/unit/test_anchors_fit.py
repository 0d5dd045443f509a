"""fit_anchor_scales: hand-worked cases of the documented rule."""
import numpy as np
import pytest

from maskrcnnlib.config import Config
from maskrcnnlib.dataset.anchors_fit import fit_anchor_scales, object_sizes
from maskrcnnlib.dataset.directory import ArrayDataset
from maskrcnnlib.errors import DatasetError


def config(**fields):
    return Config(num_classes=2, bands=1, **fields)


def test_small_objects_get_small_anchors():
    scales = fit_anchor_scales([14, 15, 16, 17, 18, 20, 22], config())
    assert scales[0] in (8, 16) and scales == [scales[0] * 2 ** i for i in range(5)]
    assert fit_anchor_scales([16] * 10, config()) == [16, 32, 64, 128, 256]
    assert fit_anchor_scales([11] * 10, config()) == [8, 16, 32, 64, 128]  # log2(11) < 3.5
    assert all(type(s) is int for s in scales)


def test_larger_objects_get_larger_scales_monotonically():
    previous = [0] * 5
    for size in (2, 8, 16, 30, 60, 120, 250, 500):
        scales = fit_anchor_scales([size] * 5, config(image_max_dim=4096))
        assert all(a >= b for a, b in zip(scales, previous))
        assert scales == sorted(scales)
        previous = scales
    assert fit_anchor_scales([250] * 5, config(image_max_dim=4096))[0] == 256


def test_limits():
    assert fit_anchor_scales([3, 4, 5], config())[0] == 8  # never below 8
    # largest level <= image_max_dim: 1280 allows 1024 at most, so 64 * 16
    assert fit_anchor_scales([200] * 5, config(image_max_dim=1280)) == [64, 128, 256, 512, 1024]
    assert fit_anchor_scales([200] * 5, config(image_max_dim=256)) == [16, 32, 64, 128, 256]
    # too small for 8 * 16: the top levels repeat the largest power of two that fits
    assert fit_anchor_scales([10] * 5, config(image_min_dim=64, image_max_dim=64)) == [
        8, 16, 32, 64, 64]
    with pytest.raises(DatasetError, match="No objects"):
        fit_anchor_scales([], config())


def test_a_wide_spread_is_centred():
    # 10th..90th percentile 10..1000 px: 8..128 would miss the large ones;
    # centre sqrt(10 * 1000) = 100 ~ 4 * smallest -> smallest 32 (100 / 4 = 25)
    sizes = np.geomspace(10, 1000, 1001)
    lo, hi = np.percentile(sizes, [10, 90])
    scales = fit_anchor_scales(sizes, config(image_max_dim=2048))
    assert scales[0] == 2 ** round(np.log2(np.sqrt(lo * hi) / 4)) == 32


def test_sizes_are_measured_in_molded_pixels():
    masks = np.zeros((128, 128, 2), bool)
    masks[10:26, 10:26, 0] = True  # 16 x 16
    masks[50:58, 40:72, 1] = True  # 8 x 32: sqrt = 16
    dataset = ArrayDataset([(np.zeros((128, 128)), masks, [1, 1])])
    cfg = config(image_min_dim=512, image_max_dim=1024)  # scale up by 4
    np.testing.assert_allclose(object_sizes(dataset, cfg), [64, 64])
    assert fit_anchor_scales(dataset, cfg) == [64, 128, 256, 512, 1024]
    # square mode shrinks 128 to max_dim 64; "none" leaves the image as it is
    np.testing.assert_allclose(object_sizes(dataset, config(image_min_dim=32, image_max_dim=64)),
                               [8, 8])
    np.testing.assert_allclose(object_sizes(dataset, config(resize_mode="none")), [16, 16])
