"""Anchor boxes of the region proposal network (numpy only).

Reproduces matterport Mask_RCNN's anchors value for value and in the same
order, so that RPN outputs of matterport weights line up with them.

Coordinates: pixel anchors are (y1, x1, y2, x2) in image pixels of the
molded (resized and padded) image, y down the rows; (y2, x2) lies outside
the box. Normalized anchors use matterport's convention (see norm_boxes).
"""

import functools
import math

import numpy as np


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one feature map, in pixels.

    scales: anchor side(s) in pixels (scalar or 1-D), e.g. 32.
    ratios: width/height ratios, e.g. [0.5, 1, 2].
    shape: (height, width) of the feature map in cells.
    feature_stride: pixels of the image per feature-map cell.
    anchor_stride: place anchors on every `anchor_stride`-th cell.

    Returns float64 [cells * len(ratios) * len(scales), (y1, x1, y2, x2)].
    Order: cells row by row (y major, x minor); within a cell, ratios major
    and scales minor. Anchor centres are at cell index * feature_stride.
    A ratio r gives height = scale / sqrt(r) and width = scale * sqrt(r).
    """
    scales = np.asarray(scales, dtype=np.float64).ravel()
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    # every (ratio, scale) pair, ratio major
    pair_scales = np.tile(scales, ratios.size)
    pair_ratios = np.repeat(ratios, scales.size)
    heights = pair_scales / np.sqrt(pair_ratios)
    widths = pair_scales * np.sqrt(pair_ratios)

    centers_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    centers_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    grid_y, grid_x = np.meshgrid(centers_y, centers_x, indexing="ij")
    grid_y = grid_y.reshape(-1, 1)  # [cells, 1] against [pairs]
    grid_x = grid_x.reshape(-1, 1)

    boxes = np.stack(
        [
            grid_y - 0.5 * heights,
            grid_x - 0.5 * widths,
            grid_y + 0.5 * heights,
            grid_x + 0.5 * widths,
        ],
        axis=-1,
    )
    return boxes.reshape(-1, 4)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of all pyramid levels, in pixels.

    scales: one anchor side per level, e.g. (32, 64, 128, 256, 512).
    ratios: width/height ratios used on every level.
    feature_shapes: [(height, width)] of each level (compute_backbone_shapes).
    feature_strides: pixel stride of each level, e.g. [4, 8, 16, 32, 64].
    anchor_stride: see generate_anchors.

    Returns float64 [N, (y1, x1, y2, x2)]: level 0's anchors first, then
    level 1's, and so on.
    """
    levels = [
        generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
        for i in range(len(scales))
    ]
    return np.concatenate(levels, axis=0)


def compute_backbone_shapes(image_shape, strides):
    """(height, width) of each pyramid level: ceil(image side / stride).

    image_shape: (height, width[, bands]) of the molded image.
    Returns int array [len(strides), (height, width)].
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    return np.array(
        [[math.ceil(height / s), math.ceil(width / s)] for s in strides], dtype=np.int64
    )


def norm_boxes(boxes, shape):
    """Pixel boxes to normalized boxes (matterport's convention).

    boxes: [..., (y1, x1, y2, x2)] in pixels, (y2, x2) outside the box.
    shape: (height, width) of the image in pixels.
    Returns float32 [..., 4]: (y1, x1, y2 - 1, x2 - 1) / (h - 1, w - 1, h - 1, w - 1),
    so (0, 0, h, w) maps to (0, 0, 1, 1) and (y2, x2) is inside the box.
    """
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.divide(np.asarray(boxes) - shift, scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes back to int32 pixel boxes; inverse of norm_boxes
    with rounding to the nearest pixel.

    boxes: [..., (y1, x1, y2, x2)] normalized; shape: (height, width).
    """
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.around(np.multiply(boxes, scale) + shift).astype(np.int32)


@functools.lru_cache(maxsize=16)
def _cached_anchors(height, width, scales, ratios, strides, anchor_stride):
    shapes = compute_backbone_shapes((height, width), strides)
    pixels = generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    anchors = norm_boxes(pixels, (height, width))
    anchors.setflags(write=False)  # shared between callers
    return anchors


def get_anchors(image_shape, scales, ratios, strides, anchor_stride):
    """Normalized anchors of the whole pyramid for a molded image size.

    image_shape: (height, width[, bands]) of the molded image.
    scales, ratios, strides, anchor_stride: Config's rpn_anchor_scales,
    rpn_anchor_ratios, backbone_strides and rpn_anchor_stride.

    Returns a read-only float32 [N, (y1, x1, y2, x2)] array, cached per size
    and settings (copy it before changing it).
    """
    return _cached_anchors(
        int(image_shape[0]),
        int(image_shape[1]),
        tuple(scales),
        tuple(ratios),
        tuple(int(s) for s in strides),
        int(anchor_stride),
    )


def anchors_for_config(config, image_shape=None):
    """get_anchors with the settings of a Config (or any object with the same
    field names); image_shape defaults to config.image_shape."""
    if image_shape is None:
        image_shape = config.image_shape
    return get_anchors(
        image_shape,
        config.rpn_anchor_scales,
        config.rpn_anchor_ratios,
        config.backbone_strides,
        config.rpn_anchor_stride,
    )
