"""RPN model and the ROI heads: shapes, names, per-ROI math, config round trips."""
import keras
import numpy as np
import pytest

from maskrcnnlib.model.backbone import BatchNorm
from maskrcnnlib.model.heads import RoiDistributed, classifier_head, mask_head
from maskrcnnlib.model.rpn import apply_rpn, build_rpn_model

DEPTH = 16


def heads_model(num_classes=4, rois=None, fc_layers_size=32, train_bn=False):
    pooled = keras.Input((rois, 7, 7, DEPTH), name="pooled_classifier")
    pooled_mask = keras.Input((rois, 14, 14, DEPTH), name="pooled_mask")
    logits, probs, bbox = classifier_head(pooled, num_classes, train_bn,
                                          fc_layers_size=fc_layers_size)
    masks = mask_head(pooled_mask, num_classes, train_bn)
    return keras.Model([pooled, pooled_mask], [logits, probs, bbox, masks])


@pytest.mark.parametrize("rois", [None, 6])
def test_head_shapes(rois):
    model = heads_model(rois=rois)
    rng = np.random.default_rng(0)
    for n in ([6] if rois else [6, 3]):
        logits, probs, bbox, masks = model([
            rng.normal(size=(2, n, 7, 7, DEPTH)).astype(np.float32),
            rng.normal(size=(2, n, 14, 14, DEPTH)).astype(np.float32)])
        assert tuple(logits.shape) == (2, n, 4)
        assert tuple(bbox.shape) == (2, n, 4, 4)
        assert tuple(masks.shape) == (2, n, 28, 28, 4)
        np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, rtol=1e-5)
        assert np.all((np.asarray(masks) >= 0) & (np.asarray(masks) <= 1))


def test_head_layer_names():
    names = {layer.name for layer in heads_model().layers if layer.weights}
    assert names == {"mrcnn_class_conv1", "mrcnn_class_bn1", "mrcnn_class_conv2",
                     "mrcnn_class_bn2", "mrcnn_class_logits", "mrcnn_bbox_fc",
                     "mrcnn_mask_conv1", "mrcnn_mask_bn1", "mrcnn_mask_conv2",
                     "mrcnn_mask_bn2", "mrcnn_mask_conv3", "mrcnn_mask_bn3",
                     "mrcnn_mask_conv4", "mrcnn_mask_bn4", "mrcnn_mask_deconv",
                     "mrcnn_mask"}
    model = heads_model()
    assert model.get_layer("mrcnn_bbox") is not None
    assert tuple(model.get_layer("mrcnn_class_conv1").weights[0].shape) == (7, 7, DEPTH, 32)


def test_roi_distributed_equals_per_roi_loop():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 6, 6, 3)).astype(np.float32)
    conv = keras.layers.Conv2D(4, 3, padding="same")
    wrapped = RoiDistributed(conv)
    got = np.asarray(wrapped(x))
    expected = np.stack([np.stack([np.asarray(conv(x[b, i:i + 1]))[0]
                                   for i in range(5)]) for b in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_roi_distributed_config_round_trip():
    layer = RoiDistributed(BatchNorm(train_bn=False), name="mrcnn_mask_bn1")
    layer.build((None, None, 14, 14, 8))
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, RoiDistributed) and clone.name == "mrcnn_mask_bn1"
    assert isinstance(clone.layer, BatchNorm) and clone.layer.train_bn is False


def test_heads_model_config_round_trip_gives_same_outputs():
    model = heads_model(rois=None)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    rng = np.random.default_rng(4)
    inputs = [rng.normal(size=(1, 3, 7, 7, DEPTH)).astype(np.float32),
              rng.normal(size=(1, 3, 14, 14, DEPTH)).astype(np.float32)]
    for a, b in zip(model(inputs), clone(inputs)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_rpn_model_names_and_shapes():
    rpn = build_rpn_model(1, 3, DEPTH)
    assert rpn.name == "rpn_model"
    assert [l.name for l in rpn.layers if l.weights] == [
        "rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"]
    levels = [keras.Input((None, None, DEPTH)) for _ in range(5)]
    model = keras.Model(levels, apply_rpn(rpn, levels))
    sizes = (16, 8, 4, 2, 1)
    feats = [np.zeros((2, s, s, DEPTH), np.float32) for s in sizes]
    logits, probs, bbox = model(feats)
    anchors = 3 * sum(s * s for s in sizes)
    assert tuple(logits.shape) == (2, anchors, 2) == tuple(probs.shape)
    assert tuple(bbox.shape) == (2, anchors, 4)
    for name in ("rpn_class_logits", "rpn_class", "rpn_bbox"):
        assert isinstance(model.get_layer(name), keras.layers.Concatenate)


def test_rpn_anchor_order_is_location_then_anchor():
    """Logits of cell (y, x), anchor a sit at row (y * W + x) * 3 + a."""
    rpn = build_rpn_model(1, 3, DEPTH)
    raw = rpn.get_layer("rpn_class_raw")
    raw.set_weights([np.zeros((1, 1, 512, 6), np.float32),
                     np.arange(6, dtype=np.float32)])
    logits, probs, _ = rpn(np.zeros((1, 2, 3, DEPTH), np.float32))
    expected = np.tile(np.arange(6, dtype=np.float32).reshape(3, 2), (6, 1))
    np.testing.assert_array_equal(np.asarray(logits)[0], expected)
    softmax = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(probs)[0], softmax, rtol=1e-6)
