"""ROI Align over the feature pyramid (matterport's PyramidROIAlign)."""

import keras
from keras import ops

from maskrcnnlib.model import tfops
from maskrcnnlib.model.image_meta import IMAGE_SHAPE


def roi_levels(boxes, image_meta):
    """Pyramid level (2..5) of each box, equation 1 of the FPN paper.

    level = min(5, max(2, 4 + round(log2(sqrt(h * w) / (224 / sqrt(image_area))))))
    with h, w normalized and image_area from the first image's image_shape (all images of
    a batch share one molded size). Degenerate boxes (zero area padding) get level 2.

    Args:
        boxes: [B, N, 4] float32 normalized (y1, x1, y2, x2).
        image_meta: [B, meta_length] float32, matterport layout.
    Returns:
        [B, N] int32 in 2..5.
    """
    boxes = ops.cast(boxes, "float32")
    image_meta = ops.cast(image_meta, "float32")
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    image_area = image_meta[0, IMAGE_SHAPE][0] * image_meta[0, IMAGE_SHAPE][1]
    level = ops.log(ops.sqrt(h * w) / (224.0 / ops.sqrt(image_area))) / ops.log(2.0)
    # -inf / NaN (empty boxes) would be cast to INT_MIN and clipped to 2; do that explicitly.
    level = ops.where(level > -10.0, level, -10.0)
    level = 4 + ops.cast(ops.round(level), "int32")
    return ops.minimum(5, ops.maximum(2, level))


class PyramidROIAlign(keras.layers.Layer):
    """Crops and resizes boxes from the pyramid level matching their size.

    Inputs (a list):
        boxes: [B, N, 4] float32 normalized (y1, x1, y2, x2), may be zero padded.
        image_meta: [B, meta_length] float32, matterport layout.
        P2, P3, P4, P5: [B, h_l, w_l, C] channels-last feature maps.

    Output:
        [B, N, pool_height, pool_width, C] float32, row n pooled from boxes[:, n] (input
        order). Single bilinear sample per bin (tf.image.crop_and_resize). No gradient
        flows into the boxes.
    """

    def __init__(self, pool_shape, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 under mixed precision
        self.pool_shape = (int(pool_shape[0]), int(pool_shape[1]))

    def call(self, inputs):
        boxes, image_meta = inputs[0], inputs[1]
        feature_maps = list(inputs[2:])
        if len(feature_maps) != 4:
            raise ValueError("PyramidROIAlign expects 4 feature maps (P2..P5), got "
                             f"{len(feature_maps)}")
        boxes = ops.stop_gradient(ops.cast(boxes, "float32"))
        levels = roi_levels(boxes, image_meta)
        batch, count = ops.shape(boxes)[0], ops.shape(boxes)[1]
        flat_boxes = ops.reshape(boxes, (-1, 4))
        flat_levels = ops.reshape(levels, (-1,)) - 2
        flat_images = ops.repeat(ops.arange(batch, dtype="int32"), count)
        pooled = tfops.pyramid_crop_and_resize(
            feature_maps, flat_boxes, flat_images, flat_levels, self.pool_shape)
        channels = feature_maps[0].shape[-1]
        return ops.reshape(
            pooled, (batch, count, self.pool_shape[0], self.pool_shape[1], channels))

    def compute_output_shape(self, input_shape):
        boxes_shape, p2_shape = input_shape[0], input_shape[2]
        return (boxes_shape[0], boxes_shape[1]) + self.pool_shape + (p2_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config["pool_shape"] = list(self.pool_shape)
        return config
