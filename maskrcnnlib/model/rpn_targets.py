"""RPN training targets: anchor matching (matterport's build_rpn_targets) in graph ops.

Written with keras.ops on the TensorFlow backend (plus two helpers from ``tfops``), so it
runs inside a ``tf.data`` map or a compiled graph, one image per call.
"""

from keras import ops

from maskrcnnlib.model import tfops
from maskrcnnlib.model.boxes import box_deltas, pairwise_iou

POSITIVE_IOU = 0.7
NEGATIVE_IOU = 0.3
CROWD_IOU = 0.001


def rpn_targets(anchors, gt_class_ids, gt_boxes, rpn_train_anchors_per_image,
                rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2), seed=None):
    """Anchor labels and box targets of one image.

    matterport's rules: an anchor with IoU >= 0.7 with a gt box is positive, below 0.3
    with every gt box negative (unless it touches a crowd box, IoU >= 0.001), otherwise
    neutral; the anchor(s) with the highest IoU for each gt box are positive whatever the
    IoU. Then at random: positives cut to T // 2, negatives to T - positives
    (T = rpn_train_anchors_per_image).

    Args:
        anchors: [A, 4] (y1, x1, y2, x2), same units as gt_boxes (matterport: pixels;
            its deltas are not the same in normalized units).
        gt_class_ids: [G] int; > 0 instance, < 0 crowd, 0 padding (ignored).
        gt_boxes: [G, 4] (y1, x1, y2, x2), rows of padding are ignored.
        rpn_train_anchors_per_image: T, int.
        rpn_bbox_std_dev: 4 floats the deltas are divided by.
        seed: None (stateful TF random) or a shape [2] int tensor for a reproducible,
            stateless draw (e.g. per tf.data element).

    Returns:
        rpn_match: [A] int32, 1 positive, -1 negative, 0 neutral.
        rpn_bbox: [T, 4] float32 (dy, dx, log(dh), log(dw)) / std_dev of the positive
            anchors, in anchor order, packed at the front; zero rows after them.
    """
    total = int(rpn_train_anchors_per_image)
    anchors = ops.cast(anchors, "float32")
    gt_boxes = ops.cast(gt_boxes, "float32")
    gt_class_ids = ops.cast(gt_class_ids, "int32")

    instance_boxes = tfops.boolean_mask(gt_boxes, gt_class_ids > 0)
    crowd_boxes = tfops.boolean_mask(gt_boxes, gt_class_ids < 0)
    iou = pairwise_iou(anchors, instance_boxes)  # [A, G']
    clear_of_crowds = ops.max(
        _with_column(pairwise_iou(anchors, crowd_boxes), 0.0), axis=1) < CROWD_IOU

    # A spare column (IoU -1, a unit box) keeps max/argmax defined without any gt.
    padded = _with_column(iou, -1.0)
    best_gt = ops.argmax(padded, axis=1)
    best_of_anchor = ops.max(padded, axis=1)  # [A]
    best_of_gt = ops.max(_with_row(iou, -1.0), axis=0)  # [G']
    # Every gt box claims the anchor(s) it overlaps most, however little.
    claimed = ops.any(iou == best_of_gt[None, :], axis=1)

    positive = ops.logical_or(claimed, best_of_anchor >= POSITIVE_IOU)
    negative = ops.logical_and(
        ops.logical_and(best_of_anchor < NEGATIVE_IOU, clear_of_crowds),
        ops.logical_not(positive))

    keys = tfops.uniform_keys(ops.shape(positive), seed)
    positive = _keep_random(positive, keys, total // 2, total // 2)
    positive_count = ops.sum(ops.cast(positive, "int32"))
    negative = _keep_random(negative, keys, total, total - positive_count)
    rpn_match = ops.where(positive, 1, ops.where(negative, -1, 0))

    unit = ops.convert_to_tensor([[0.0, 0.0, 1.0, 1.0]])
    matched_gt = ops.take(ops.concatenate([instance_boxes, unit], axis=0), best_gt, axis=0)
    safe_anchors = ops.where(positive[:, None], anchors, unit)
    safe_gt = ops.where(positive[:, None], matched_gt, unit)
    std = ops.convert_to_tensor(rpn_bbox_std_dev, "float32")
    deltas = box_deltas(safe_anchors, safe_gt) / std
    # Scatter positives to rows 0..P-1 in anchor order; others go to a spare row.
    row = ops.where(positive, ops.cumsum(ops.cast(positive, "int32")) - 1, total)
    rpn_bbox = ops.scatter(ops.expand_dims(row, 1), ops.where(positive[:, None], deltas, 0.0),
                           (total + 1, 4))[:total]
    return ops.cast(rpn_match, "int32"), rpn_bbox


def _with_column(matrix, value):
    """[N, M] -> [N, M + 1] with a last column of ``value``."""
    return ops.concatenate([matrix, ops.full((ops.shape(matrix)[0], 1), value)], axis=1)


def _with_row(matrix, value):
    """[N, M] -> [N + 1, M] with a last row of ``value``."""
    return ops.concatenate([matrix, ops.full((1, ops.shape(matrix)[1]), value)], axis=0)


def _keep_random(members, keys, max_k, limit):
    """``members`` [A] bool cut to at most ``limit`` (<= max_k) random members.

    Members are ranked by their ``keys`` [A] (uniform in [0, 1)).
    """
    size = ops.shape(members)[0]
    k = min(max_k, size) if isinstance(size, int) else ops.minimum(max_k, size)
    values, picked = ops.top_k(ops.where(members, keys, -1.0), k)
    chosen = ops.logical_and(values >= 0.0, ops.arange(k) < limit)
    target = ops.where(chosen, ops.cast(picked, "int32"), size)
    hits = ops.scatter(ops.expand_dims(target, 1), ops.ones_like(values), (size + 1,))
    return hits[:size] > 0
