"""ResNet backbones and the feature pyramid: shapes, matterport names, batch norm modes."""

import keras
import numpy as np
import pytest

from maskrcnnlib.errors import ConfigError
from maskrcnnlib.model.backbone import BatchNorm, build_resnet
from maskrcnnlib.model.fpn import build_fpn
from support.layouts import coco_layout

CHANNELS = {"basic": (64, 64, 128, 256, 512),
            "bottleneck": (64, 256, 512, 1024, 2048)}
KIND = {"resnet18": "basic", "resnet34": "basic", "resnet50": "bottleneck",
        "resnet101": "bottleneck"}


def backbone_model(architecture, bands=3, train_bn=False, stage5=True):
    image = keras.Input((None, None, bands), name="input_image")
    features = build_resnet(image, architecture, train_bn, stage5=stage5)
    return keras.Model(image, [c for c in features if c is not None])


def weighted_names(model):
    return {layer.name for layer in model.layers if layer.weights}


@pytest.mark.parametrize("architecture", ["resnet18", "resnet34", "resnet50"])
def test_feature_shapes_for_64_and_128(architecture):
    model = backbone_model(architecture)
    for size in (64, 128):
        outputs = model(np.zeros((1, size, size, 3), np.float32))
        strides = (4, 4, 8, 16, 32)
        expected = [(1, size // s, size // s, c)
                    for s, c in zip(strides, CHANNELS[KIND[architecture]])]
        assert [tuple(o.shape) for o in outputs] == expected


def test_four_bands_conv1_kernel():
    model = backbone_model("resnet18", bands=4)
    assert tuple(model.get_layer("conv1").kernel.shape) == (7, 7, 4, 64)
    outputs = model(np.ones((2, 64, 64, 4), np.float32))
    assert tuple(outputs[-1].shape) == (2, 2, 2, 512)


def test_resnet101_names_equal_matterport_backbone():
    layout = coco_layout()
    reference = {name for name, weights in layout["layers"]
                 if weights and not name.startswith(("fpn_", "rpn_", "mrcnn_"))}
    model = backbone_model("resnet101")
    assert weighted_names(model) == reference
    # Block outputs are named like matterport's too.
    names = {layer.name for layer in model.layers}
    assert {"res4w_out", "res5c_out", "res2a_out"} <= names


def test_resnet50_names_and_conv_biases():
    model = backbone_model("resnet50")
    names = weighted_names(model)
    assert {"conv1", "bn_conv1", "res2a_branch1", "bn2a_branch1", "res4f_branch2c",
            "bn5c_branch2c"} <= names
    assert "res4g_branch2a" not in names
    conv_layers = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert all(l.use_bias for l in conv_layers)
    # The stride of a projection block sits on branch2a and branch1 (1x1).
    assert model.get_layer("res3a_branch2a").strides == (2, 2)
    assert model.get_layer("res3a_branch1").strides == (2, 2)
    assert model.get_layer("res3a_branch2b").strides == (1, 1)


def test_basic_blocks_have_no_branch2c():
    names = weighted_names(backbone_model("resnet34"))
    assert "res4f_branch2b" in names and "res4g_branch2a" not in names
    assert not any(n.endswith("branch2c") for n in names)
    assert "res2a_branch1" not in names and "res3a_branch1" in names


def test_stage5_false_gives_none():
    image = keras.Input((None, None, 3))
    features = build_resnet(image, "resnet18", False, stage5=False)
    assert features[4] is None and features[3] is not None


def test_unknown_architecture():
    with pytest.raises(ConfigError):
        build_resnet(keras.Input((None, None, 3)), "vgg16", False)


def bn_reference(x, gamma, beta, mean, variance, epsilon=1e-3):
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta


def batchnorm(train_bn, stats, shape):
    layer = BatchNorm(train_bn=train_bn)
    layer.build(shape)
    layer.set_weights([s.astype(np.float32) for s in stats])
    return layer


def test_batchnorm_modes_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(4, 5, 5, 6)).astype(np.float32)
    stats = [rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(size=6),
             rng.uniform(0.5, 2, 6)]
    moving = bn_reference(x, *stats)
    batch = bn_reference(x, stats[0], stats[1], x.mean(axis=(0, 1, 2)),
                         x.var(axis=(0, 1, 2)))
    # False: frozen, moving statistics even when training, and they stay put.
    frozen = batchnorm(False, stats, x.shape)
    np.testing.assert_allclose(frozen(x, training=True), moving, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(frozen.moving_mean, stats[2].astype(np.float32))
    # None: follows the training flag.
    free = batchnorm(None, stats, x.shape)
    np.testing.assert_allclose(free(x, training=False), moving, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(free(x, training=True), batch, rtol=1e-3, atol=1e-3)
    # True: batch statistics always (matterport's training=True).
    forced = batchnorm(True, stats, x.shape)
    np.testing.assert_allclose(forced(x, training=False), batch, rtol=1e-3, atol=1e-3)


def test_batchnorm_config_round_trip():
    layer = BatchNorm(train_bn=False, name="bn_conv1")
    clone = BatchNorm.from_config(layer.get_config())
    assert clone.train_bn is False and clone.name == "bn_conv1"
    assert clone.epsilon == 1e-3 and clone.momentum == 0.99
    with pytest.raises(ConfigError):
        BatchNorm(train_bn="yes")


def test_backbone_batchnorms_get_the_mode():
    model = backbone_model("resnet18", train_bn=None)
    modes = {l.train_bn for l in model.layers if isinstance(l, BatchNorm)}
    assert modes == {None}


def test_fpn_shapes_names_and_p6_subsampling():
    c = [keras.Input((None, None, ch)) for ch in (16, 24, 32, 40)]
    pyramid = build_fpn(*c, pyramid_size=8)
    model = keras.Model(c, pyramid)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(1, 64 // s, 64 // s, ch)).astype(np.float32)
              for s, ch in zip((4, 8, 16, 32), (16, 24, 32, 40))]
    p2, p3, p4, p5, p6 = [np.asarray(p) for p in model(inputs)]
    assert [p.shape for p in (p2, p3, p4, p5, p6)] == [
        (1, 16, 16, 8), (1, 8, 8, 8), (1, 4, 4, 8), (1, 2, 2, 8), (1, 1, 1, 8)]
    np.testing.assert_array_equal(p6, p5[:, ::2, ::2])
    assert weighted_names(model) == {"fpn_c5p5", "fpn_c4p4", "fpn_c3p3", "fpn_c2p2",
                                     "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"}
    names = {layer.name for layer in model.layers}
    assert {"fpn_p5upsampled", "fpn_p4add", "fpn_p6"} <= names
