"""Box arithmetic against hand-worked cases and naive loops."""

import math

import numpy as np
import pytest

from maskrcnnlib.model import boxes as B


def naive_iou(a, b):
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter)


def random_boxes(rng, count):
    corners = rng.uniform(0, 100, size=(count, 2))
    sizes = rng.uniform(1, 40, size=(count, 2))
    return np.concatenate([corners, corners + sizes], axis=1)


def test_iou_by_hand():
    overlaps = B.compute_overlaps(np.array([[0, 0, 10, 10]]),
                                  np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]]))
    np.testing.assert_allclose(overlaps, [[25 / 175, 0.0, 1.0]])
    assert overlaps.dtype == np.float64


def test_overlaps_match_naive_loop():
    rng = np.random.default_rng(0)
    boxes1, boxes2 = random_boxes(rng, 40), random_boxes(rng, 25)
    expected = [[naive_iou(a, b) for b in boxes2] for a in boxes1]
    np.testing.assert_allclose(B.compute_overlaps(boxes1, boxes2), expected, rtol=1e-12)
    areas = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    area0 = (boxes1[0, 2] - boxes1[0, 0]) * (boxes1[0, 3] - boxes1[0, 1])
    np.testing.assert_allclose(B.compute_iou(boxes1[0], boxes2, area0, areas), expected[0])


def test_refinement_by_hand():
    # box: centre (5, 5), size 10 x 10; gt: centre (7, 14), size 10 x 20
    deltas = B.box_refinement(np.array([[0, 0, 10, 10]]), np.array([[2, 4, 12, 24]]))
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[0.2, 0.9, 0.0, math.log(2)]], rtol=1e-6)


def test_apply_deltas_by_hand():
    moved = B.apply_box_deltas(np.array([[0, 0, 10, 10]]), np.array([[0.2, 0.9, 0.0, math.log(2)]]))
    assert moved.dtype == np.float32
    np.testing.assert_allclose(moved, [[2, 4, 12, 24]], rtol=1e-6, atol=1e-5)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(1)
    anchors, targets = random_boxes(rng, 200), random_boxes(rng, 200)
    deltas = B.box_refinement(anchors, targets)
    np.testing.assert_allclose(B.apply_box_deltas(anchors, deltas), targets, rtol=1e-5, atol=1e-3)


def test_clip_by_hand():
    clipped = B.clip_boxes(np.array([[-5.0, 3.0, 12.0, 8.0], [20, 20, 30, 30]]), (0, 0, 10, 10))
    np.testing.assert_array_equal(clipped, [[0, 3, 10, 8], [10, 10, 10, 10]])


# -------------------------------------------------------------- keras.ops
def test_ops_versions_by_hand():
    from keras import ops

    box = np.array([[0, 0, 10, 10]], np.float32)
    deltas = np.array([[0.2, 0.9, 0.0, math.log(2)]], np.float32)
    gt = np.array([[2, 4, 12, 24]], np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(B.box_refinement_ops(box, gt)), deltas,
                               rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(B.apply_box_deltas_ops(box, deltas)), gt,
                               rtol=1e-6, atol=1e-5)
    clipped = B.clip_boxes_ops(np.array([[-5, 3, 12, 8]], np.float32),
                               np.array([0, 0, 10, 10], np.float32))
    np.testing.assert_array_equal(ops.convert_to_numpy(clipped), [[0, 3, 10, 8]])


def test_ops_overlaps_match_naive_loop():
    from keras import ops

    rng = np.random.default_rng(2)
    boxes1 = random_boxes(rng, 30).astype(np.float32)
    boxes2 = random_boxes(rng, 20).astype(np.float32)
    expected = [[naive_iou(a.astype(float), b.astype(float)) for b in boxes2] for a in boxes1]
    result = ops.convert_to_numpy(B.overlaps_ops(boxes1, boxes2))
    assert result.shape == (30, 20) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(14, 4), (2, 7, 4)])
def test_ops_round_trip_keeps_leading_axes(shape):
    from keras import ops

    rng = np.random.default_rng(3)
    anchors = random_boxes(rng, 14).reshape(shape).astype(np.float32)
    targets = random_boxes(rng, 14).reshape(shape).astype(np.float32)
    deltas = B.box_refinement_ops(anchors, targets)
    decoded = ops.convert_to_numpy(B.apply_box_deltas_ops(anchors, deltas))
    assert decoded.shape == shape
    np.testing.assert_allclose(decoded, targets, rtol=1e-5, atol=1e-3)


def test_huge_size_deltas_give_finite_boxes_covering_the_window():
    """An untrained or diverging head can emit log(dh) far beyond exp()'s range; the
    decoded box must stay finite (not -inf + inf = NaN) and, clipped, cover the window."""
    from keras import ops

    boxes = np.array([[0.4, 0.4, 0.41, 0.41], [0.5, 0.5, 0.5, 0.5]], np.float32)
    deltas = np.array([[0.0, 0.0, 500.0, 1e30], [0.0, 0.0, 90.0, 90.0]], np.float32)
    window = np.array([0.0, 0.0, 1.0, 1.0], np.float32)
    for decoded in (B.apply_box_deltas(boxes, deltas),
                    ops.convert_to_numpy(B.apply_box_deltas_ops(boxes, deltas))):
        assert np.isfinite(decoded).all(), decoded
        np.testing.assert_array_equal(B.clip_boxes(decoded[:1], window), [window])
        np.testing.assert_array_equal(decoded[1], [0.5, 0.5, 0.5, 0.5])  # zero size stays
