"""Molding and unmolding: window math, masks and detections, worked by hand."""

import random

import numpy as np
import pytest

from maskrcnnlib import molding as M
from maskrcnnlib.config import Config
from maskrcnnlib.errors import ConfigError, DatasetError


def image(h, w, bands=3, value=7):
    return np.full((h, w, bands), value, dtype=np.uint8)


def test_square_scales_short_side_up_and_pads():
    # 50 x 100: scale = 64 / 50 = 1.28 -> 64 x 128, padded 32 rows above and below
    out, window, scale, padding, crop = M.resize_image(image(50, 100), 64, 128, 0, "square")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(1.28)
    assert window == (32, 0, 96, 128)
    assert padding == [(32, 32), (0, 0), (0, 0)]
    assert crop is None
    assert (out[32:96] == 7).all() and (out[:32] == 0).all() and (out[96:] == 0).all()


def test_square_long_side_limits_the_scale():
    # min 100 would give scale 1.67, but 200 * 1.67 > 128, so scale = 128 / 200 = 0.64
    # -> round(60 * 0.64) = 38 rows, padding (128 - 38) // 2 = 45 above, 45 below
    out, window, scale, padding, _ = M.resize_image(image(60, 200), 100, 128, 0, "square")
    assert out.shape == (128, 128, 3)
    assert scale == pytest.approx(0.64)
    assert window == (45, 0, 83, 128)
    assert padding == [(45, 45), (0, 0), (0, 0)]


def test_min_scale_forces_upscaling():
    _, window, scale, _, _ = M.resize_image(image(30, 20), 0, 128, 2, "square")
    assert scale == 2 and window == (34, 44, 94, 84)


def test_none_returns_image_unchanged():
    img = image(33, 47)
    out, window, scale, padding, crop = M.resize_image(img, 256, 1280, 0, "none")
    assert out is img and window == (0, 0, 33, 47) and scale == 1
    assert padding == [(0, 0), (0, 0), (0, 0)] and crop is None


def test_pad64_pads_each_side_to_a_multiple_of_64():
    out, window, scale, padding, _ = M.resize_image(image(70, 130), 64, 1024, 0, "pad64")
    # 70 -> 128 (58 = 29 + 29), 130 -> 192 (62 = 31 + 31)
    assert out.shape == (128, 192, 3) and scale == 1
    assert window == (29, 31, 99, 161)
    assert padding == [(29, 29), (31, 31), (0, 0)]
    with pytest.raises(ConfigError):
        M.resize_image(image(70, 130), 100, 1024, 0, "pad64")


def test_crop_picks_a_window_of_min_dim():
    img = np.arange(80 * 90 * 3, dtype=np.int32).reshape(80, 90, 3)
    out, window, scale, _, crop = M.resize_image(img, 32, None, 0, "crop", rng=random.Random(5))
    y, x, h, w = crop
    assert (h, w) == (32, 32) and window == (0, 0, 32, 32) and scale == 1
    np.testing.assert_array_equal(out, img[y:y + 32, x:x + 32])


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        M.resize_image(image(10, 10), 64, 128, 0, "stretch")
    assert caught.value.field == "resize_mode"


def test_resize_keeps_constant_images_constant():
    out, (y1, x1, y2, x2), scale, _, _ = M.resize_image(
        np.full((40, 60, 4), 1000.0, np.float32), 80, 256, 0, "square")
    assert out.dtype == np.float32 and scale == 2 and (y1, x1, y2, x2) == (88, 68, 168, 188)
    np.testing.assert_allclose(out[y1 + 2:y2 - 2, x1 + 2:x2 - 2], 1000.0, rtol=1e-6)
    assert (out[:y1] == 0).all() and (out[:, x2:] == 0).all()


def test_resize_mask_nearest_neighbour_then_pad():
    mask = np.zeros((4, 4, 1), bool)
    mask[1:3, 1:3, 0] = True
    out = M.resize_mask(mask, 2, [(1, 1), (0, 0), (0, 0)])
    expected = np.zeros((10, 8), bool)
    expected[3:7, 2:6] = True  # rows/cols 2..5 of the 8 x 8 zoom, one row of padding above
    np.testing.assert_array_equal(out[:, :, 0], expected)


def test_mini_mask_round_trip_of_full_boxes_is_exact():
    mask = np.zeros((60, 80, 2), bool)
    mask[10:30, 5:70, 0] = True
    mask[40:59, 60:80, 1] = True
    bbox = np.array([[10, 5, 30, 70], [40, 60, 59, 80]])
    mini = M.minimize_mask(bbox, mask, (56, 56))
    assert mini.shape == (56, 56, 2) and mini.all()
    np.testing.assert_array_equal(M.expand_mask(bbox, mini, (60, 80, 3)), mask)


def test_mini_mask_round_trip_of_a_triangle_is_close():
    yy, xx = np.mgrid[0:100, 0:100]
    mask = ((yy >= 10) & (xx >= 10) & (xx - 10 <= yy - 10) & (yy < 90))[:, :, None]
    bbox = np.array([[10, 10, 90, 90]])
    back = M.expand_mask(bbox, M.minimize_mask(bbox, mask, (56, 56)), (100, 100))
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95


def test_mini_mask_rejects_empty_box():
    with pytest.raises(DatasetError, match="zero area"):
        M.minimize_mask(np.array([[5, 5, 5, 9]]), np.ones((10, 10, 1), bool), (8, 8))


def test_unmold_mask_fills_its_box_only():
    full = M.unmold_mask(np.ones((28, 28), np.float32), (10, 20, 30, 60), (50, 100, 3))
    assert full.shape == (50, 100) and full.dtype == bool
    assert full[10:30, 20:60].all() and full.sum() == 20 * 40


def test_unmold_mask_keeps_left_half_on_the_left():
    mask = np.zeros((28, 28), np.float32)
    mask[:, :14] = 1.0
    full = M.unmold_mask(mask, (0, 0, 28, 56), (28, 56))
    assert full[:, :27].all() and not full[:, 29:].any()


def test_mold_image_subtracts_mean_and_divides_by_std():
    pixels = np.array([[[200, 100, 50, 10]]], np.uint8)
    molded = M.mold_image(pixels, [100.0, 50.0, 0.0, 10.0], [2.0, 1.0, 0.5, 1.0])
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded, [[[50.0, 50.0, 100.0, 0.0]]])
    np.testing.assert_allclose(
        M.unmold_image(molded, [100.0, 50.0, 0.0, 10.0], [2.0, 1.0, 0.5, 1.0]),
        pixels.astype(float),
    )


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64", "int32"])
def test_mold_image_rounds_once_from_float64_for_every_dtype(dtype):
    """float32(float64(float32(value)) - mean) / std), whatever path the dtype takes."""
    rng = np.random.default_rng(3)
    pixels = (rng.uniform(-1000, 60000, (9, 7, 3)) if dtype.startswith("float") or dtype == "int32"
              else rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (9, 7, 3)))
    pixels = pixels.astype(dtype)
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    expected = ((pixels.astype(np.float32).astype(np.float64) - np.array(mean)) / np.array(std))
    np.testing.assert_array_equal(M.mold_image(pixels, mean, std), expected.astype(np.float32))
    expected = pixels.astype(np.float32).astype(np.float64) - np.array(mean)
    np.testing.assert_array_equal(M.mold_image(pixels, mean), expected.astype(np.float32))


def test_mask_resize_equals_scikit_image():
    """The matrix form of the bilinear resize against scikit-image's resize, up and
    down, square and not; the 0.5 threshold gives the same pixels."""
    rng = np.random.default_rng(4)
    for _ in range(40):
        mask = (rng.uniform(0, 1, (28, 28)) ** 3).astype(np.float32)
        shape = tuple(int(v) for v in rng.integers(1, 200, 2))
        expected = M._resize(mask, shape)
        ours = M._resize_mask(mask, shape)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(ours >= 0.5, expected >= 0.5)


def test_image_meta_layout():
    meta = M.compose_image_meta(7, (50, 100, 3), (128, 128, 3), (32, 0, 96, 128), 1.28,
                                [1, 0, 1])
    assert meta.shape == (12 + 3,)
    assert meta.tolist() == [7, 50, 100, 3, 128, 128, 3, 32, 0, 96, 128, 1.28, 1, 0, 1]
    batch = M.parse_image_meta(np.stack([meta, meta]))
    assert batch["window"].tolist() == [[32, 0, 96, 128]] * 2
    single = M.parse_image_meta(meta)
    assert single["image_id"] == 7
    assert single["original_image_shape"].tolist() == [50, 100, 3]
    assert single["image_shape"].tolist() == [128, 128, 3]
    assert single["scale"] == pytest.approx(1.28)
    assert single["active_class_ids"].tolist() == [1, 0, 1]


def test_mold_input_uses_config():
    config = Config(image_min_dim=64, image_max_dim=128, num_classes=3)
    molded, meta, window = M.mold_input(image(50, 100, value=124), config)
    assert molded.shape == (128, 128, 3) and molded.dtype == np.float32
    assert window == (32, 0, 96, 128)
    assert meta.shape == (config.image_meta_size,)
    np.testing.assert_allclose(molded[0, 0], [-123.7, -116.8, -103.9], rtol=1e-6)
    np.testing.assert_allclose(molded[64, 64], [0.3, 7.2, 20.1], rtol=1e-5)


def test_unmold_detections_maps_back_to_the_original_image():
    # original 50 x 100, molded 128 x 128 with scale 1.28 and window (32, 0, 96, 128).
    # Original box (10, 20, 30, 60) is molded pixel box (44.8, 25.6, 70.4, 76.8);
    # normalized on 128 x 128: y1/127, x1/127, (y2 - 1)/127, (x2 - 1)/127.
    molded_box = [44.8 / 127, 25.6 / 127, 69.4 / 127, 75.8 / 127]
    detections = np.zeros((5, 6), np.float32)
    detections[0] = molded_box + [2, 0.9]
    detections[1] = [0.5, 0.5, 0.4, 0.6, 1, 0.8]  # negative height: dropped
    detections[3] = molded_box + [1, 0.99]  # after the padding row: ignored
    masks = np.zeros((5, 28, 28, 3), np.float32)
    masks[0, :, :, 2] = 1.0
    boxes, class_ids, scores, full = M.unmold_detections(
        detections, masks, (50, 100, 3), (128, 128, 3), (32, 0, 96, 128))
    assert boxes.tolist() == [[10, 20, 30, 60]]
    assert class_ids.tolist() == [2]
    np.testing.assert_allclose(scores, [0.9])
    assert full.shape == (50, 100, 1) and full.dtype == bool
    assert full[10:30, 20:60, 0].all() and full.sum() == 20 * 40


def test_unmold_detections_with_nothing_found():
    boxes, class_ids, scores, full = M.unmold_detections(
        np.zeros((4, 6), np.float32), np.zeros((4, 28, 28, 2), np.float32),
        (40, 30, 3), (64, 64, 3), (12, 17, 52, 47))
    assert boxes.shape == (0, 4) and class_ids.shape == (0,) and scores.shape == (0,)
    assert full.shape == (40, 30, 0)


def test_unmold_detections_when_a_trailing_detection_was_clipped_to_nothing():
    """A last detection whose box was clipped to all zeros has no mask row (the graph
    cuts mask rows after the last non-zero box): it is dropped, the others kept."""
    detections = np.zeros((4, 6), np.float32)
    detections[0] = [0.25, 0.25, 0.5, 0.75, 1, 0.9]
    detections[1] = [0.0, 0.0, 0.0, 0.0, 2, 0.8]  # clipped away, still a detection row
    masks = np.zeros((1, 28, 28, 3), np.float32)  # one mask row only
    masks[0, :, :, 1] = 1.0
    boxes, class_ids, scores, full = M.unmold_detections(
        detections, masks, (64, 64, 3), (64, 64, 3), (0, 0, 64, 64))
    # y: 0.25 * 63 = 15.75 -> 16, 0.5 * 63 + 1 = 32.5 -> 32 (half to even); x: 16, 48
    assert class_ids.tolist() == [1] and boxes.tolist() == [[16, 16, 32, 48]]
    assert full.shape == (64, 64, 1) and full[16:32, 16:48, 0].all()
    assert full.sum() == 16 * 32
