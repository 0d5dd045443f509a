"""ResNet backbones with matterport's layer names (channels-last, Keras 3).

The deep variants (resnet50, resnet101) reproduce matterport's
``resnet_graph`` layer by layer, so its published weights load by name:

    ZeroPadding2D(3) -> conv1 (7x7, stride 2, bias) -> bn_conv1 -> relu
    -> MaxPooling2D(3x3, stride 2, "same")                          = C1
    stage 2: bottleneck blocks a..c    (64, 64, 256),  stride 1      = C2
    stage 3: bottleneck blocks a..d    (128, 128, 512), stride 2     = C3
    stage 4: blocks a..f (50) / a..w (101) (256, 256, 1024), stride 2 = C4
    stage 5: blocks a..c   (512, 512, 2048), stride 2                = C5

Block ``a`` of a stage is a projection block: the stride sits on the 1x1
``branch2a`` conv and on the 1x1 shortcut ``branch1``. Every conv has a bias,
as in matterport. Names: ``res{stage}{block}_branch{2a,2b,2c,1}`` for convs,
``bn{stage}{block}_branch...`` for batch norms, ``res{stage}{block}_out`` for
the block output.

The light variants (resnet18, resnet34) use basic blocks (two 3x3 convs,
``branch2a`` and ``branch2b``, stride on ``branch2a``) in the same naming
scheme; they have no ``branch2c`` and C2..C5 have 64/128/256/512 channels.
"""

import keras
from keras import layers

from maskrcnnlib.errors import ConfigError

# Blocks per stage (2, 3, 4, 5) and block type of each architecture.
ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
STAGE_WIDTHS = {2: 64, 3: 128, 4: 256, 5: 512}


@keras.saving.register_keras_serializable(package="maskrcnnlib")
class BatchNorm(layers.BatchNormalization):
    """Batch normalization with matterport's three TRAIN_BN modes.

    train_bn=False: frozen, always normalizes with the moving mean and
        variance whatever the Keras ``training`` flag says (matterport passes
        ``training=False``); gamma and beta stay trainable variables, as in
        matterport. The default of matterport and of Config.
    train_bn=None: follows the Keras training flag (batch statistics while
        fitting, moving ones in inference).
    train_bn=True: always batch statistics, even in inference (matterport's
        ``training=True``, which it marks "don't use"; kept for fidelity).
    epsilon and momentum keep the Keras defaults (1e-3, 0.99) like matterport.

    Input/output: any shape [..., channels].

    Frozen, on [B, H, W, C] and the TensorFlow backend, it runs as one fused op
    (FusedBatchNormV3 in inference mode, as tf.keras 2 ran matterport's, with
    gamma and beta gradients from its fused gradient op) on the input's dtype:
    Keras 3's version casts bfloat16 maps to float32 and back and makes several
    passes over them, forward and backward (about a fifth of a bfloat16 training
    step at ResNet-50 256 x 256 on a CPU; docs/benchmarks.md). The same formula,
    (x - mean) / sqrt(var + epsilon) * gamma + beta, with statistics, gamma and
    beta in float32.
    """

    def __init__(self, train_bn=None, **kwargs):
        super().__init__(**kwargs)
        if train_bn not in (None, True, False):
            raise ConfigError("train_bn must be True, False or None",
                              field="train_bn")
        self.train_bn = train_bn

    def call(self, inputs, training=None, mask=None):
        if self.train_bn is False and mask is None and len(inputs.shape) == 4 \
                and self.axis in (-1, 3) and self.scale and self.center \
                and keras.backend.backend() == "tensorflow":
            return self._frozen_fused(inputs)
        if self.train_bn is not None:
            training = self.train_bn
        return super().call(inputs, training=training, mask=mask)

    def _frozen_fused(self, inputs):
        import tensorflow as tf

        def f32(variable):
            return tf.cast(variable, tf.float32)

        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, f32(self.gamma), f32(self.beta), mean=f32(self.moving_mean),
            variance=f32(self.moving_variance), epsilon=self.epsilon, is_training=False)
        return tf.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config


def _conv_bn(x, filters, kernel, name, bn_name, train_bn, strides=1,
             padding="valid", relu=True):
    """Conv2D (with bias) -> BatchNorm -> optional relu."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                      use_bias=True, name=name)(x)
    x = BatchNorm(train_bn=train_bn, name=bn_name)(x)
    if relu:
        x = layers.Activation("relu")(x)
    return x


def bottleneck_block(x, filters, stage, block, train_bn, strides=1,
                     projection=False):
    """matterport's conv_block (projection=True) or identity_block.

    x: [B, H, W, C] -> [B, H/strides, W/strides, filters[2]].
    """
    f1, f2, f3 = filters
    conv = "res{}{}_branch".format(stage, block)
    bn = "bn{}{}_branch".format(stage, block)
    y = _conv_bn(x, f1, 1, conv + "2a", bn + "2a", train_bn, strides=strides)
    y = _conv_bn(y, f2, 3, conv + "2b", bn + "2b", train_bn, padding="same")
    y = _conv_bn(y, f3, 1, conv + "2c", bn + "2c", train_bn, relu=False)
    return _add_shortcut(x, y, stage, block, train_bn, strides, projection)


def basic_block(x, filters, stage, block, train_bn, strides=1,
                projection=False):
    """Two 3x3 convs with a shortcut (ResNet-18/34 block).

    x: [B, H, W, C] -> [B, H/strides, W/strides, filters].
    """
    conv = "res{}{}_branch".format(stage, block)
    bn = "bn{}{}_branch".format(stage, block)
    y = _conv_bn(x, filters, 3, conv + "2a", bn + "2a", train_bn,
                 strides=strides, padding="same")
    y = _conv_bn(y, filters, 3, conv + "2b", bn + "2b", train_bn,
                 padding="same", relu=False)
    return _add_shortcut(x, y, stage, block, train_bn, strides, projection)


def _add_shortcut(x, y, stage, block, train_bn, strides, projection):
    """relu(y + shortcut): x itself, or (projection) x through a strided 1x1 conv and
    batch norm to y's channels (layers res<stage><block>_branch1, bn..._branch1)."""
    shortcut = x
    if projection:
        shortcut = _conv_bn(x, y.shape[-1], 1, "res{}{}_branch1".format(stage, block),
                            "bn{}{}_branch1".format(stage, block), train_bn,
                            strides=strides, relu=False)
    return layers.Activation("relu", name="res{}{}_out".format(stage, block))(
        layers.Add()([y, shortcut]))


def _stage(x, stage, kind, blocks, train_bn):
    """All blocks of one stage; block letters a, b, c, ... as in matterport."""
    width = STAGE_WIDTHS[stage]
    strides = 1 if stage == 2 else 2
    for i in range(blocks):
        block = chr(ord("a") + i)
        if kind == "bottleneck":
            x = bottleneck_block(x, (width, width, 4 * width), stage, block,
                                 train_bn, strides=strides if i == 0 else 1,
                                 projection=(i == 0))
        else:
            # Stage 2 of basic ResNets keeps 64 channels at stride 1: identity.
            x = basic_block(x, width, stage, block, train_bn,
                            strides=strides if i == 0 else 1,
                            projection=(i == 0 and stage > 2))
    return x


def build_resnet(input_image, architecture, train_bn, stage5=True):
    """Build the ResNet graph on a symbolic image tensor.

    input_image: KerasTensor [B, H, W, bands] (any number of bands; conv1's
        kernel is [7, 7, bands, 64]). H and W should be multiples of 64.
    architecture: "resnet50", "resnet101", "resnet18" or "resnet34".
    train_bn: BatchNorm mode of every batch norm: False frozen (inference
        statistics always), None follows the Keras training flag, True batch
        statistics always (see BatchNorm).
    stage5: False leaves out stage 5 (C5 is then None).

    Returns [C1, C2, C3, C4, C5] at strides 4, 4, 8, 16, 32; channels
    64, 256, 512, 1024, 2048 (bottleneck) or 64, 64, 128, 256, 512 (basic).
    Raises ConfigError for an unknown architecture.
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            "Unknown backbone {!r}; choose one of {}".format(
                architecture, ", ".join(sorted(ARCHITECTURES))),
            field="backbone")
    kind, blocks = ARCHITECTURES[architecture]
    x = layers.ZeroPadding2D((3, 3))(input_image)
    x = _conv_bn(x, 64, 7, "conv1", "bn_conv1", train_bn, strides=2)
    c1 = x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)
    c2 = x = _stage(x, 2, kind, blocks[0], train_bn)
    c3 = x = _stage(x, 3, kind, blocks[1], train_bn)
    c4 = x = _stage(x, 4, kind, blocks[2], train_bn)
    c5 = _stage(x, 5, kind, blocks[3], train_bn) if stage5 else None
    return [c1, c2, c3, c4, c5]
