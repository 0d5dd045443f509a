"""Box geometry shared by the graph layers and the numpy molding code.

A box is (y1, x1, y2, x2), y counted down the rows. Two coordinate systems
are in use:
- pixels of an image, (y2, x2) just outside the box (a box of one pixel at
  row 3, column 5 is (3, 5, 4, 6));
- normalized, where (0, 0) is the centre of the first pixel and (1, 1) the
  centre of the last one, so (y2, x2) is inside the box. This is the
  convention of matterport's weights: its anchors, proposals and detections.

Deltas move a box onto another one: (dy, dx, dh, dw), the shift of the centre
in units of the box's own height and width, then the log of the size ratios.

The graph functions take [..., 4] float32 tensors (any leading axes) and
use keras.ops, imported inside them so that the numpy side (molding, anchors)
loads without Keras; the two coordinate conversions are numpy.
"""

import numpy as np

# log(dh) and log(dw) are capped at this value before exp(). Uncapped (matterport),
# an untrained or diverging head can give exp() = inf, and then y2 = y1 + height is
# -inf + inf = NaN, which crop_and_resize refuses. exp(20) ~ 5e8 keeps every size
# finite, and a box grown that much covers the whole image once clipped, as an
# infinite one would: results differ from matterport's only where its were NaN.
MAX_LOG_SCALE = 20.0


# ------------------------------------------------------- pixels <-> normalized
def _pixel_steps(image_size):
    """(offset, step) for [..., 4] boxes: normalized = (pixels - offset) / step.

    step is the distance between the first and the last pixel centre, per axis;
    the offset of 1 on the far corner turns an exclusive end into an inclusive one.
    """
    height, width = (int(v) for v in image_size[:2])
    step = np.array([height - 1, width - 1] * 2, dtype=np.float64)
    offset = np.array([0.0, 0.0, 1.0, 1.0])
    return offset, step


def boxes_to_normalized(boxes, image_size):
    """Pixel boxes [..., 4] of an image (height, width[, bands]) -> float32 normalized.

    Computed in float64 and rounded once: (0, 0, height, width) gives (0, 0, 1, 1).
    """
    offset, step = _pixel_steps(image_size)
    return ((np.asarray(boxes, dtype=np.float64) - offset) / step).astype(np.float32)


def boxes_to_pixels(boxes, image_size):
    """Normalized boxes [..., 4] -> int32 pixel boxes of an image (height, width[, bands]).

    The inverse of boxes_to_normalized, rounded to the nearest pixel (halves to even).
    """
    offset, step = _pixel_steps(image_size)
    return np.rint(np.asarray(boxes, dtype=np.float64) * step + offset).astype(np.int32)


# ---------------------------------------------------------------- graph math
def _corners_and_sizes(boxes):
    """[..., 4] boxes -> (top-left corners [..., 2], sizes [..., 2]), float32."""
    from keras import ops

    boxes = ops.cast(boxes, "float32")
    corners = boxes[..., :2]
    return corners, boxes[..., 2:] - corners


def _per_axis(function, pairs):
    """function applied to the y and the x halves of [..., 2] pairs separately.

    TensorFlow's vectorised exp and log can round the last elements of a tensor
    differently (by one ulp) from the others, so which element is last matters:
    applied to [...] tensors of one coordinate, as in matterport's graph and the
    models trained with it, the results are those, bit for bit.
    """
    from keras import ops

    return ops.stack([function(pairs[..., 0]), function(pairs[..., 1])], axis=-1)


def box_deltas(boxes, targets):
    """The deltas that move each box onto its target (the training encoding).

    boxes, targets: [..., 4] in the same units. Returns float32 [..., (dy, dx, dh, dw)],
    not yet divided by the std-devs of the deltas (callers do that).
    """
    from keras import ops

    corners, sizes = _corners_and_sizes(boxes)
    target_corners, target_sizes = _corners_and_sizes(targets)
    centres = corners + 0.5 * sizes
    target_centres = target_corners + 0.5 * target_sizes
    shift = (target_centres - centres) / sizes
    return ops.concatenate([shift, _per_axis(ops.log, target_sizes / sizes)], axis=-1)


def apply_deltas(boxes, deltas):
    """Move boxes by deltas (the inverse of box_deltas).

    boxes: [..., 4]; deltas: [..., (dy, dx, dh, dw)]. Returns float32 [..., 4].
    The centre moves in units of the old size; dh and dw are capped at MAX_LOG_SCALE.
    """
    from keras import ops

    corners, sizes = _corners_and_sizes(boxes)
    deltas = ops.cast(deltas, "float32")
    centres = corners + 0.5 * sizes
    centres = centres + deltas[..., :2] * sizes
    sizes = sizes * _per_axis(ops.exp, ops.minimum(deltas[..., 2:], MAX_LOG_SCALE))
    new_corners = centres - 0.5 * sizes
    return ops.concatenate([new_corners, new_corners + sizes], axis=-1)


def clip_to_window(boxes, window):
    """Every coordinate of boxes [..., 4] moved inside window (y1, x1, y2, x2).

    window: [4], or [..., 4] broadcastable against boxes (one window per image).
    Returns float32 [..., 4]; a box outside the window collapses onto its edge.
    """
    from keras import ops

    boxes = ops.cast(boxes, "float32")
    window = ops.cast(window, "float32")
    low = ops.concatenate([window[..., :2], window[..., :2]], axis=-1)
    high = ops.concatenate([window[..., 2:], window[..., 2:]], axis=-1)
    return ops.maximum(ops.minimum(boxes, high), low)


def pairwise_iou(boxes_a, boxes_b):
    """Intersection over union of every box of boxes_a with every box of boxes_b.

    boxes_a: [..., N, 4]; boxes_b: [..., M, 4] with the same leading axes (e.g. one
    per image). Returns float32 [..., N, M]; NaN where both boxes have no area.
    """
    from keras import ops

    boxes_a = ops.expand_dims(ops.cast(boxes_a, "float32"), -2)  # [..., N, 1, 4]
    boxes_b = ops.expand_dims(ops.cast(boxes_b, "float32"), -3)  # [..., 1, M, 4]
    overlap = ops.minimum(boxes_a[..., 2:], boxes_b[..., 2:]) - ops.maximum(
        boxes_a[..., :2], boxes_b[..., :2])
    overlap = ops.maximum(overlap, 0.0)  # (height, width) of the intersection
    intersection = overlap[..., 0] * overlap[..., 1]
    _, a_sizes = _corners_and_sizes(boxes_a)
    _, b_sizes = _corners_and_sizes(boxes_b)
    area_sum = a_sizes[..., 0] * a_sizes[..., 1] + b_sizes[..., 0] * b_sizes[..., 1]
    return intersection / (area_sum - intersection)
