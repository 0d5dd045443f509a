"""Region proposal network: one shared Keras model applied to P2..P6.

The model is named "rpn_model" and holds rpn_conv_shared, rpn_class_raw and
rpn_bbox_pred, so in a matterport .h5 file its six arrays sit in one group
"rpn_model" with weight names "rpn_conv_shared/kernel:0" and so on.
Anchors are ordered per level as (row, col, anchor) -- the order of the
conv output flattened row-major, as in matterport.
"""

import keras
from keras import layers


def build_rpn_model(anchor_stride, anchors_per_location, depth):
    """Build the shared RPN as a Keras Model named "rpn_model".

    anchor_stride: stride of the shared 3x3 conv; it must equal the stride the
        anchors were laid out with (config.rpn_anchor_stride).
    anchors_per_location: anchors per cell (one per anchor ratio, 3).
    depth: channels of the pyramid levels (256).

    Model input: feature map [B, H, W, depth].
    Model outputs, with A = (H / anchor_stride) * (W / anchor_stride)
    * anchors_per_location:
        rpn_class_logits [B, A, 2] (background, object) before softmax,
        rpn_probs        [B, A, 2] softmax of the logits,
        rpn_bbox         [B, A, 4] deltas (dy, dx, log(dh), log(dw)).
    """
    feature_map = keras.Input(shape=(None, None, depth),
                              name="input_rpn_feature_map")
    shared = layers.Conv2D(512, (3, 3), padding="same", activation="relu",
                           strides=anchor_stride, name="rpn_conv_shared")(feature_map)
    x = layers.Conv2D(2 * anchors_per_location, (1, 1), padding="valid",
                      activation="linear", name="rpn_class_raw")(shared)
    rpn_class_logits = layers.Reshape((-1, 2), name="rpn_class_reshape")(x)
    rpn_probs = layers.Activation("softmax",
                                  name="rpn_class_xxx")(rpn_class_logits)
    x = layers.Conv2D(4 * anchors_per_location, (1, 1), padding="valid",
                      activation="linear", name="rpn_bbox_pred")(shared)
    rpn_bbox = layers.Reshape((-1, 4), name="rpn_bbox_reshape")(x)
    return keras.Model(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox],
                       name="rpn_model")


def apply_rpn(rpn_model, feature_maps):
    """Run the shared RPN on every pyramid level and join the levels.

    rpn_model: the Model from build_rpn_model.
    feature_maps: [P2, P3, P4, P5, P6], each [B, H_l, W_l, depth].

    Returns [rpn_class_logits [B, A, 2], rpn_class [B, A, 2],
    rpn_bbox [B, A, 4]] with the anchors of all levels concatenated level by
    level (P2 first), A = sum of the per-level anchor counts; the
    Concatenate layers are named rpn_class_logits, rpn_class, rpn_bbox.
    """
    per_level = [rpn_model(p) for p in feature_maps]
    names = ("rpn_class_logits", "rpn_class", "rpn_bbox")
    return [layers.Concatenate(axis=1, name=name)([out[i] for out in per_level])
            for i, name in enumerate(names)]
