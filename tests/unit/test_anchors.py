"""Anchors against hand-worked grids (matterport's formula and order)."""

import numpy as np
import pytest

from maskrcnnlib.model.anchors import (
    anchors_for_config,
    compute_backbone_shapes,
    denorm_boxes,
    generate_anchors,
    generate_pyramid_anchors,
    get_anchors,
    norm_boxes,
)


def box(cy, cx, h, w):
    return [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]


def test_one_level_grid_by_hand():
    # scale 8, ratios width/height 1/4, 1, 4 -> (h, w) = (16, 4), (8, 8), (4, 16)
    anchors = generate_anchors(8, [0.25, 1, 4], (2, 2), feature_stride=4, anchor_stride=1)
    expected = []
    for cy, cx in [(0, 0), (0, 4), (4, 0), (4, 4)]:  # cells row by row
        expected += [box(cy, cx, 16, 4), box(cy, cx, 8, 8), box(cy, cx, 4, 16)]
    np.testing.assert_array_equal(anchors, np.array(expected))
    assert anchors[1].tolist() == [-4.0, -4.0, 4.0, 4.0]
    assert anchors[-1].tolist() == [2.0, -4.0, 6.0, 12.0]


def test_ratio_major_scale_minor_within_a_cell():
    anchors = generate_anchors([2, 4], [1, 4], (1, 1), feature_stride=16, anchor_stride=1)
    expected = [box(0, 0, 2, 2), box(0, 0, 4, 4), box(0, 0, 1, 4), box(0, 0, 2, 8)]
    np.testing.assert_array_equal(anchors, np.array(expected))


def test_anchor_stride_skips_cells():
    anchors = generate_anchors(4, [1], (3, 4), feature_stride=8, anchor_stride=2)
    centers = [((a[0] + a[2]) / 2, (a[1] + a[3]) / 2) for a in anchors]
    assert centers == [(0, 0), (0, 16), (16, 0), (16, 16)]


def test_backbone_shapes_round_up():
    shapes = compute_backbone_shapes((100, 70, 3), [4, 8, 16, 32, 64])
    assert shapes.tolist() == [[25, 18], [13, 9], [7, 5], [4, 3], [2, 2]]


def test_pyramid_levels_are_concatenated_in_order():
    anchors = generate_pyramid_anchors(
        [8, 16], [1], feature_shapes=[(2, 2), (1, 1)], feature_strides=[4, 8], anchor_stride=1
    )
    expected = [box(0, 0, 8, 8), box(0, 4, 8, 8), box(4, 0, 8, 8), box(4, 4, 8, 8),
                box(0, 0, 16, 16)]
    np.testing.assert_array_equal(anchors, np.array(expected))


def test_norm_and_denorm_by_hand():
    boxes = np.array([[10, 5, 60, 30], [0, 0, 101, 51]])
    normalized = norm_boxes(boxes, (101, 51))
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, [[0.1, 0.1, 0.59, 0.58], [0, 0, 1, 1]], rtol=1e-6)
    back = denorm_boxes(normalized, (101, 51))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, boxes)


def test_get_anchors_is_normalized_cached_and_read_only():
    first = get_anchors((128, 128, 3), [32, 64, 128, 256, 512], [0.5, 1, 2],
                        [4, 8, 16, 32, 64], 1)
    # 32*32 + 16*16 + 8*8 + 4*4 + 2*2 cells, 3 ratios each
    assert first.shape == ((1024 + 256 + 64 + 16 + 4) * 3, 4)
    assert first.dtype == np.float32
    # the first anchor: centre (0, 0), scale 32, ratio 0.5 -> h = 32*sqrt(2), w = 16*sqrt(2)
    h, w = 32 * np.sqrt(2), 16 * np.sqrt(2)
    expected = [-h / 2 / 127, -w / 2 / 127, (h / 2 - 1) / 127, (w / 2 - 1) / 127]
    np.testing.assert_allclose(first[0], expected, rtol=1e-6)
    again = get_anchors((128, 128), (32, 64, 128, 256, 512), (0.5, 1, 2), (4, 8, 16, 32, 64), 1)
    assert again is first
    with pytest.raises(ValueError):
        first[0, 0] = 1.0


def test_anchors_for_config_uses_its_fields():
    class Like:
        rpn_anchor_scales = [8, 16, 32, 64, 128]
        rpn_anchor_ratios = [1]
        backbone_strides = [4, 8, 16, 32, 64]
        rpn_anchor_stride = 1
        image_shape = (64, 64, 3)

    anchors = anchors_for_config(Like())
    assert anchors.shape == (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1, 4)
    np.testing.assert_allclose(anchors[0], [-4 / 63, -4 / 63, 3 / 63, 3 / 63], rtol=1e-6)
