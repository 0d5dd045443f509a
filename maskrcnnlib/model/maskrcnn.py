"""Mask R-CNN composed from its parts: the inference graph and the training model.

Both are flat functional Keras models whose weight-carrying layers sit at the top
level under matterport's names (rpn_model nested, as in matterport), so
maskrcnnlib.model.weights saves and loads them in the matterport .h5 layout.

Images entering the graphs are molded (maskrcnnlib.model.molding): [B, H, W, bands]
float32 with H and W multiples of 64. Boxes inside the graphs are normalized
(y1, x1, y2, x2) as in matterport.
"""
import keras
import numpy as np
from keras import layers, ops

from maskrcnnlib.model.anchors import get_anchors
from maskrcnnlib.model.backbone import build_resnet
from maskrcnnlib.model.detection import DetectionLayer
from maskrcnnlib.model.fpn import build_fpn
from maskrcnnlib.model.heads import classifier_head, mask_head
from maskrcnnlib.model.proposals import ProposalLayer
from maskrcnnlib.model.roi_align import PyramidROIAlign
from maskrcnnlib.model.rpn import apply_rpn, build_rpn_model
from maskrcnnlib.model.targets import DetectionTargetLayer


@keras.saving.register_keras_serializable(package="maskrcnnlib")
class ValidRows(layers.Layer):
    """Drop the trailing all-zero rows shared by every image of the batch.

    Input [B, N, K] whose padding rows (all zero) come last; output [B, n, K] with
    n the largest count of non-padding rows in the batch. ``columns`` limits the
    test to the first columns (the box of a detection row). Heads then run on
    real ROIs and detections only, not on matterport's zero padding.
    """

    def __init__(self, columns=4, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision
        self.columns = int(columns)

    def call(self, rows):
        real = ops.any(ops.not_equal(rows[..., :self.columns], 0.0), axis=-1)
        # One past the last real row of any image (a zero row inside stays).
        position = ops.arange(1, ops.shape(rows)[1] + 1, dtype="int32")[None, :]
        count = ops.max(ops.where(real, position, 0))
        return rows[:, :count, :self.columns]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, self.columns)

    def get_config(self):
        return {**super().get_config(), "columns": self.columns}


@keras.saving.register_keras_serializable(package="maskrcnnlib")
class PositiveRows(layers.Layer):
    """Keep the leading positive ROIs of a training batch for the mask branch.

    Inputs [rois [B, T, 4], target_class_ids [B, T], target_mask [B, T, h, w]] with
    each image's positives first (DetectionTargetLayer). Outputs the same three cut
    to P rows, P the most positives of any image: the mask loss only counts
    positives, so the mask head need not run on negatives (matterport ran it on all).
    """

    def __init__(self, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision

    def call(self, inputs):
        rois, class_ids, masks = inputs
        count = ops.max(ops.sum(ops.cast(class_ids > 0, "int32"), axis=1))
        # At least one row: oneDNN's conv gradients fail on an empty batch (the row,
        # a negative or padding, does not count in the loss).
        count = ops.maximum(count, 1)
        return rois[:, :count], class_ids[:, :count], masks[:, :count]

    def compute_output_shape(self, input_shape):
        return tuple((shape[0], None) + tuple(shape[2:]) for shape in input_shape)


@keras.saving.register_keras_serializable(package="maskrcnnlib")
class AnchorsLayer(layers.Layer):
    """The normalized anchors of a fixed image shape, repeated for the batch.

    Input: the image batch [B, H, W, bands] (only its batch size is used).
    Output: [B, A, 4] normalized (y1, x1, y2, x2), matterport's anchor order.
    """

    def __init__(self, image_shape, scales, ratios, strides, anchor_stride, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision
        self.image_shape = [int(v) for v in image_shape[:2]]
        self.scales = [float(v) for v in scales]
        self.ratios = [float(v) for v in ratios]
        self.strides = [int(v) for v in strides]
        self.anchor_stride = int(anchor_stride)
        self.anchors = np.array(get_anchors(tuple(self.image_shape), tuple(self.scales),
                                            tuple(self.ratios), tuple(self.strides),
                                            self.anchor_stride), dtype="float32")

    def call(self, image):
        anchors = ops.convert_to_tensor(self.anchors)[None]
        return ops.repeat(anchors, ops.shape(image)[0], axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.anchors.shape[0], 4)

    def get_config(self):
        return {**super().get_config(), "image_shape": self.image_shape,
                "scales": self.scales, "ratios": self.ratios, "strides": self.strides,
                "anchor_stride": self.anchor_stride}


@keras.saving.register_keras_serializable(package="maskrcnnlib")
class ActiveClassIds(layers.Layer):
    """The active_class_ids part of image_meta: [B, meta] -> [B, num_classes]."""

    def __init__(self, num_classes, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision
        self.num_classes = int(num_classes)

    def call(self, image_meta):
        return image_meta[:, -self.num_classes:]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def _features(image, config, train_bn):
    """Backbone, FPN and RPN: ([P2..P6], rpn_class_logits, rpn_probs, rpn_bbox)."""
    _, c2, c3, c4, c5 = build_resnet(image, config.backbone, train_bn, stage5=True)
    pyramid = build_fpn(c2, c3, c4, c5, config.top_down_pyramid_size)
    rpn = build_rpn_model(config.rpn_anchor_stride, config.anchors_per_location,
                          config.top_down_pyramid_size)
    rpn_class_logits, rpn_probs, rpn_bbox = apply_rpn(rpn, pyramid)
    return pyramid, rpn_class_logits, rpn_probs, rpn_bbox


def build_inference_model(config, intermediate=False):
    """The detection graph.

    Inputs: input_image [B, H, W, bands] molded; input_image_meta [B, meta];
    input_anchors [B, A, 4] normalized anchors of the molded shape.
    Outputs: detections [B, max_instances, 6] (y1, x1, y2, x2 normalized, class_id,
    score; zero rows after the detections) and mrcnn_mask [B, n, mh, mw, classes]
    for the first n detection rows (n = the most detections of any image).
    With ``intermediate``, also rpn_rois [B, proposals, 4], mrcnn_class [B, r, C]
    and mrcnn_bbox [B, r, C, 4] for the first r (non-padding) proposals,
    rpn_class_logits, rpn_bbox and P2..P6, for parity checks.
    """
    image = keras.Input((None, None, config.bands), name="input_image")
    image_meta = keras.Input((config.image_meta_size,), name="input_image_meta")
    anchors = keras.Input((None, 4), name="input_anchors")
    pyramid, rpn_class_logits, rpn_probs, rpn_bbox = _features(image, config, False)
    rpn_rois = ProposalLayer(config.post_nms_rois_inference, config.rpn_nms_threshold,
                             config.pre_nms_limit, config.rpn_bbox_std_dev,
                             name="ROI")([rpn_probs, rpn_bbox, anchors])
    rois = ValidRows(name="valid_rois")(rpn_rois)
    pooled = PyramidROIAlign((config.pool_size,) * 2, name="roi_align_classifier")(
        [rois, image_meta] + pyramid[:4])
    _, mrcnn_class, mrcnn_bbox = classifier_head(
        pooled, config.num_classes, False, config.fpn_classif_fc_layers_size)
    detections = DetectionLayer(config.detection_max_instances,
                                config.detection_min_confidence,
                                config.detection_nms_threshold, config.bbox_std_dev,
                                name="mrcnn_detection")(
        [rois, mrcnn_class, mrcnn_bbox, image_meta])
    detection_boxes = ValidRows(name="valid_detections")(detections)
    pooled_masks = PyramidROIAlign((config.mask_pool_size,) * 2, name="roi_align_mask")(
        [detection_boxes, image_meta] + pyramid[:4])
    mrcnn_mask = mask_head(pooled_masks, config.num_classes, False)
    outputs = [detections, mrcnn_mask]
    if intermediate:
        outputs += [rpn_rois, mrcnn_class, mrcnn_bbox, rpn_class_logits, rpn_bbox] + pyramid
    return keras.Model([image, image_meta, anchors], outputs, name="mask_rcnn")


# Outputs of the dense part of the inference graph (convolutions only, compilable by
# XLA): the pyramid and the RPN's outputs, by the names of the layers that make them.
DENSE_OUTPUTS = ("fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6",
                 "rpn_class_logits", "rpn_class", "rpn_bbox")


def dense_output_names(model):
    """The DENSE_OUTPUTS layers that the inference model has, in that order
    (rpn_class_logits only where the model outputs it)."""
    present = {layer.name for layer in model.layers}
    return [name for name in DENSE_OUTPUTS if name in present]


def split_inference_model(model):
    """The inference model as two models sharing its layers, and how to join them.

    dense: input_image -> [P2..P6, (rpn_class_logits,) rpn_class, rpn_bbox], the
        backbone, FPN and RPN (rpn_class_logits only when the model outputs it):
        every op has an XLA kernel, so it can be compiled with jit_compile.
    heads: those tensors + image meta + anchors -> the model's other outputs
        (proposals, ROI align, heads, detection: ops without XLA kernels).
    sources: per output of the model, ("dense", i) or ("heads", i): where it is.
    """
    image, image_meta, anchors = model.inputs
    dense_outputs = [model.get_layer(name).output for name in dense_output_names(model)]
    dense = keras.Model(image, dense_outputs, name="mask_rcnn_dense")
    positions = {id(t): i for i, t in enumerate(dense_outputs)}
    sources, head_outputs = [], []
    for tensor in model.outputs:
        if id(tensor) in positions:  # an intermediate output of the dense part
            sources.append(("dense", positions[id(tensor)]))
        else:
            sources.append(("heads", len(head_outputs)))
            head_outputs.append(tensor)
    heads = keras.Model(dense_outputs + [image_meta, anchors], head_outputs,
                        name="mask_rcnn_heads")
    return dense, heads, sources


def build_training_graph(config, seed=None):
    """The training graph: inputs as produced by maskrcnnlib.dataset, outputs for losses.

    Inputs (dict keys): image [B, H, W, bands] molded (H, W = config.image_shape),
    image_meta [B, meta], rpn_match [B, A] int32, rpn_bbox_targets [B, T, 4],
    gt_class_ids [B, G] int32 (0 = padding), gt_boxes [B, G, 4] normalized,
    gt_masks [B, h, w, G] (mini masks when config.use_mini_mask, else full size),
    sample_key [B, 2] int32 (keys of the per-image random ROI sampling).
    Outputs (dict): the tensors maskrcnnlib.model.losses.training_losses takes, the
    mask branch cut to the positive ROIs (target_masks, mask_class_ids, mrcnn_mask).
    """
    height, width, bands = config.image_shape
    mask_hw = tuple(config.mini_mask_shape) if config.use_mini_mask else (height, width)
    inputs = {
        "image": keras.Input((height, width, bands), name="image"),
        "image_meta": keras.Input((config.image_meta_size,), name="image_meta"),
        "rpn_match": keras.Input((None,), dtype="int32", name="rpn_match"),
        "rpn_bbox_targets": keras.Input((None, 4), name="rpn_bbox_targets"),
        "gt_class_ids": keras.Input((None,), dtype="int32", name="gt_class_ids"),
        "gt_boxes": keras.Input((None, 4), name="gt_boxes"),
        "gt_masks": keras.Input(mask_hw + (None,), name="gt_masks"),
        "sample_key": keras.Input((2,), dtype="int32", name="sample_key"),
    }
    train_bn = config.train_bn
    pyramid, rpn_class_logits, rpn_probs, rpn_bbox = _features(inputs["image"], config,
                                                               train_bn)
    anchors = AnchorsLayer(config.image_shape, config.rpn_anchor_scales,
                           config.rpn_anchor_ratios, config.backbone_strides,
                           config.rpn_anchor_stride, name="anchors")(inputs["image"])
    rpn_rois = ProposalLayer(config.post_nms_rois_training, config.rpn_nms_threshold,
                             config.pre_nms_limit, config.rpn_bbox_std_dev,
                             name="ROI")([rpn_probs, rpn_bbox, anchors])
    rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
        config.train_rois_per_image, config.roi_positive_ratio, config.bbox_std_dev,
        config.mask_shape, config.use_mini_mask, seed=seed, name="proposal_targets")(
        [rpn_rois, inputs["gt_class_ids"], inputs["gt_boxes"], inputs["gt_masks"],
         inputs["sample_key"]])
    pooled = PyramidROIAlign((config.pool_size,) * 2, name="roi_align_classifier")(
        [rois, inputs["image_meta"]] + pyramid[:4])
    mrcnn_class_logits, _, mrcnn_bbox = classifier_head(
        pooled, config.num_classes, train_bn, config.fpn_classif_fc_layers_size)
    mask_rois, mask_class_ids, mask_targets = PositiveRows(name="positive_rois")(
        [rois, target_class_ids, target_mask])
    pooled_masks = PyramidROIAlign((config.mask_pool_size,) * 2, name="roi_align_mask")(
        [mask_rois, inputs["image_meta"]] + pyramid[:4])
    mrcnn_mask = mask_head(pooled_masks, config.num_classes, train_bn)
    outputs = {
        "rpn_match": inputs["rpn_match"], "rpn_bbox_targets": inputs["rpn_bbox_targets"],
        "rpn_class_logits": rpn_class_logits, "rpn_bbox": rpn_bbox,
        "target_class_ids": target_class_ids, "target_bbox": target_bbox,
        "target_masks": mask_targets, "mask_class_ids": mask_class_ids,
        "mrcnn_class_logits": mrcnn_class_logits,
        "mrcnn_bbox": mrcnn_bbox, "mrcnn_mask": mrcnn_mask,
        "active_class_ids": ActiveClassIds(config.num_classes, name="active_class_ids")(
            inputs["image_meta"]),
    }
    return inputs, outputs
