"""Box geometry against hand-worked cases and plain per-box loops written here."""

import math

import numpy as np
import pytest
from keras import ops

from maskrcnnlib.model import boxes as B


def loop_iou(a, b):
    """IoU of two boxes, one coordinate at a time."""
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter)


def loop_deltas(box, target):
    """(dy, dx, dh, dw) from centres and sizes, in float64."""
    h, w = box[2] - box[0], box[3] - box[1]
    th, tw = target[2] - target[0], target[3] - target[1]
    return [((target[0] + target[2]) / 2 - (box[0] + box[2]) / 2) / h,
            ((target[1] + target[3]) / 2 - (box[1] + box[3]) / 2) / w,
            math.log(th / h), math.log(tw / w)]


def random_boxes(rng, count):
    corners = rng.uniform(0, 100, size=(count, 2))
    sizes = rng.uniform(1, 40, size=(count, 2))
    return np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)


def numpy(tensor):
    return ops.convert_to_numpy(tensor)


# ------------------------------------------------------------------ IoU
def test_iou_by_hand():
    overlaps = numpy(B.pairwise_iou(np.array([[0, 0, 10, 10]], np.float32),
                                    np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10],
                                              [2, -3, 4, 20]], np.float32)))
    # 5 x 5 of 100 + 100; nothing; itself; 2 x 10 of 100 + 46
    np.testing.assert_allclose(overlaps, [[25 / 175, 0.0, 1.0, 20 / 126]], rtol=1e-6)
    assert overlaps.dtype == np.float32


def test_iou_matches_a_loop_with_and_without_a_batch_axis():
    rng = np.random.default_rng(0)
    boxes_a, boxes_b = random_boxes(rng, 40), random_boxes(rng, 25)
    expected = [[loop_iou(a.astype(float), b.astype(float)) for b in boxes_b] for a in boxes_a]
    result = numpy(B.pairwise_iou(boxes_a, boxes_b))
    assert result.shape == (40, 25)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    batched = numpy(B.pairwise_iou(np.stack([boxes_a, boxes_a[::-1]]),
                                   np.stack([boxes_b, boxes_b])))
    assert batched.shape == (2, 40, 25)
    np.testing.assert_allclose(batched[1], np.array(expected)[::-1], rtol=1e-5, atol=1e-6)


def test_iou_against_no_boxes_is_empty():
    result = numpy(B.pairwise_iou(np.ones((3, 4), np.float32), np.zeros((0, 4), np.float32)))
    assert result.shape == (3, 0)


# ------------------------------------------------------------ deltas
def test_deltas_by_hand():
    # box: centre (5, 5), size 10 x 10; target: centre (7, 14), size 10 x 20
    deltas = numpy(B.box_deltas(np.array([[0, 0, 10, 10]], np.float32),
                                np.array([[2, 4, 12, 24]], np.float32)))
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[0.2, 0.9, 0.0, math.log(2)]], rtol=1e-6)


def test_deltas_match_a_loop():
    rng = np.random.default_rng(1)
    boxes, targets = random_boxes(rng, 50), random_boxes(rng, 50)
    expected = [loop_deltas(b.astype(float), t.astype(float)) for b, t in zip(boxes, targets)]
    np.testing.assert_allclose(numpy(B.box_deltas(boxes, targets)), expected,
                               rtol=1e-4, atol=1e-5)


def test_apply_deltas_by_hand():
    # centre (5, 5) moves by (0.2, 0.9) sizes to (7, 14); height kept, width doubled
    moved = numpy(B.apply_deltas(np.array([[0, 0, 10, 10]], np.float32),
                                 np.array([[0.2, 0.9, 0.0, math.log(2)]], np.float32)))
    assert moved.dtype == np.float32
    np.testing.assert_allclose(moved, [[2, 4, 12, 24]], rtol=1e-6, atol=1e-5)
    shrunk = numpy(B.apply_deltas(np.array([[10, 20, 30, 60]], np.float32),
                                  np.array([[-0.5, 0.25, math.log(0.5), 0.0]], np.float32)))
    # centre (20, 40) -> (10, 50); size 20 x 40 -> 10 x 40
    np.testing.assert_allclose(shrunk, [[5, 30, 15, 70]], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("shape", [(14, 4), (2, 7, 4)])
def test_deltas_round_trip_keeps_leading_axes(shape):
    rng = np.random.default_rng(3)
    anchors = random_boxes(rng, 14).reshape(shape)
    targets = random_boxes(rng, 14).reshape(shape)
    decoded = numpy(B.apply_deltas(anchors, B.box_deltas(anchors, targets)))
    assert decoded.shape == shape
    np.testing.assert_allclose(decoded, targets, rtol=1e-5, atol=1e-3)


def test_huge_size_deltas_give_finite_boxes_covering_the_window():
    """An untrained or diverging head can emit log(dh) far beyond exp()'s range; the
    decoded box must stay finite (not -inf + inf = NaN) and, clipped, cover the window."""
    boxes = np.array([[0.4, 0.4, 0.41, 0.41], [0.5, 0.5, 0.5, 0.5]], np.float32)
    deltas = np.array([[0.0, 0.0, 500.0, 1e30], [0.0, 0.0, 90.0, 90.0]], np.float32)
    window = np.array([0.0, 0.0, 1.0, 1.0], np.float32)
    decoded = numpy(B.apply_deltas(boxes, deltas))
    assert np.isfinite(decoded).all(), decoded
    # exp(MAX_LOG_SCALE) times the height, around the old centre
    half = 0.5 * 0.01 * math.exp(B.MAX_LOG_SCALE)
    np.testing.assert_allclose(decoded[0], [0.405 - half, 0.405 - half, 0.405 + half,
                                            0.405 + half], rtol=1e-5)
    np.testing.assert_array_equal(numpy(B.clip_to_window(decoded[:1], window)), [window])
    np.testing.assert_array_equal(decoded[1], [0.5, 0.5, 0.5, 0.5])  # zero size stays


# ---------------------------------------------------------------- clip
def test_clip_by_hand():
    clipped = numpy(B.clip_to_window(np.array([[-5, 3, 12, 8], [20, 20, 30, 30]], np.float32),
                                     np.array([0, 0, 10, 10], np.float32)))
    np.testing.assert_array_equal(clipped, [[0, 3, 10, 8], [10, 10, 10, 10]])


def test_clip_takes_one_window_per_image():
    boxes = np.array([[[1, 1, 9, 9]], [[1, 1, 9, 9]]], np.float32)  # [2 images, 1 box, 4]
    windows = np.array([[[0, 0, 5, 5]], [[2, 3, 10, 4]]], np.float32)  # [2, 1, 4]
    clipped = numpy(B.clip_to_window(boxes, windows))
    np.testing.assert_array_equal(clipped, [[[1, 1, 5, 5]], [[2, 3, 9, 4]]])


# ------------------------------------------------ pixels <-> normalized
def test_normalized_by_hand():
    # 101 x 51 image: pixel centres 0..100 and 0..50; the far corner is inclusive
    boxes = np.array([[10, 5, 60, 30], [0, 0, 101, 51]])
    normalized = B.boxes_to_normalized(boxes, (101, 51, 3))
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, [[0.1, 0.1, 0.59, 0.58], [0, 0, 1, 1]], rtol=1e-6)
    back = B.boxes_to_pixels(normalized, (101, 51))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, boxes)


def test_to_pixels_rounds_halves_to_even():
    # 4 x 10 image, steps 3 and 9: 1.5 -> 2, 4.5 -> 4, 1.5 + 1 -> 2, 4.5 + 1 -> 6
    pixels = B.boxes_to_pixels(np.full((1, 4), 0.5, np.float32), (4, 10))
    np.testing.assert_array_equal(pixels, [[2, 4, 2, 6]])


def test_normalized_rounds_once_from_float64():
    rng = np.random.default_rng(5)
    boxes = rng.uniform(0, 400, (1000, 4))  # float64, as the pixel anchors are
    expected = (boxes - [0, 0, 1, 1]) / [299, 399, 299, 399]
    np.testing.assert_array_equal(B.boxes_to_normalized(boxes, (300, 400)),
                                  expected.astype(np.float32))
