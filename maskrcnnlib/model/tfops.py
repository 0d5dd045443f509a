"""The TensorFlow-only operations of the model, kept in one module.

Everything else under ``maskrcnnlib.model`` is written with ``keras.ops``. What keras.ops
lacks lives here: non-max suppression, crop-and-resize, the data-dependent split of ROIs
over pyramid levels, compaction of rows by a mask, a per-image gather of rows that moves
no more than the rows it picks, and random numbers that also work inside a ``tf.data``
map.

Boxes are ``(y1, x1, y2, x2)``; any coordinate system works as long as it is consistent
(the model uses normalized coordinates, see ``maskrcnnlib.model.proposals``).

Note: ``crop_and_resize``, ``dynamic_partition`` and ``boolean_mask`` have no XLA kernels,
so models using these functions must be compiled with ``jit_compile=False``.
"""

import tensorflow as tf

# Scores equal to -inf are excluded from NMS by passing this as score_threshold
# (NonMaxSuppressionV4 keeps boxes whose score is strictly greater than it).
_LOWEST_SCORE = float(tf.float32.min)


def nms_padded(boxes, scores, max_output, iou_threshold, score_threshold=float("-inf")):
    """Greedy non-max suppression of one image, padded to a fixed length.

    Same kernel as ``tf.image.non_max_suppression`` (NonMaxSuppressionV3/V4 share it), so
    kept indices and their order are identical to matterport's.

    Args:
        boxes: [N, 4] float32 (y1, x1, y2, x2).
        scores: [N] float32.
        max_output: int, the most boxes to keep.
        iou_threshold: float, boxes overlapping a kept box with IoU > this are dropped.
        score_threshold: float, only boxes with score > this are considered.

    Returns:
        (indices, count): indices [max_output] int32 into ``boxes`` in descending score
        order (ties: lower index first), entries from ``count`` on are 0 (padding);
        count: scalar int32, the number of kept boxes.
    """
    indices, count = tf.raw_ops.NonMaxSuppressionV4(
        boxes=tf.cast(boxes, tf.float32),
        scores=tf.cast(scores, tf.float32),
        max_output_size=tf.constant(int(max_output), tf.int32),
        iou_threshold=tf.constant(float(iou_threshold), tf.float32),
        score_threshold=tf.constant(float(score_threshold), tf.float32),
        pad_to_max_output_size=True,
    )
    indices = tf.ensure_shape(indices, [int(max_output)])
    return indices, count


def batched_nms_padded(boxes, scores, max_output, iou_threshold, exclude_neg_inf=False):
    """``nms_padded`` on each row of a batch.

    Args:
        boxes: [B, N, 4] float32 (y1, x1, y2, x2).
        scores: [B, N] float32.
        max_output: int.
        iou_threshold: float.
        exclude_neg_inf: if True, boxes whose score is -inf take no part at all (a way to
            run NMS on a subset without changing the indices).

    Returns:
        (indices [B, max_output] int32, 0 padded; counts [B] int32).
    """
    max_output = int(max_output)
    score_threshold = _LOWEST_SCORE if exclude_neg_inf else float("-inf")

    def one(args):
        return nms_padded(args[0], args[1], max_output, iou_threshold, score_threshold)

    indices, counts = tf.map_fn(
        one,
        (tf.cast(boxes, tf.float32), tf.cast(scores, tf.float32)),
        fn_output_signature=(
            tf.TensorSpec([max_output], tf.int32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    return indices, counts


def crop_and_resize(features, boxes, box_indices, crop_size):
    """Bilinear crop-and-resize (``tf.image.crop_and_resize`` semantics).

    Args:
        features: [N_images, H, W, C] float.
        boxes: [K, 4] float32 normalized (y1, x1, y2, x2); y=0 is the centre of the first
            row, y=1 the centre of the last row (matterport's norm_boxes convention).
        box_indices: [K] int32, which image each box is cut from.
        crop_size: (crop_height, crop_width) ints.

    Returns:
        [K, crop_height, crop_width, C] float32; samples outside the image are 0.
    """
    return tf.image.crop_and_resize(
        features,
        tf.cast(boxes, tf.float32),
        tf.cast(box_indices, tf.int32),
        [int(crop_size[0]), int(crop_size[1])],
        method="bilinear",
    )


def pyramid_crop_and_resize(feature_maps, boxes, box_indices, levels, crop_size):
    """Crops each box from the feature map its level names; output in input order.

    Args:
        feature_maps: list of L tensors [N_images, H_l, W_l, C] (same C).
        boxes: [K, 4] float32 normalized (y1, x1, y2, x2).
        box_indices: [K] int32, image of each box.
        levels: [K] int32 in [0, L), index into ``feature_maps`` of each box.
        crop_size: (crop_height, crop_width).

    Returns:
        [K, crop_height, crop_width, C], row k cropped from feature_maps[levels[k]].
    """
    num_levels = len(feature_maps)
    levels = tf.cast(levels, tf.int32)
    positions = tf.range(tf.shape(boxes)[0])
    level_boxes = tf.dynamic_partition(boxes, levels, num_levels)
    level_images = tf.dynamic_partition(tf.cast(box_indices, tf.int32), levels, num_levels)
    level_positions = tf.dynamic_partition(positions, levels, num_levels)
    pooled = [
        crop_and_resize(feature_maps[i], level_boxes[i], level_images[i], crop_size)
        for i in range(num_levels)
    ]
    # Each position appears in exactly one level, so stitching restores input order.
    # the multi-threaded DynamicStitch (same result): 1000 ROIs of 7x7x256 take
    # 10 ms single-threaded on 2 cores, 7.7 ms so
    return tf.raw_ops.ParallelDynamicStitch(indices=level_positions, data=pooled)


def gather_rows(x, index):
    """Per image, the rows of ``x`` that ``index`` names.

    Args:
        x: [B, N, ...]; index: [B, K] int.
    Returns:
        [B, K, ...] with out[b, k] = x[b, index[b, k]].

    ``keras.ops.take_along_axis(x, index[..., None], axis=1)`` gives the same, but on
    TensorFlow it broadcasts the index and transposes all of ``x`` (all anchors of
    the image, in the proposal layer) before and the result after.
    """
    return tf.gather(x, tf.cast(index, tf.int32), batch_dims=1)


def boolean_mask(x, mask):
    """Rows of ``x`` where ``mask`` is True (dynamic length).

    Args:
        x: [N, ...]; mask: [N] bool.
    Returns:
        [M, ...] with M = number of True entries, order preserved.
    """
    return tf.boolean_mask(x, mask)


def uniform_keys(shape, seed=None):
    """Uniform random floats in [0, 1), usable in graphs and ``tf.data`` maps.

    Args:
        shape: output shape (ints or an int tensor).
        seed: None for TF's stateful generator (follows ``tf.random.set_seed``), or a
            shape [2] int tensor/tuple for a stateless, reproducible draw.
    Returns:
        float32 tensor of ``shape``.
    """
    if seed is None:
        return tf.random.uniform(shape, dtype=tf.float32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)
