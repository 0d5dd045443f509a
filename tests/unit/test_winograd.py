"""Winograd F(4x4, 3x3) convolution against a naive numpy convolution, and the
inference rewrite that uses it (model.inference.WinogradConv, WinogradDense)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from maskrcnnlib.model import winograd
from maskrcnnlib.model.inference import WinogradConv, WinogradDense
from maskrcnnlib.model.winograd import cook_toom, tile_for, transform_kernel, winograd_conv3x3


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


def test_the_wrapper_computes_its_conv_by_winograd_once_it_has_the_transform(monkeypatch):
    """A WinogradConv gives its conv's outputs (bias and activation included) by
    Winograd once the transformed kernel of the map's tile is there; before that, and
    on maps under MIN_PIXELS, it is the conv itself, and it asks for the tile."""
    calls = []
    original = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3",
                        lambda x, k, **kw: calls.append(tuple(x.shape)) or original(x, k, **kw))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 64, 48, 6)).astype("float32")
    conv = keras.layers.Conv2D(7, 3, padding="same", activation="relu")
    conv.build(x.shape)
    conv.set_weights([rng.normal(size=w.shape).astype("float32") for w in conv.get_weights()])
    expected = np.asarray(conv(x))
    wrapper = WinogradConv(conv)
    np.testing.assert_array_equal(np.asarray(wrapper(x)), expected)
    assert calls == [] and wrapper.wanted == {4}
    wrapper.transformed[4] = tf.Variable(transform_kernel(conv.kernel, 4))
    np.testing.assert_allclose(np.asarray(wrapper(x)), expected,
                               atol=2e-5 * np.abs(expected).max())
    assert calls == [(1, 64, 48, 6)]
    small = x[:, :15, :16]  # 240 output cells: under MIN_PIXELS, direct
    np.testing.assert_array_equal(np.asarray(wrapper(small)), np.asarray(conv(small)))
    assert calls == [(1, 64, 48, 6)] and wrapper.wanted == {4}
    # its own variables are the conv's (the transforms are not the model's weights)
    assert {id(v) for v in wrapper.weights} == {id(conv.kernel), id(conv.bias)}


def test_the_rewrite_wraps_only_the_convs_winograd_applies_to_and_shares_the_rest():
    """WinogradDense copies a model's graph with each 3x3 'same' stride-1 conv
    (nested models too) wrapped; every other layer, and every variable, is the
    model's own, so weights set on the model are the rewrite's."""
    image = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="same3")(image)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="strided")(x)
    x = keras.layers.Conv2D(8, 1, name="pointwise")(x)
    inner_input = keras.Input((None, None, 8))
    inner = keras.Model(inner_input, keras.layers.Conv2D(
        4, 3, padding="same", activation="relu", name="inner3")(inner_input), name="inner")
    model = keras.Model(image, [inner(x), inner(keras.layers.MaxPooling2D(name="pool")(x))])
    rewrite = WinogradDense(model)
    assert sorted(c.conv.name for c in rewrite.convs) == ["inner3", "same3"]
    assert {id(v) for v in rewrite.model.weights} == {id(v) for v in model.weights}
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype("float32") / 4
                       for w in model.get_weights()])
    batch = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    rewrite.prepare(batch.shape)
    rewrite.make()
    # inner3 sees 32x32 and 16x16 maps (m = 4 for both: few channels)
    assert {c.conv.name: sorted(c.transformed) for c in rewrite.convs} == {
        "same3": [4], "inner3": [4]}
    assert rewrite.nbytes == 4 * 36 * (3 * 8 + 8 * 4)
    for got, want in zip(rewrite.model(batch), model(batch)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                                   atol=3e-5 * np.abs(np.asarray(want)).max())
