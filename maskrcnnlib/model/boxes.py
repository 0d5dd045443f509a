"""Box arithmetic: IoU, delta encoding/decoding, clipping.

Two flavours with the same formulas as matterport Mask_RCNN:
numpy functions for data preparation and post-processing, and `*_ops`
functions written with keras.ops (float32) for use inside the model graph.

Boxes are (y1, x1, y2, x2), y down the rows, either in pixels ((y2, x2)
outside the box) or normalized; the formulas do not care which, as long as
both arguments use the same units. Deltas are (dy, dx, log(dh), log(dw)):
the centre shift in units of the box size and the log of the size ratio.
"""

import numpy as np


# ----------------------------------------------------------------- numpy
def _areas(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box against many.

    box: [4]; boxes: [N, 4]; box_area: area of `box`; boxes_area: [N].
    Areas are passed in so callers can compute them once.
    Returns [N] IoU (nan where both boxes have zero area).
    """
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union


def compute_overlaps(boxes1, boxes2):
    """IoU of every pair of boxes.

    boxes1: [N1, 4]; boxes2: [N2, 4].
    Returns float64 [N1, N2] with overlaps[i, j] = IoU(boxes1[i], boxes2[j]).
    """
    boxes1 = np.asarray(boxes1)
    boxes2 = np.asarray(boxes2)
    b1 = boxes1[:, None, :]  # [N1, 1, 4] against [1, N2, 4]
    b2 = boxes2[None, :, :]
    y1 = np.maximum(b2[..., 0], b1[..., 0])
    y2 = np.minimum(b2[..., 2], b1[..., 2])
    x1 = np.maximum(b2[..., 1], b1[..., 1])
    x2 = np.minimum(b2[..., 3], b1[..., 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = _areas(b2) + _areas(b1) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        overlaps = intersection / union
    return overlaps.astype(np.float64).reshape(boxes1.shape[0], boxes2.shape[0])


def box_refinement(box, gt_box):
    """Deltas that move `box` onto `gt_box` (the encoding of training targets).

    box, gt_box: [N, (y1, x1, y2, x2)]. Returns float32 [N, (dy, dx, dh, dw)]
    with dy = (gt_cy - cy) / h, dx = (gt_cx - cx) / w, dh = log(gt_h / h),
    dw = log(gt_w / w). Not divided by the std-devs; callers do that.
    """
    box = np.asarray(box).astype(np.float32)
    gt_box = np.asarray(gt_box).astype(np.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width

    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width

    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1)


# log(dh) and log(dw) are capped here before exp(). matterport does not cap, so a
# huge delta gives an infinite size and then y2 = y1 + height = -inf + inf = NaN
# (crop_and_resize then fails on "boxes not finite"). exp(20) ~ 5e8 keeps every
# size finite, and a box grown that much covers the whole image, as matterport's
# would once clipped: results differ from matterport only where its were NaN.
MAX_LOG_SCALE = 20.0


def apply_box_deltas(boxes, deltas):
    """Move boxes by deltas (the decoding; inverse of box_refinement).

    boxes: [N, (y1, x1, y2, x2)]; deltas: [N, (dy, dx, log(dh), log(dw))].
    Returns float32 [N, (y1, x1, y2, x2)]. Every step is rounded to
    float32, as matterport's in-place float32 updates do. log(dh), log(dw) are
    capped at MAX_LOG_SCALE.
    """
    f32 = np.float32
    boxes = np.asarray(boxes).astype(f32)
    deltas = np.asarray(deltas)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height
    center_x = boxes[:, 1] + 0.5 * width
    # the centre moves in units of the old size, before the size changes
    center_y = (center_y + deltas[:, 0] * height).astype(f32)
    center_x = (center_x + deltas[:, 1] * width).astype(f32)
    height = (height * np.exp(np.minimum(deltas[:, 2], MAX_LOG_SCALE))).astype(f32)
    width = (width * np.exp(np.minimum(deltas[:, 3], MAX_LOG_SCALE))).astype(f32)
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def clip_boxes(boxes, window):
    """Clip boxes to a window.

    boxes: [..., (y1, x1, y2, x2)]; window: (y1, x1, y2, x2) in the same units.
    Returns boxes of the same shape with every corner inside the window.
    """
    boxes = np.asarray(boxes)
    wy1, wx1, wy2, wx2 = window
    low = np.array([wy1, wx1, wy1, wx1])
    high = np.array([wy2, wx2, wy2, wx2])
    return np.maximum(np.minimum(boxes, high.astype(boxes.dtype)), low.astype(boxes.dtype))


# ------------------------------------------------------------ keras.ops
def _split4(tensor):
    """The four coordinates of [..., 4] as four [...] tensors."""
    return [tensor[..., i] for i in range(4)]


def apply_box_deltas_ops(boxes, deltas):
    """keras.ops apply_box_deltas. boxes, deltas: [..., 4] float32 tensors.

    Returns float32 [..., (y1, x1, y2, x2)].
    """
    from keras import ops

    boxes = ops.cast(boxes, "float32")
    deltas = ops.cast(deltas, "float32")
    by1, bx1, by2, bx2 = _split4(boxes)
    dy, dx, dh, dw = _split4(deltas)
    height = by2 - by1
    width = bx2 - bx1
    center_y = by1 + 0.5 * height
    center_x = bx1 + 0.5 * width
    center_y = center_y + dy * height
    center_x = center_x + dx * width
    height = height * ops.exp(ops.minimum(dh, MAX_LOG_SCALE))
    width = width * ops.exp(ops.minimum(dw, MAX_LOG_SCALE))
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return ops.stack([y1, x1, y1 + height, x1 + width], axis=-1)


def clip_boxes_ops(boxes, window):
    """keras.ops clip_boxes. boxes: [..., 4]; window: [4] (y1, x1, y2, x2),
    or [..., 4] broadcastable against boxes. Returns float32 [..., 4]."""
    from keras import ops

    boxes = ops.cast(boxes, "float32")
    window = ops.cast(window, "float32")
    wy1, wx1, wy2, wx2 = [window[..., i : i + 1] for i in range(4)]
    y1, x1, y2, x2 = [boxes[..., i : i + 1] for i in range(4)]
    y1 = ops.maximum(ops.minimum(y1, wy2), wy1)
    x1 = ops.maximum(ops.minimum(x1, wx2), wx1)
    y2 = ops.maximum(ops.minimum(y2, wy2), wy1)
    x2 = ops.maximum(ops.minimum(x2, wx2), wx1)
    return ops.concatenate([y1, x1, y2, x2], axis=-1)


def box_refinement_ops(box, gt_box):
    """keras.ops box_refinement. box, gt_box: [..., 4]. Returns float32
    [..., (dy, dx, log(dh), log(dw))]."""
    from keras import ops

    by1, bx1, by2, bx2 = _split4(ops.cast(box, "float32"))
    gy1, gx1, gy2, gx2 = _split4(ops.cast(gt_box, "float32"))
    height = by2 - by1
    width = bx2 - bx1
    center_y = by1 + 0.5 * height
    center_x = bx1 + 0.5 * width
    gt_height = gy2 - gy1
    gt_width = gx2 - gx1
    gt_center_y = gy1 + 0.5 * gt_height
    gt_center_x = gx1 + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = ops.log(gt_height / height)
    dw = ops.log(gt_width / width)
    return ops.stack([dy, dx, dh, dw], axis=-1)


def overlaps_ops(boxes1, boxes2):
    """keras.ops IoU matrix. boxes1: [N1, 4]; boxes2: [N2, 4].

    Returns float32 [N1, N2] (nan where both boxes have zero area, as
    matterport's overlaps_graph).
    """
    from keras import ops

    b1 = ops.expand_dims(ops.cast(boxes1, "float32"), 1)  # [N1, 1, 4]
    b2 = ops.expand_dims(ops.cast(boxes2, "float32"), 0)  # [1, N2, 4]
    b1y1, b1x1, b1y2, b1x2 = _split4(b1)
    b2y1, b2x1, b2y2, b2x2 = _split4(b2)
    y1 = ops.maximum(b1y1, b2y1)
    x1 = ops.maximum(b1x1, b2x1)
    y2 = ops.minimum(b1y2, b2y2)
    x2 = ops.minimum(b1x2, b2x2)
    intersection = ops.maximum(x2 - x1, 0.0) * ops.maximum(y2 - y1, 0.0)
    b1_area = (b1y2 - b1y1) * (b1x2 - b1x1)
    b2_area = (b2y2 - b2y1) * (b2x2 - b2x1)
    union = b1_area + b2_area - intersection
    return intersection / union
