"""Region proposals from RPN outputs (matterport's ProposalLayer)."""

import keras
from keras import ops

from maskrcnnlib.model import tfops
from maskrcnnlib.model.boxes import apply_deltas, clip_to_window


class ProposalLayer(keras.layers.Layer):
    """Turns anchor scores and deltas into a fixed number of proposals per image.

    Steps (matterport): keep the ``pre_nms_limit`` anchors with the highest foreground
    score, scale their deltas by ``rpn_bbox_std_dev``, apply them, clip to [0, 0, 1, 1],
    greedy NMS at ``nms_threshold``, keep at most ``proposal_count``, zero pad.

    Inputs (a list):
        rpn_probs: [B, A, 2] float32 (background, foreground) probabilities.
        rpn_bbox: [B, A, 4] float32 deltas (dy, dx, log(dh), log(dw)), unscaled.
        anchors: [B, A, 4] float32 normalized (y1, x1, y2, x2).

    Output:
        [B, proposal_count, 4] float32 normalized (y1, x1, y2, x2), in descending score
        order; rows after the kept ones are all zero.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit,
                 rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = tuple(float(v) for v in rpn_bbox_std_dev)

    def call(self, inputs):
        rpn_probs, rpn_bbox, anchors = inputs
        scores = ops.cast(rpn_probs[:, :, 1], "float32")
        deltas = ops.cast(rpn_bbox, "float32") * ops.reshape(
            ops.convert_to_tensor(self.rpn_bbox_std_dev, "float32"), (1, 1, 4))
        anchors = ops.cast(anchors, "float32")

        num_anchors = anchors.shape[1]
        if num_anchors is None:
            limit = ops.minimum(self.pre_nms_limit, ops.shape(anchors)[1])
        else:
            limit = min(self.pre_nms_limit, num_anchors)
        scores, order = ops.top_k(scores, limit, sorted=True)
        deltas = tfops.gather_rows(deltas, order)
        anchors = tfops.gather_rows(anchors, order)

        boxes = apply_deltas(anchors, deltas)
        boxes = clip_to_window(boxes, ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0]))

        keep, counts = tfops.batched_nms_padded(
            boxes, scores, self.proposal_count, self.nms_threshold)
        proposals = tfops.gather_rows(boxes, keep)
        valid = ops.arange(self.proposal_count)[None, :] < counts[:, None]
        return ops.where(valid[..., None], proposals, 0.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(
            proposal_count=self.proposal_count,
            nms_threshold=self.nms_threshold,
            pre_nms_limit=self.pre_nms_limit,
            rpn_bbox_std_dev=list(self.rpn_bbox_std_dev),
        )
        return config
