"""Anchors against hand-worked grids and a plain loop written here (matterport's order)."""

import math

import numpy as np
import pytest

from maskrcnnlib.model.anchors import (
    anchors_for_config,
    feature_map_shapes,
    get_anchors,
    level_anchors,
    pyramid_anchors,
)


def box(cy, cx, h, w):
    return [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]


def loop_anchors(image_size, sizes, ratios, strides, anchor_stride):
    """Level by level, cell by cell (rows outer), ratio by ratio."""
    anchors = []
    for size, stride in zip(sizes, strides):
        rows = math.ceil(image_size[0] / stride)
        columns = math.ceil(image_size[1] / stride)
        for i in range(0, rows, anchor_stride):
            for j in range(0, columns, anchor_stride):
                for ratio in ratios:
                    anchors.append(box(i * stride, j * stride, size / math.sqrt(ratio),
                                       size * math.sqrt(ratio)))
    return np.array(anchors)


def test_one_level_grid_by_hand():
    # size 8, ratios width/height 1/4, 1, 4 -> (h, w) = (16, 4), (8, 8), (4, 16)
    anchors = level_anchors((2, 2), stride=4, size=8, ratios=[0.25, 1, 4])
    expected = []
    for cy, cx in [(0, 0), (0, 4), (4, 0), (4, 4)]:  # cells row by row
        expected += [box(cy, cx, 16, 4), box(cy, cx, 8, 8), box(cy, cx, 4, 16)]
    np.testing.assert_array_equal(anchors, np.array(expected))
    assert anchors[1].tolist() == [-4.0, -4.0, 4.0, 4.0]
    assert anchors[-1].tolist() == [2.0, -4.0, 6.0, 12.0]


def test_anchor_stride_skips_cells():
    anchors = level_anchors((3, 4), stride=8, size=4, ratios=[1], anchor_stride=2)
    centers = [((a[0] + a[2]) / 2, (a[1] + a[3]) / 2) for a in anchors]
    assert centers == [(0, 0), (0, 16), (16, 0), (16, 16)]


def test_feature_maps_round_up():
    shapes = feature_map_shapes((100, 70, 3), [4, 8, 16, 32, 64])
    assert shapes == [(25, 18), (13, 9), (7, 5), (4, 3), (2, 2)]


def test_pyramid_levels_are_concatenated_in_order():
    anchors = pyramid_anchors((8, 8), sizes=[8, 16], ratios=[1], strides=[4, 8])
    expected = [box(0, 0, 8, 8), box(0, 4, 8, 8), box(4, 0, 8, 8), box(4, 4, 8, 8),
                box(0, 0, 16, 16)]
    np.testing.assert_array_equal(anchors, np.array(expected))


@pytest.mark.parametrize("image_size, ratios, anchor_stride", [
    ((100, 70), [0.5, 1, 2], 1), ((64, 96, 4), [0.3, 1.7], 2), ((128, 128), [1], 1)])
def test_pyramid_matches_a_loop(image_size, ratios, anchor_stride):
    sizes, strides = [32, 64, 128, 256, 512], [4, 8, 16, 32, 64]
    expected = loop_anchors(image_size, sizes, ratios, strides, anchor_stride)
    anchors = pyramid_anchors(image_size, sizes, ratios, strides, anchor_stride)
    assert anchors.shape == expected.shape and anchors.dtype == np.float64
    np.testing.assert_allclose(anchors, expected, rtol=1e-12, atol=1e-9)


def test_get_anchors_is_normalized_cached_and_read_only():
    first = get_anchors((128, 128, 3), [32, 64, 128, 256, 512], [0.5, 1, 2],
                        [4, 8, 16, 32, 64], 1)
    # 32*32 + 16*16 + 8*8 + 4*4 + 2*2 cells, 3 ratios each
    assert first.shape == ((1024 + 256 + 64 + 16 + 4) * 3, 4)
    assert first.dtype == np.float32
    # the first anchor: centre (0, 0), size 32, ratio 0.5 -> h = 32*sqrt(2), w = 16*sqrt(2);
    # normalized: (y1, x1) / 127 and (y2 - 1, x2 - 1) / 127
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
    assert anchors_for_config(Like(), (32, 32)).shape == (8 * 8 + 4 * 4 + 2 * 2 + 1 + 1, 4)
