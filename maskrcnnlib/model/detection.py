"""Final detections from the classifier head (matterport's DetectionLayer)."""

import keras
from keras import ops

from maskrcnnlib.model import tfops
from maskrcnnlib.model.boxes import apply_deltas, clip_to_window
from maskrcnnlib.model.image_meta import IMAGE_SHAPE, WINDOW


def normalized_window(image_meta):
    """The unpadded part of each molded image as a normalized box, [B, meta] -> [B, 4].

    The window is stored in pixels with exclusive ends; this is the mapping of
    boxes.boxes_to_normalized, in graph ops: a corner moves from the first pixel centre
    (0) to the last one (1) in steps of (size - 1), an end moving one pixel back first.
    Every image of a batch is molded to one size, so the first image's shape serves all.
    """
    image_meta = ops.cast(image_meta, "float32")
    last_centre = image_meta[0, IMAGE_SHAPE][:2] - 1.0  # (h - 1, w - 1)
    window = image_meta[:, WINDOW]
    start = window[:, :2] / last_centre
    end = (window[:, 2:] - 1.0) / last_centre
    return ops.concatenate([start, end], axis=-1)


class DetectionLayer(keras.layers.Layer):
    """Refines, filters and de-duplicates classified ROIs (matterport's refine_detections).

    Per ROI: best class and its score, class-specific deltas * ``bbox_std_dev`` applied,
    clipped to the image window. ROIs of class 0 (background) or with score below
    ``min_confidence`` are dropped; NMS at ``nms_threshold`` runs per class; the
    ``max_instances`` best scores are kept (ties: lower ROI index first).

    Inputs (a list):
        rois: [B, N, 4] float32 normalized (y1, x1, y2, x2).
        mrcnn_class: [B, N, num_classes] float32 class probabilities (softmax output).
        mrcnn_bbox: [B, N, num_classes, 4] float32 deltas (dy, dx, log(dh), log(dw)).
        image_meta: [B, meta_length] float32, matterport layout.

    Output:
        [B, max_instances, 6] float32 rows (y1, x1, y2, x2, class_id, score), boxes
        normalized, sorted by descending score; rows after the detections are all zero.
    """

    def __init__(self, max_instances, min_confidence, nms_threshold,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = tuple(float(v) for v in bbox_std_dev)

    def call(self, inputs):
        rois, probs, deltas, image_meta = inputs
        rois = ops.cast(rois, "float32")
        probs = ops.cast(probs, "float32")
        deltas = ops.cast(deltas, "float32")

        class_ids = ops.cast(ops.argmax(probs, axis=-1), "int32")  # [B, N]
        scores = ops.take_along_axis(probs, class_ids[..., None], axis=-1)[..., 0]
        specific = ops.take_along_axis(deltas, class_ids[..., None, None], axis=2)[:, :, 0]
        std = ops.convert_to_tensor(self.bbox_std_dev, "float32")
        boxes = apply_deltas(rois, specific * std)
        boxes = clip_to_window(boxes, normalized_window(image_meta)[:, None, :])

        keep = class_ids > 0
        if self.min_confidence:
            keep = ops.logical_and(keep, scores >= self.min_confidence)
        keep = self._per_class_nms(boxes, scores, class_ids, keep, probs.shape[-1])

        ranked = ops.where(keep, scores, float("-inf"))
        if rois.shape[1] is None or rois.shape[1] < self.max_instances:
            # Pad so that top_k always has max_instances candidates; padding is dropped.
            extra = self.max_instances
            ranked = ops.pad(ranked, [(0, 0), (0, extra)], constant_values=float("-inf"))
            boxes = ops.pad(boxes, [(0, 0), (0, extra), (0, 0)])
            class_ids = ops.pad(class_ids, [(0, 0), (0, extra)])
        top_scores, top = ops.top_k(ranked, self.max_instances, sorted=True)
        detections = ops.concatenate([
            tfops.gather_rows(boxes, top),
            ops.cast(tfops.gather_rows(class_ids, top), "float32")[..., None],
            top_scores[..., None],
        ], axis=-1)
        return ops.where((top_scores > float("-inf"))[..., None], detections, 0.0)

    def _per_class_nms(self, boxes, scores, class_ids, keep, num_classes):
        """[B, N] bool: kept ROIs that survive NMS among kept ROIs of their class."""
        batch, count = ops.shape(boxes)[0], ops.shape(boxes)[1]
        classes = ops.arange(1, num_classes, dtype="int32")  # [C-1], background skipped
        member = ops.logical_and(keep[:, None, :], class_ids[:, None, :] == classes[None, :, None])
        class_scores = ops.where(member, scores[:, None, :], float("-inf"))  # [B, C-1, N]
        class_boxes = ops.repeat(boxes[:, None], num_classes - 1, axis=1)
        indices, counts = tfops.batched_nms_padded(
            ops.reshape(class_boxes, (-1, count, 4)),
            ops.reshape(class_scores, (-1, count)),
            self.max_instances, self.nms_threshold, exclude_neg_inf=True)
        valid = ops.arange(self.max_instances)[None, :] < counts[:, None]
        # Scatter kept indices into a [B, N + 1] table; padding goes to the spare column.
        rows = ops.repeat(ops.arange(batch, dtype="int32"), (num_classes - 1) * self.max_instances)
        cols = ops.reshape(ops.where(valid, indices, count), (-1,))
        hits = ops.scatter(ops.stack([rows, cols], axis=1),
                           ops.ones_like(cols, dtype="float32"), (batch, count + 1))
        return hits[:, :count] > 0

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.max_instances, 6)

    def get_config(self):
        config = super().get_config()
        config.update(
            max_instances=self.max_instances,
            min_confidence=self.min_confidence,
            nms_threshold=self.nms_threshold,
            bbox_std_dev=list(self.bbox_std_dev),
        )
        return config
