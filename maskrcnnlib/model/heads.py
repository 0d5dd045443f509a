"""Classifier/box head and mask head on already pooled ROI features.

Both heads take ROIAlign output [B, N, pool, pool, depth] (N ROIs per image,
static or dynamic) and keep matterport's layer names, so its weights load by
name. matterport wraps each conv in keras TimeDistributed; Keras 3's
TimeDistributed unrolls a Python loop over a static N (1000 ROIs -> 1000
copies of the conv in the graph), so the per-ROI layers here are wrapped in
RoiDistributed instead, which folds the ROI axis into the batch axis: the
same math (and, for batch norm in training mode, the same statistics over
all ROIs as Keras 2's reshape-based TimeDistributed) with one conv call.
"""

import inspect

import keras
from keras import layers, ops

from maskrcnnlib.model.backbone import BatchNorm


@keras.saving.register_keras_serializable(package="maskrcnnlib")
class RoiDistributed(layers.Wrapper):
    """Apply a layer to every ROI: [B, N, *in] -> [B, N, *out].

    The wrapped layer sees [B * N, *in]; the non-batch dimensions of its
    input and output must be static. The wrapper's variables are those of
    the wrapped layer (e.g. "kernel", "bias"), and in .h5 files they sit
    under the wrapper's name, like matterport's TimeDistributed layers.
    """

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build((None,) + tuple(input_shape[2:]))
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape(
            (None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        folded = ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))
        # the test Keras itself makes on the signature of call, by public means
        if "training" in inspect.signature(self.layer.call).parameters:
            out = self.layer(folded, training=training)
        else:
            out = self.layer(folded)
        return ops.reshape(out, (shape[0], shape[1]) + tuple(out.shape[1:]))


@keras.saving.register_keras_serializable(package="maskrcnnlib")
class PooledDense(layers.Layer):
    """A k x k 'valid' convolution over a k x k input, computed as one matrix product.

    [R, k, k, depth] -> [R, 1, 1, units]. Its variables are a Conv2D's (kernel
    [k, k, depth, units], bias [units]), so matterport's mrcnn_class_conv1/2 weights
    load unchanged; the product is about 30 % faster on CPUs than oneDNN's 7x7
    convolution of a 7x7 input for 1000 ROIs.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        height, width, depth = (int(v) for v in input_shape[1:])
        self.kernel = self.add_weight(name="kernel",
                                      shape=(height, width, depth, self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        flat = ops.reshape(inputs, (-1, self.kernel.shape[0] * self.kernel.shape[1]
                                    * self.kernel.shape[2]))
        out = ops.matmul(flat, ops.reshape(self.kernel, (-1, self.units))) + self.bias
        return ops.reshape(out, (-1, 1, 1, self.units))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def classifier_head(pooled, num_classes, train_bn, fc_layers_size=1024):
    """Class scores and per-class box deltas for each ROI.

    pooled: [B, N, pool, pool, depth] ROI features (pool = 7 in matterport).
    num_classes: classes including background (class 0).
    train_bn: BatchNorm mode (False frozen, None trainable, True batch
        statistics always; see model.backbone.BatchNorm).
    fc_layers_size: width of the two "fully connected" layers, matterport's
        pool x pool valid conv and 1x1 conv (1024), computed as matrix products.

    Returns (mrcnn_class_logits [B, N, num_classes],
             mrcnn_probs [B, N, num_classes] softmax over classes,
             mrcnn_bbox [B, N, num_classes, 4] deltas (dy, dx, log(dh), log(dw))).
    """
    x = RoiDistributed(PooledDense(fc_layers_size), name="mrcnn_class_conv1")(pooled)
    x = RoiDistributed(BatchNorm(train_bn=train_bn),
                       name="mrcnn_class_bn1")(x)
    x = layers.Activation("relu")(x)
    x = RoiDistributed(PooledDense(fc_layers_size), name="mrcnn_class_conv2")(x)
    x = RoiDistributed(BatchNorm(train_bn=train_bn),
                       name="mrcnn_class_bn2")(x)
    x = layers.Activation("relu")(x)
    # [B, N, 1, 1, F] -> [B, N, F]; -1 keeps N dynamic.
    shared = layers.Reshape((-1, fc_layers_size), name="pool_squeeze")(x)
    # Dense acts on the last axis, so it needs no per-ROI wrapper.
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    probs = layers.Activation("softmax", name="mrcnn_class")(logits)
    x = layers.Dense(num_classes * 4, activation="linear",
                     name="mrcnn_bbox_fc")(shared)
    bbox = layers.Reshape((-1, num_classes, 4), name="mrcnn_bbox")(x)
    return logits, probs, bbox


def mask_head(pooled, num_classes, train_bn):
    """Per-class instance masks for each ROI.

    pooled: [B, N, 14, 14, depth] ROI features (matterport's MASK_POOL_SIZE
        14; any size m gives masks of 2m).
    num_classes: classes including background.
    train_bn: BatchNorm mode, as in classifier_head.

    Returns mrcnn_mask [B, N, 28, 28, num_classes], sigmoid probabilities.
    """
    x = pooled
    for i in range(1, 5):
        x = RoiDistributed(layers.Conv2D(256, (3, 3), padding="same"),
                           name="mrcnn_mask_conv{}".format(i))(x)
        x = RoiDistributed(BatchNorm(train_bn=train_bn),
                           name="mrcnn_mask_bn{}".format(i))(x)
        x = layers.Activation("relu")(x)
    x = RoiDistributed(layers.Conv2DTranspose(256, (2, 2), strides=2,
                                              activation="relu"),
                       name="mrcnn_mask_deconv")(x)
    return RoiDistributed(layers.Conv2D(num_classes, (1, 1), strides=1,
                                        activation="sigmoid"),
                          name="mrcnn_mask")(x)
