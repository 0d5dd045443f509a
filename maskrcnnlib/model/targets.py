"""Training targets of the second stage (matterport's DetectionTargetLayer)."""

import keras
from keras import ops

from maskrcnnlib.model import tfops
from maskrcnnlib.model.boxes import box_deltas, pairwise_iou


class DetectionTargetLayer(keras.layers.Layer):
    """Samples proposals and builds class, box and mask targets for them.

    matterport's rules: zero rows of proposals and gt boxes are padding; gt with a
    negative class id are crowds (proposals touching a crowd, IoU >= 0.001, are never
    negatives); gt with class id 0 are ignored. Positives: max IoU with a gt >= 0.5,
    at most int(train_rois_per_image * roi_positive_ratio) of them, picked at random.
    Negatives: max IoU < 0.5, int(count_pos / ratio) - count_pos of them at random (so no
    positives means no ROIs at all). Each positive takes the gt it overlaps most.

    Inputs (a list):
        proposals: [B, N, 4] float32 normalized (y1, x1, y2, x2), zero padded.
        gt_class_ids: [B, G] int class ids (negative = crowd, 0 = padding).
        gt_boxes: [B, G, 4] float32 normalized (y1, x1, y2, x2), zero padded.
        gt_masks: [B, h, w, G] bool/float masks: full image size, or mini masks (masks
            cut to their gt box and resized) when ``use_mini_mask``.

    Outputs (a list), T = train_rois_per_image, rows: positives, then negatives, then zeros:
        rois: [B, T, 4] float32 normalized.
        target_class_ids: [B, T] int32 (0 for negatives and padding).
        target_deltas: [B, T, 4] float32 (dy, dx, log(dh), log(dw)) / bbox_std_dev, zero
            except positives.
        target_mask: [B, T, mask_h, mask_w] float32 0/1, zero except positives.

    Sampling draws from ``keras.random`` with a SeedGenerator built from ``seed``
    (None: not reproducible), or, when a fifth input sample_keys [B, 2] int32 is
    given (the training pipeline's per-sample keys), from stateless draws keyed by
    each image's key: an image is sampled the same way whatever else shares its
    batch or its replica.
    """

    def __init__(self, train_rois_per_image, roi_positive_ratio,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), mask_shape=(28, 28),
                 use_mini_mask=True, seed=None, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision
        self.train_rois_per_image = int(train_rois_per_image)
        self.roi_positive_ratio = float(roi_positive_ratio)
        self.bbox_std_dev = tuple(float(v) for v in bbox_std_dev)
        self.mask_shape = (int(mask_shape[0]), int(mask_shape[1]))
        self.use_mini_mask = bool(use_mini_mask)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs[:4]
        sample_keys = inputs[4] if len(inputs) > 4 else None
        proposals = ops.cast(proposals, "float32")
        gt_boxes = ops.cast(gt_boxes, "float32")
        gt_class_ids = ops.cast(gt_class_ids, "int32")
        positive, negative, assignment = self._match(proposals, gt_class_ids, gt_boxes)
        index, is_positive, is_valid = self._sample(positive, negative, sample_keys)

        rois = ops.take_along_axis(proposals, index[..., None], axis=1)
        rois = ops.where(is_valid[..., None], rois, 0.0)
        gt_index = ops.take_along_axis(assignment, index, axis=1)  # [B, T]
        roi_gt_boxes = ops.take_along_axis(gt_boxes, gt_index[..., None], axis=1)
        class_ids = ops.take_along_axis(gt_class_ids, gt_index, axis=1)
        class_ids = ops.where(is_positive, class_ids, 0)

        # Non-positive rows get a harmless unit box so no NaN reaches the ops below.
        unit = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0])
        pos_rois = ops.where(is_positive[..., None], rois, unit)
        pos_gt_boxes = ops.where(is_positive[..., None], roi_gt_boxes, unit)
        std = ops.convert_to_tensor(self.bbox_std_dev, "float32")
        deltas = box_deltas(pos_rois, pos_gt_boxes) / std
        deltas = ops.where(is_positive[..., None], deltas, 0.0)

        masks = self._mask_targets(pos_rois, pos_gt_boxes, gt_index, gt_masks)
        masks = ops.where(is_positive[..., None, None], masks, 0.0)
        return [ops.stop_gradient(x) for x in (rois, class_ids, deltas, masks)]

    def _match(self, proposals, gt_class_ids, gt_boxes):
        """positive, negative [B, N] bool and best instance gt index [B, N] int32."""
        proposal_valid = ops.sum(ops.abs(proposals), axis=-1) > 0
        gt_valid = ops.sum(ops.abs(gt_boxes), axis=-1) > 0
        is_crowd = ops.logical_and(gt_valid, gt_class_ids < 0)[:, None, :]
        is_instance = ops.logical_and(gt_valid, gt_class_ids > 0)[:, None, :]
        iou = pairwise_iou(proposals, gt_boxes)  # [B, N, G]
        instance_iou = ops.where(is_instance, iou, -1.0)
        best = ops.max(instance_iou, axis=-1)
        clear_of_crowds = ops.max(ops.where(is_crowd, iou, 0.0), axis=-1) < 0.001
        positive = ops.logical_and(proposal_valid, best >= 0.5)
        negative = ops.logical_and(proposal_valid, ops.logical_and(best < 0.5, clear_of_crowds))
        assignment = ops.cast(ops.argmax(instance_iou, axis=-1), "int32")
        return positive, negative, assignment

    def _random_keys(self, shape, sample_keys):
        """Uniform [B, N] draws: per image from its key, or from the seed generator."""
        if sample_keys is None:
            return keras.random.uniform(shape, seed=self.seed_generator)
        import tensorflow as tf  # stateless per-row draws: the TensorFlow backend

        return tf.map_fn(lambda key: tf.random.stateless_uniform(shape[1:], seed=key),
                         tf.cast(sample_keys, tf.int32), fn_output_signature=tf.float32)

    def _sample(self, positive, negative, sample_keys=None):
        """Random picks, packed: index [B, T] int32, is_positive and is_valid [B, T] bool."""
        rois = self.train_rois_per_image
        num = positive.shape[1] if positive.shape[1] is not None else ops.shape(positive)[1]
        max_positive = int(rois * self.roi_positive_ratio)
        # A random rank among the members of each set: top_k of uniform keys.
        keys = self._random_keys(ops.shape(positive), sample_keys)
        if isinstance(num, int):
            k_pos, k_neg = max(min(max_positive, num), 1), min(rois, num)
        else:
            k_pos = ops.maximum(ops.minimum(max_positive, num), 1)
            k_neg = ops.minimum(rois, num)
        _, pos_order = ops.top_k(ops.where(positive, keys, -1.0), k_pos)
        _, neg_order = ops.top_k(ops.where(negative, keys, -1.0), k_neg)

        pos_count = ops.minimum(ops.sum(ops.cast(positive, "int32"), axis=1), max_positive)
        # Rows in all for pos_count positives at the wanted ratio, truncated; the rest
        # of them negatives. Computed in float32 as the original models were trained.
        rows_at_ratio = ops.cast(ops.cast(pos_count, "float32") * (1.0 / self.roi_positive_ratio),
                                 "int32")
        neg_wanted = rows_at_ratio - pos_count
        neg_count = ops.minimum(ops.sum(ops.cast(negative, "int32"), axis=1), neg_wanted)

        slot = ops.arange(rois, dtype="int32")[None, :]
        pos_count, neg_count = pos_count[:, None], neg_count[:, None]
        is_positive = slot < pos_count
        is_valid = slot < pos_count + neg_count
        batch_slot = ops.zeros_like(pos_count) + slot  # [B, T]
        pos_pick = ops.take_along_axis(pos_order, ops.minimum(batch_slot, k_pos - 1), axis=1)
        neg_slot = ops.clip(batch_slot - pos_count, 0, k_neg - 1)
        neg_pick = ops.take_along_axis(neg_order, neg_slot, axis=1)
        index = ops.where(is_positive, pos_pick, neg_pick)
        return ops.cast(index, "int32"), is_positive, is_valid

    def _mask_targets(self, rois, roi_gt_boxes, gt_index, gt_masks):
        """[B, T, mask_h, mask_w] float32 0/1 crops of each row's gt mask."""
        boxes = rois
        if self.use_mini_mask:
            # A mini mask spans its gt box: express the ROI relative to that box.
            origin = roi_gt_boxes[..., :2]
            extent = roi_gt_boxes[..., 2:] - origin
            boxes = (rois - ops.tile(origin, (1, 1, 2))) / ops.tile(extent, (1, 1, 2))
        batch, rows = ops.shape(gt_index)[0], ops.shape(gt_index)[1]
        num_gt = ops.shape(gt_masks)[3]
        images = ops.transpose(ops.cast(gt_masks, "float32"), (0, 3, 1, 2))
        images = ops.reshape(images, (-1, ops.shape(gt_masks)[1], ops.shape(gt_masks)[2], 1))
        image_index = ops.arange(batch, dtype="int32")[:, None] * num_gt + gt_index
        crops = tfops.crop_and_resize(images, ops.reshape(boxes, (-1, 4)),
                                      ops.reshape(image_index, (-1,)), self.mask_shape)
        crops = ops.reshape(crops, (batch, rows, self.mask_shape[0], self.mask_shape[1]))
        return ops.round(crops)

    def compute_output_shape(self, input_shape):
        batch, rois = input_shape[0][0], self.train_rois_per_image
        return [(batch, rois, 4), (batch, rois), (batch, rois, 4),
                (batch, rois) + self.mask_shape]

    def compute_output_spec(self, inputs):
        shapes = self.compute_output_shape([x.shape for x in inputs[:4]])
        dtypes = ["float32", "int32", "float32", "float32"]
        return [keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes)]

    def get_config(self):
        config = super().get_config()
        config.update(
            train_rois_per_image=self.train_rois_per_image,
            roi_positive_ratio=self.roi_positive_ratio,
            bbox_std_dev=list(self.bbox_std_dev),
            mask_shape=list(self.mask_shape),
            use_mini_mask=self.use_mini_mask,
            seed=self.seed,
        )
        return config

