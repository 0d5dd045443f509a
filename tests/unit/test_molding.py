"""Molding and unmolding: resize rule, padding, masks, meta and detections, worked by hand."""

import numpy as np
import pytest
import skimage.transform

from maskrcnnlib import config as config_module
from maskrcnnlib.config import Config
from maskrcnnlib.errors import ConfigError, DatasetError
from maskrcnnlib.model import molding as M
from maskrcnnlib.model.image_meta import FIELDS, HEADER_SIZE, IMAGE_SHAPE, WINDOW, \
    compose_image_meta


def image(h, w, bands=3, value=7):
    return np.full((h, w, bands), value, dtype=np.uint8)


# ------------------------------------------------------------ resize rule
@pytest.mark.parametrize("size, settings, expected", [
    ((50, 100), (64, 128, 0, "square"), 64 / 50),  # short side up to min_dim
    ((60, 200), (100, 128, 0, "square"), 128 / 200),  # 200 * 100/60 > 128: long side rules
    ((300, 200), (100, 1024, 0, "square"), 1),  # never scaled down for min_dim
    ((30, 20), (0, 128, 2, "square"), 2),  # at least min_scale
    ((30, 20), (50, 128, 2, "square"), 2.5),  # min_dim asks for more than min_scale
    ((70, 130), (64, 100, 0, "pad64"), 1),  # max_dim does not apply to pad64
    ((40, 900), (256, 1024, 0, "pad64"), 256 / 40),
    ((40, 900), (256, 1024, 0, "none"), 1),
])
def test_resize_scale_by_hand(size, settings, expected):
    assert M.resize_scale(*size, *settings) == pytest.approx(expected)


def test_resize_scale_rounds_the_long_side_before_comparing():
    # 64 * 2 = 128 fits; 64.4 * 2 = 128.8 rounds to 129 > 128, so the long side rules
    assert M.resize_scale(32, 64, 64, 128, 0, "square") == 2
    assert M.resize_scale(32.2, 64.4, 64.4, 128, 0, "square") == pytest.approx(128 / 64.4)
    # 5 * 77 / 3 = 128.33 rounds to 128, which fits: the short side's scale stays
    assert M.resize_scale(3, 5, 77, 128, 0, "square") == 77 / 3


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        M.resize_image(image(10, 10), 64, 128, 0, "stretch")
    assert caught.value.field == "resize_mode"


def test_resize_modes_are_the_configs():
    assert set(M.RESIZE_MODES) == set(config_module.RESIZE_MODES)


# ----------------------------------------------------------- resize_image
def test_square_scales_short_side_up_and_pads():
    # 50 x 100: scale = 64 / 50 = 1.28 -> 64 x 128, padded 32 rows above and below
    out, scale, padding = resized = M.resize_image(image(50, 100), 64, 128, 0, "square")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(1.28)
    assert padding == ((32, 32), (0, 0))
    assert resized.window == (32, 0, 96, 128)
    assert (out[32:96] == 7).all() and (out[:32] == 0).all() and (out[96:] == 0).all()


def test_square_long_side_limits_the_scale():
    # min 100 would give scale 1.67, but 200 * 1.67 > 128, so scale = 128 / 200 = 0.64
    # -> round(60 * 0.64) = 38 rows, padding (128 - 38) // 2 = 45 above, 45 below
    resized = M.resize_image(image(60, 200), 100, 128, 0, "square")
    assert resized.image.shape == (128, 128, 3)
    assert resized.padding == ((45, 45), (0, 0))
    assert resized.window == (45, 0, 83, 128)


def test_odd_padding_puts_the_extra_row_after():
    # 30 x 20 at scale 2 -> 60 x 40 in 128: rows 34 + 34, columns 44 + 44; 61 -> 33 + 34
    assert M.resize_image(image(30, 20), 0, 128, 2, "square").window == (34, 44, 94, 84)
    resized = M.resize_image(image(61, 128), 0, 128, 0, "square")
    assert resized.padding == ((33, 34), (0, 0)) and resized.window == (33, 0, 94, 128)


def test_none_returns_image_unchanged():
    img = image(33, 47)
    resized = M.resize_image(img, 256, 1280, 0, "none")
    assert resized.image is img and resized.scale == 1
    assert resized.padding == ((0, 0), (0, 0)) and resized.window == (0, 0, 33, 47)


def test_pad64_pads_each_side_to_a_multiple_of_64():
    resized = M.resize_image(image(70, 130), 64, 1024, 0, "pad64")
    # 70 -> 128 (58 = 29 + 29), 130 -> 192 (62 = 31 + 31)
    assert resized.image.shape == (128, 192, 3) and resized.scale == 1
    assert resized.padding == ((29, 29), (31, 31))
    assert resized.window == (29, 31, 99, 161)
    assert M.resize_image(image(64, 128), 64, 1024, 0, "pad64").padding == ((0, 0), (0, 0))


def test_two_dimensional_images_are_padded_too():
    resized = M.resize_image(np.ones((50, 100), np.float32), 64, 128, 0, "square")
    assert resized.image.shape == (128, 128) and resized.window == (32, 0, 96, 128)


def test_bilinear_resize_by_hand():
    """2 x 2 -> 4 x 4: output pixel i samples input (i + 0.5) / 2 - 0.5, so -0.25, 0.25,
    0.75, 1.25; outside the image counts as 0; the result is clipped to the input's
    range [100, 200]. Columns 100, 200 give 75, 125, 175, 150; rows 0 and 3 are 3/4
    of that."""
    img = np.array([[100, 200], [100, 200]], np.float32)[:, :, None]
    out = M.resize_image(img, 4, 4, 0, "square").image[:, :, 0]
    middle = [100, 125, 175, 150]
    edge = [100, 100, 131.25, 112.5]
    np.testing.assert_allclose(out, [edge, middle, middle, edge], rtol=1e-6)


def test_integer_images_are_truncated_back_to_their_dtype():
    img = np.array([[100, 200], [100, 200]], np.uint8)[:, :, None]
    out = M.resize_image(img, 4, 4, 0, "square").image[:, :, 0]
    assert out.dtype == np.uint8 and out[0].tolist() == [100, 100, 131, 112]


def test_resize_keeps_constant_images_constant():
    resized = M.resize_image(np.full((40, 60, 4), 1000.0, np.float32), 80, 256, 0, "square")
    y1, x1, y2, x2 = resized.window
    out = resized.image
    assert out.dtype == np.float32 and resized.scale == 2 and (y1, x1, y2, x2) == (88, 68, 168, 188)
    np.testing.assert_allclose(out[y1 + 2:y2 - 2, x1 + 2:x2 - 2], 1000.0, rtol=1e-6)
    assert (out[:y1] == 0).all() and (out[:, x2:] == 0).all()


# ------------------------------------------------------------------ masks
def test_resize_masks_nearest_neighbour_then_pad():
    mask = np.zeros((4, 4, 1), bool)
    mask[1:3, 1:3, 0] = True
    out = M.resize_masks(mask, 2, ((1, 1), (0, 0)))
    expected = np.zeros((10, 8), bool)
    expected[3:7, 2:6] = True  # rows/cols 2..5 of the 8 x 8 zoom, one row of padding above
    assert out.dtype == bool
    np.testing.assert_array_equal(out[:, :, 0], expected)


def test_resize_masks_follow_their_image():
    masks = np.zeros((50, 100, 2), bool)
    masks[10:20, 30:40, 0] = True
    masks[:, :, 1] = True
    resized = M.resize_image(image(50, 100), 64, 128, 0, "square")
    out = M.resize_masks(masks, resized.scale, resized.padding)
    y1, x1, y2, x2 = resized.window
    assert out.shape == (128, 128, 2)
    assert out[y1:y2, x1:x2, 1].all() and out[:, :, 1].sum() == (y2 - y1) * (x2 - x1)
    # rows 10..20 * 1.28 = 12.8..25.6 and columns 38.4..51.2, nearest pixels
    rows, cols = np.nonzero(out[:, :, 0])
    assert abs(rows.min() - (y1 + 12.8)) <= 1 and abs(rows.max() + 1 - (y1 + 25.6)) <= 1
    assert abs(cols.min() - 38.4) <= 1 and abs(cols.max() + 1 - 51.2) <= 1


def test_mini_masks_of_full_boxes_are_full():
    masks = np.zeros((60, 80, 2), bool)
    masks[10:30, 5:70, 0] = True
    masks[40:59, 60:80, 1] = True
    minis = M.mini_masks(masks, np.array([[10, 5, 30, 70], [40, 60, 59, 80]]), (56, 56))
    assert minis.shape == (56, 56, 2) and minis.dtype == bool and minis.all()


def test_mini_mask_of_a_left_half_by_hand():
    # a 20 x 40 box whose left 20 columns are set: mini column j samples input column
    # (j + 0.5) * 40 / 56 - 0.5, which is below 19.5 (value above 1/2) for j <= 27
    masks = np.zeros((30, 50, 1), np.uint8)
    masks[5:25, 5:25, 0] = 1
    mini = M.mini_masks(masks, np.array([[5, 5, 25, 45]]), (56, 56))[:, :, 0]
    assert mini[:, :28].all() and not mini[:, 28:].any()


def test_mini_mask_value_of_exactly_one_half_is_false():
    # [1, 0] -> 3 columns samples -1/6, 1/2 and 7/6: 5/6, exactly 1/2, 0
    masks = np.array([[[True], [False]]])
    mini = M.mini_masks(masks, np.array([[0, 0, 1, 2]]), (1, 3))
    assert mini[0, :, 0].tolist() == [True, False, False]


def test_mini_masks_reject_empty_box():
    with pytest.raises(DatasetError, match="zero area"):
        M.mini_masks(np.ones((10, 10, 1), bool), np.array([[5, 5, 5, 9]]), (8, 8))


def test_mask_resize_equals_scikit_image():
    """The matrix form of the bilinear resize against scikit-image's resize, up and
    down, square and not; the 0.5 threshold gives the same pixels."""
    rng = np.random.default_rng(4)
    for _ in range(40):
        mask = (rng.uniform(0, 1, (28, 28)) ** 3).astype(np.float32)
        shape = tuple(int(v) for v in rng.integers(1, 200, 2))
        expected = skimage.transform.resize(mask, shape, order=1, mode="constant", cval=0,
                                            clip=True, anti_aliasing=False)
        ours = M._resize_mask(mask, shape)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(ours >= 0.5, expected >= 0.5)


# ------------------------------------------------------------ pixel values
def test_mold_image_subtracts_mean_and_divides_by_std():
    pixels = np.array([[[200, 100, 50, 10]]], np.uint8)
    molded = M.mold_image(pixels, [100.0, 50.0, 0.0, 10.0], [2.0, 1.0, 0.5, 1.0])
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded, [[[50.0, 50.0, 100.0, 0.0]]])


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


# --------------------------------------------------------------- image meta
def test_image_meta_layout():
    meta = compose_image_meta(7, (50, 100, 3), (128, 128, 3), (32, 0, 96, 128), 1.28, [1, 0, 1])
    assert meta.dtype == np.float64 and meta.shape == (12 + 3,) and HEADER_SIZE == 12
    assert meta.tolist() == [7, 50, 100, 3, 128, 128, 3, 32, 0, 96, 128, 1.28, 1, 0, 1]
    assert meta[IMAGE_SHAPE].tolist() == [128, 128, 3]
    assert meta[WINDOW].tolist() == [32, 0, 96, 128]
    assert meta[FIELDS["original_image_shape"]].tolist() == [50, 100, 3]
    assert meta[FIELDS["scale"]].tolist() == [1.28]


def test_image_meta_refuses_a_shape_without_bands():
    with pytest.raises(ValueError, match="original_image_shape"):
        compose_image_meta(0, (50, 100), (128, 128, 3), (32, 0, 96, 128), 1.28, [1])


def test_mold_input_uses_config():
    config = Config(image_min_dim=64, image_max_dim=128, num_classes=3)
    molded, meta, window = M.mold_input(image(50, 100, value=124), config, image_id=5)
    assert molded.shape == (128, 128, 3) and molded.dtype == np.float32
    assert window == (32, 0, 96, 128)
    assert meta.shape == (config.image_meta_size,)
    assert meta.tolist() == [5, 50, 100, 3, 128, 128, 3, 32, 0, 96, 128, 1.28, 0, 0, 0]
    np.testing.assert_allclose(molded[0, 0], [-123.7, -116.8, -103.9], rtol=1e-6)
    np.testing.assert_allclose(molded[64, 64], [0.3, 7.2, 20.1], rtol=1e-5)


# ---------------------------------------------------------------- unmolding
def test_unmold_detections_maps_back_to_the_original_image():
    # original 50 x 100, molded 128 x 128 with scale 1.28 and window (32, 0, 96, 128).
    # Original box (10, 20, 30, 60) is molded pixel box (44.8, 25.6, 70.4, 76.8);
    # normalized on 128 x 128: y1/127, x1/127, (y2 - 1)/127, (x2 - 1)/127.
    molded_box = [44.8 / 127, 25.6 / 127, 69.4 / 127, 75.8 / 127]
    detections = np.zeros((5, 6), np.float32)
    detections[0] = molded_box + [2, 0.9]
    detections[1] = [0.5, 0.5, 0.4, 0.6, 1, 0.8]  # negative height: dropped
    # rows 24 to 23 + 1 of the original's 50: no height, dropped (window rows 32..95)
    detections[2] = [(32 + 63 * 24 / 49) / 127, 0.5, (32 + 63 * 23 / 49) / 127, 0.6, 1, 0.7]
    detections[4] = molded_box + [1, 0.99]  # after the padding row: ignored
    masks = np.zeros((5, 28, 28, 3), np.float32)
    masks[0, :, :, 2] = 1.0
    boxes, class_ids, scores, full = M.unmold_detections(
        detections, masks, (128, 128, 3), (32, 0, 96, 128), (50, 100, 3))
    assert boxes.dtype == np.int32 and boxes.tolist() == [[10, 20, 30, 60]]
    assert class_ids.dtype == np.int32 and class_ids.tolist() == [2]
    np.testing.assert_allclose(scores, [0.9])
    assert full.shape == (50, 100, 1) and full.dtype == bool
    assert full[10:30, 20:60, 0].all() and full.sum() == 20 * 40


def test_unmold_detections_pastes_the_left_half_on_the_left():
    # a molded image equal to the original (window = whole image): box (0, 0, 28, 56)
    detections = np.zeros((2, 6), np.float32)
    detections[0] = [0, 0, 27 / 63, 55 / 63, 1, 0.5]
    masks = np.zeros((2, 28, 28, 2), np.float32)
    masks[0, :, :14, 1] = 1.0
    boxes, _, _, full = M.unmold_detections(detections, masks, (64, 64), (0, 0, 64, 64),
                                            (64, 64))
    assert boxes.tolist() == [[0, 0, 28, 56]]
    # column c of 56 samples mask column (c + 0.5) / 2 - 0.5: >= 1/2 up to c = 27
    assert full[:28, :28, 0].all() and not full[:, 28:, 0].any() and not full[28:].any()


def test_unmold_detections_with_nothing_found():
    boxes, class_ids, scores, full = M.unmold_detections(
        np.zeros((4, 6), np.float32), np.zeros((4, 28, 28, 2), np.float32),
        (64, 64, 3), (12, 17, 52, 47), (40, 30, 3))
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
        detections, masks, (64, 64, 3), (0, 0, 64, 64), (64, 64, 3))
    # y: 0.25 * 63 = 15.75 -> 16, 0.5 * 63 + 1 = 32.5 -> 32 (half to even); x: 16, 48
    assert class_ids.tolist() == [1] and boxes.tolist() == [[16, 16, 32, 48]]
    assert full.shape == (64, 64, 1) and full[16:32, 16:48, 0].all()
    assert full.sum() == 16 * 32
