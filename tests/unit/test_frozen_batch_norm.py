"""Frozen batch norm (train_bn=False, matterport's default) runs as one fused op; it
must still compute (x - mean) / sqrt(var + eps) * gamma + beta with the moving
statistics, in training mode too, and give x, gamma and beta their gradients.
References: the formula and its derivatives by hand in float64 numpy."""
import numpy as np
import pytest

import keras
import tensorflow as tf

from maskrcnnlib.model.backbone import BatchNorm


def _layer(channels, rng):
    layer = BatchNorm(train_bn=False)
    layer.build((None, 5, 6, channels))
    layer.gamma.assign(rng.uniform(0.5, 2.0, channels).astype("float32"))
    layer.beta.assign(rng.uniform(-1.0, 1.0, channels).astype("float32"))
    layer.moving_mean.assign(rng.uniform(-0.5, 0.5, channels).astype("float32"))
    layer.moving_variance.assign(rng.uniform(0.2, 3.0, channels).astype("float32"))
    return layer


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
def test_frozen_batch_norm_value_and_gradients(policy, tolerance):
    rng = np.random.default_rng(4)
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = _layer(7, rng)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = rng.normal(1.0, 2.0, (2, 5, 6, 7)).astype("float32")
    weight = rng.normal(size=x.shape).astype("float32")  # loss = sum(weight * y)
    inputs = tf.cast(tf.constant(x), layer.compute_dtype)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = layer(inputs, training=True)  # frozen: the moving statistics all the same
        loss = tf.reduce_sum(tf.cast(y, "float32") * weight)
    dx, dgamma, dbeta = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
    assert y.dtype == layer.compute_dtype

    x64 = tf.cast(inputs, "float64").numpy()  # what the layer saw
    gamma, beta, mean, var = (np.asarray(v, dtype="float64") for v in (
        layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))
    inv = 1.0 / np.sqrt(var + layer.epsilon)
    expected = (x64 - mean) * inv * gamma + beta
    scale = np.abs(expected).max()
    np.testing.assert_allclose(tf.cast(y, "float64").numpy(), expected, atol=tolerance * scale)
    # d/dx = weight * gamma * inv; d/dgamma = sum(weight * (x - mean) * inv); d/dbeta = sum(weight)
    np.testing.assert_allclose(tf.cast(dx, "float64").numpy(), weight * gamma * inv,
                               atol=tolerance * np.abs(weight * gamma * inv).max())
    want_gamma = (weight * (x64 - mean) * inv).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(dgamma.numpy(), want_gamma, atol=tolerance * np.abs(want_gamma).max())
    want_beta = weight.sum(axis=(0, 1, 2))  # the upstream gradient is in the compute dtype
    np.testing.assert_allclose(dbeta.numpy(), want_beta, atol=tolerance * np.abs(want_beta).max())
    # frozen: the statistics do not move
    assert np.array_equal(np.asarray(layer.moving_mean, dtype="float64"), mean)


def test_trainable_batch_norm_still_uses_batch_statistics():
    layer = BatchNorm(train_bn=None)
    x = np.random.default_rng(1).normal(3.0, 2.0, (4, 3, 3, 2)).astype("float32")
    y = layer(tf.constant(x), training=True).numpy()
    assert abs(y.mean()) < 1e-3 and abs(y.std() - 1.0) < 1e-2
