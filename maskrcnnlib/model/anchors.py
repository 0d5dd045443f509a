"""Anchor boxes of the region proposal network (numpy only).

The RPN head scores one anchor per output row, so the anchors must be the ones
matterport's weights were trained with, value for value and in the same order:
pyramid level by level from the finest; within a level, feature-map cells row
by row; within a cell, one anchor per width/height ratio.

On a level of stride s with anchor size a, the cell (i, j) holds anchors
centred on the pixel (i * s, j * s) (the cell's top-left pixel, not its
centre), each of height a / sqrt(r) and width a * sqrt(r) for a ratio r, so
that every anchor of a level has the area a * a. Only every anchor_stride-th
cell along each axis holds anchors.

Pixel anchors are (y1, x1, y2, x2) in the molded image; the network takes
them normalized (model.boxes.boxes_to_normalized).
"""

import functools

import numpy as np

from maskrcnnlib.model.boxes import boxes_to_normalized


def feature_map_shapes(image_size, strides):
    """(rows, columns) of the feature map of each stride for an image (height, width[, bands]).

    A map covers the whole image: ceil(height / stride) x ceil(width / stride).
    """
    height, width = (int(v) for v in image_size[:2])
    return [(-(-height // int(s)), -(-width // int(s))) for s in strides]


def level_anchors(map_shape, stride, size, ratios, anchor_stride=1):
    """Pixel anchors of one pyramid level: float64 [cells * len(ratios), 4].

    map_shape: (rows, columns) of the level's feature map; stride: its pixels per
    cell; size: the anchors' side in pixels; ratios: width/height ratios.
    """
    ratios = np.asarray(ratios, dtype=np.float64).reshape(-1)
    half_height = 0.5 * (size / np.sqrt(ratios))  # [R]
    half_width = 0.5 * (size * np.sqrt(ratios))
    rows = np.arange(0, map_shape[0], anchor_stride) * stride
    columns = np.arange(0, map_shape[1], anchor_stride) * stride
    centre_y = np.repeat(rows, columns.size)[:, None]  # [cells, 1], row by row
    centre_x = np.tile(columns, rows.size)[:, None]
    corners = [centre_y - half_height, centre_x - half_width,
               centre_y + half_height, centre_x + half_width]  # each [cells, R]
    return np.stack(corners, axis=-1).reshape(-1, 4)


def pyramid_anchors(image_size, sizes, ratios, strides, anchor_stride=1):
    """Pixel anchors of every level for an image (height, width[, bands]): float64 [A, 4].

    sizes[i] is the anchor side on the level of strides[i]; levels follow in that order.
    """
    shapes = feature_map_shapes(image_size, strides)
    return np.concatenate([
        level_anchors(shape, stride, size, ratios, anchor_stride)
        for shape, stride, size in zip(shapes, strides, sizes)
    ])


@functools.lru_cache(maxsize=16)
def _normalized_anchors(height, width, sizes, ratios, strides, anchor_stride):
    pixels = pyramid_anchors((height, width), sizes, ratios, strides, anchor_stride)
    anchors = boxes_to_normalized(pixels, (height, width))
    anchors.setflags(write=False)  # one array shared by every caller
    return anchors


def get_anchors(image_shape, sizes, ratios, strides, anchor_stride):
    """Normalized anchors of the whole pyramid for a molded image (height, width[, bands]).

    sizes, ratios, strides, anchor_stride: Config's rpn_anchor_scales, rpn_anchor_ratios,
    backbone_strides and rpn_anchor_stride. Returns a read-only float32 [A, 4] array,
    cached per image size and settings (copy it before changing it).
    """
    return _normalized_anchors(
        int(image_shape[0]),
        int(image_shape[1]),
        tuple(sizes),
        tuple(ratios),
        tuple(int(s) for s in strides),
        int(anchor_stride),
    )


def anchors_for_config(config, image_shape=None):
    """get_anchors with a Config's settings; image_shape defaults to config.image_shape."""
    return get_anchors(
        config.image_shape if image_shape is None else image_shape,
        config.rpn_anchor_scales,
        config.rpn_anchor_ratios,
        config.backbone_strides,
        config.rpn_anchor_stride,
    )
