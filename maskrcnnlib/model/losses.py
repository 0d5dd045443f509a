"""The five Mask R-CNN losses (matterport's definitions), written with keras.ops.

Every loss is a float32 scalar: a mean over the entries that take part (anchors or ROIs
picked by their match / class), or 0 when none take part. Means are computed as masked
sums over fixed shapes, so nothing here has a data-dependent shape.

Under tf.distribute with several replicas, each replica sees part of the global batch;
the count that divides its sum is then the count over all replicas, so each replica's
loss is its share of the loss of the whole batch and the shares add up to it (the
gradients, summed over replicas, are those of one device with the whole batch).
"""

import keras
from keras import ops

# tf.keras's backend epsilon, used by matterport's binary cross-entropy.
_EPSILON = 1e-7


def smooth_l1(y_true, y_pred):
    """Element-wise smooth L1: 0.5 d^2 where |d| < 1, else |d| - 0.5 (d = y_true - y_pred)."""
    error = ops.abs(y_true - y_pred)
    return ops.where(error < 1.0, 0.5 * ops.square(error), error - 0.5)


def _count_over_replicas(count):
    """The sum of `count` over the replicas in sync (itself without tf.distribute)."""
    if keras.backend.backend() != "tensorflow":
        return count
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return count
    return context.all_reduce(tf.distribute.ReduceOp.SUM, count)


def _share(total, count):
    """total / count over all replicas, or 0 when nothing takes part anywhere."""
    count = _count_over_replicas(count)
    return ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)


def _masked_mean(values, mask):
    """Mean of ``values`` where ``mask`` (broadcast to values' shape) is True; 0 if none."""
    mask = ops.broadcast_to(mask, ops.shape(values))
    total = ops.sum(ops.where(mask, values, 0.0))
    return _share(total, ops.sum(ops.cast(mask, "float32")))


def _squeeze_match(rpn_match):
    """rpn_match [B, A, 1] or [B, A] -> [B, A] int32."""
    if len(rpn_match.shape) == 3:
        rpn_match = rpn_match[..., 0]
    return ops.cast(rpn_match, "int32")


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Cross-entropy of the RPN's anchor classifier over positive and negative anchors.

    rpn_match: [B, A, 1] or [B, A], 1 positive, -1 negative, 0 neutral (ignored).
    rpn_class_logits: [B, A, 2] (background, foreground) logits.
    """
    rpn_match = _squeeze_match(rpn_match)
    is_object = ops.cast(rpn_match > 0, "int32")  # label 1 = foreground
    loss = ops.sparse_categorical_crossentropy(
        is_object, ops.cast(rpn_class_logits, "float32"), from_logits=True)
    return _masked_mean(loss, rpn_match != 0)


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Smooth L1 between the RPN's deltas and their targets, over positive anchors.

    target_bbox: [B, M, 4] targets of each image's positive anchors packed at the front
        (the k-th positive anchor in anchor order owns row k), zero padded.
    rpn_match: [B, A, 1] or [B, A]; rpn_bbox: [B, A, 4] predicted deltas.
    """
    positive = _squeeze_match(rpn_match) == 1
    rank = ops.cumsum(ops.cast(positive, "int32"), axis=1) - 1
    rank = ops.clip(rank, 0, ops.shape(target_bbox)[1] - 1)
    index = ops.broadcast_to(rank[..., None], ops.shape(rpn_bbox))
    targets = ops.take_along_axis(ops.cast(target_bbox, "float32"), index, axis=1)
    loss = smooth_l1(targets, ops.cast(rpn_bbox, "float32"))
    return _masked_mean(loss, positive[..., None])


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """Cross-entropy of the classifier head over all ROIs (padding counts as background).

    Losses of ROIs whose predicted class is not active in the dataset of the (first)
    image are dropped, and the mean is over the remaining ROIs (matterport).
    target_class_ids: [B, R] int; pred_class_logits: [B, R, C];
    active_class_ids: [B, C] 1/0 (only row 0 is used, as matterport).
    """
    logits = ops.cast(pred_class_logits, "float32")
    weight = ops.take(ops.cast(active_class_ids[0], "float32"),
                      ops.argmax(logits, axis=-1))  # 1 where the guess is an active class
    loss = ops.sparse_categorical_crossentropy(
        ops.cast(target_class_ids, "int32"), logits, from_logits=True)
    return _share(ops.sum(loss * weight), ops.sum(weight))


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Smooth L1 of the class-specific box deltas over positive ROIs (class id > 0).

    target_bbox: [B, R, 4]; target_class_ids: [B, R] int; pred_bbox: [B, R, C, 4].
    """
    class_ids = ops.cast(target_class_ids, "int32")
    index = ops.broadcast_to(class_ids[..., None, None], ops.shape(pred_bbox)[:2] + (1, 4))
    pred = ops.take_along_axis(ops.cast(pred_bbox, "float32"), index, axis=2)[:, :, 0]
    loss = smooth_l1(ops.cast(target_bbox, "float32"), pred)
    return _masked_mean(loss, (class_ids > 0)[..., None])


def binary_crossentropy(target, output):
    """tf.keras 2 backend binary cross-entropy on probabilities (what matterport used)."""
    output = ops.clip(output, _EPSILON, 1.0 - _EPSILON)
    return -(target * ops.log(output + _EPSILON)
             + (1.0 - target) * ops.log(1.0 - output + _EPSILON))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Binary cross-entropy of the class-specific mask over positive ROIs' pixels.

    target_masks: [B, R, h, w] 0/1; target_class_ids: [B, R] int;
    pred_masks: [B, R, h, w, C] probabilities (sigmoid output).
    """
    class_ids = ops.cast(target_class_ids, "int32")
    shape = ops.shape(pred_masks)
    index = ops.broadcast_to(class_ids[:, :, None, None, None], tuple(shape[:4]) + (1,))
    pred = ops.take_along_axis(ops.cast(pred_masks, "float32"), index, axis=4)[..., 0]
    loss = binary_crossentropy(ops.cast(target_masks, "float32"), pred)
    return _masked_mean(loss, (class_ids > 0)[:, :, None, None])


def training_losses(outputs):
    """The five losses by name (rpn_class, rpn_bbox, mrcnn_class, mrcnn_bbox, mrcnn_mask)
    from the outputs of maskrcnnlib.model.maskrcnn.build_training_graph (a dict).

    The mask branch ran on the positive ROIs only, so the mask loss takes their rows
    (target_masks, mask_class_ids, mrcnn_mask), not target_class_ids.
    """
    return {
        "rpn_class": rpn_class_loss(outputs["rpn_match"], outputs["rpn_class_logits"]),
        "rpn_bbox": rpn_bbox_loss(outputs["rpn_bbox_targets"], outputs["rpn_match"],
                                  outputs["rpn_bbox"]),
        "mrcnn_class": mrcnn_class_loss(outputs["target_class_ids"],
                                        outputs["mrcnn_class_logits"],
                                        outputs["active_class_ids"]),
        "mrcnn_bbox": mrcnn_bbox_loss(outputs["target_bbox"], outputs["target_class_ids"],
                                      outputs["mrcnn_bbox"]),
        "mrcnn_mask": mrcnn_mask_loss(outputs["target_masks"], outputs["mask_class_ids"],
                                      outputs["mrcnn_mask"]),
    }
