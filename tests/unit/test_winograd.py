"""Winograd F(4x4, 3x3) convolution against a naive numpy convolution, and the layer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from maskrcnnlib.model import winograd
from maskrcnnlib.model.winograd import Conv2D, cook_toom, tile_for, winograd_conv3x3


def naive_same_conv3x3(x, kernel):
    """'same' 3x3 convolution, stride 1, by explicit sums in float64."""
    batch, height, width, _ = x.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((batch, height, width, kernel.shape[3]))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("bhwc,ck->bhwk", padded[:, dy:dy + height, dx:dx + width],
                             kernel[dy, dx].astype(np.float64))
    return out


@pytest.mark.parametrize("m", [2, 4, 6])
def test_cook_toom_matrices_compute_a_1d_correlation(m):
    at, g, bt = cook_toom(m, 3, points=(0, 1, -1, 2, -2, 0.5, -0.5))
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, f = rng.normal(size=m + 2), rng.normal(size=3)
        expected = [d[i:i + 3] @ f for i in range(m)]
        np.testing.assert_allclose(at @ ((g @ f) * (bt @ d)), expected, atol=1e-12)


def test_cook_toom_needs_distinct_points():
    with pytest.raises(ValueError, match="distinct"):
        cook_toom(4, 3, points=(0, 1, 1, 2, -2))


@pytest.mark.parametrize("m", [4, 6])
@pytest.mark.parametrize("shape", [(1, 16, 16, 8, 5), (2, 13, 10, 3, 4), (1, 4, 7, 6, 2),
                                   (3, 1, 1, 2, 3), (1, 14, 20, 5, 3)])
def test_winograd_equals_direct_convolution(shape, m):
    """Sizes that are and are not multiples of the output tile, batches, 1x1."""
    batch, height, width, depth, filters = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=(batch, height, width, depth)).astype("float32")
    kernel = rng.normal(size=(3, 3, depth, filters)).astype("float32")
    expected = naive_same_conv3x3(x, kernel)
    ours = np.asarray(winograd_conv3x3(tf.constant(x), tf.constant(kernel), m=m))
    assert ours.shape == expected.shape
    scale = np.abs(expected).max()
    assert np.abs(ours - expected).max() <= (2e-5 if m == 4 else 5e-5) * scale


def test_the_large_tile_is_for_large_maps_with_many_channels():
    assert tile_for(128, 128, 256) == 6 and tile_for(96, 200, 128) == 6
    assert tile_for(64, 64, 256) == 4 and tile_for(128, 128, 64) == 4
    assert tile_for(128, 90, 512) == 4


def test_winograd_picks_the_tile_from_the_map():
    """m=None takes tile_for's choice: both tiles give the direct convolution."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 100, 98, 128)).astype("float32")
    kernel = rng.normal(size=(3, 3, 128, 4)).astype("float32") / 30
    auto = np.asarray(winograd_conv3x3(tf.constant(x), tf.constant(kernel)))
    six = np.asarray(winograd_conv3x3(tf.constant(x), tf.constant(kernel), m=6))
    np.testing.assert_array_equal(auto, six)
    expected = np.asarray(tf.nn.conv2d(x, kernel, 1, "SAME"))
    assert np.abs(auto - expected).max() <= 5e-5 * np.abs(expected).max()


def test_layer_uses_winograd_only_where_it_applies(monkeypatch):
    """Same outputs as keras Conv2D with the same weights; Winograd only for large
    static 'same' stride-1 3x3 inputs of a layer built with winograd=True."""
    calls = []
    original = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3",
                        lambda x, k, **kw: calls.append(tuple(x.shape)) or original(x, k, **kw))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 64, 48, 6)).astype("float32")
    small = x[:, :16, :16]
    reference = keras.layers.Conv2D(7, 3, padding="same", activation="relu")
    ours = Conv2D(7, 3, padding="same", activation="relu", winograd=True)
    plain = Conv2D(7, 3, padding="same", activation="relu")
    strided = Conv2D(7, 3, strides=2, padding="same", winograd=True)
    for layer in (reference, ours, plain, strided):
        layer.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    for layer in (reference, ours, plain, strided):
        layer.set_weights(weights)

    expected = np.asarray(reference(x))
    np.testing.assert_allclose(np.asarray(ours(x)), expected, atol=2e-5 * np.abs(expected).max())
    assert calls == [(1, 64, 48, 6)]
    np.testing.assert_array_equal(np.asarray(plain(x)), expected)
    ours(small)  # 16 x 16 output pixels: below MIN_PIXELS, direct
    strided(x)
    assert calls == [(1, 64, 48, 6)]
    assert [w.path.split("/")[-1] for w in ours.weights] == ["kernel", "bias"]


def test_layer_round_trips_through_its_config():
    layer = Conv2D(4, 3, padding="same", winograd=True, name="fpn_p2")
    again = Conv2D.from_config(layer.get_config())
    assert again.winograd and again.name == "fpn_p2" and again.filters == 4
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Conv2D) and restored.winograd
