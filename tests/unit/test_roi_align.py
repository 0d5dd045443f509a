"""crop_and_resize and PyramidROIAlign against numpy loops (bilinear sampling, levels)."""
import math

import keras
import numpy as np

from maskrcnnlib.model import tfops
from maskrcnnlib.model.roi_align import PyramidROIAlign, roi_levels

IMAGE_SIZE = 1024  # 224 / sqrt(area) = 0.21875 in normalized units


def bilinear_crop(image, box, crop_h, crop_w):
    """tf.image.crop_and_resize semantics, one box, by explicit loops."""
    height, width, channels = image.shape
    y1, x1, y2, x2 = [float(v) for v in box]
    out = np.zeros((crop_h, crop_w, channels))
    for i in range(crop_h):
        if crop_h > 1:
            y = y1 * (height - 1) + i * (y2 - y1) * (height - 1) / (crop_h - 1)
        else:
            y = 0.5 * (y1 + y2) * (height - 1)
        if y < 0 or y > height - 1:
            continue
        for j in range(crop_w):
            if crop_w > 1:
                x = x1 * (width - 1) + j * (x2 - x1) * (width - 1) / (crop_w - 1)
            else:
                x = 0.5 * (x1 + x2) * (width - 1)
            if x < 0 or x > width - 1:
                continue
            top, left = int(np.floor(y)), int(np.floor(x))
            bottom, right = int(np.ceil(y)), int(np.ceil(x))
            dy, dx = y - top, x - left
            upper = image[top, left] * (1 - dx) + image[top, right] * dx
            lower = image[bottom, left] * (1 - dx) + image[bottom, right] * dx
            out[i, j] = upper * (1 - dy) + lower * dy
    return out


def test_crop_and_resize_matches_bilinear_loop():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 9, 7, 3)).astype(np.float32)
    boxes = np.array([[0.1, 0.2, 0.8, 0.9], [0.0, 0.0, 1.0, 1.0], [-0.2, 0.3, 0.5, 1.3],
                      [0.4, 0.4, 0.4, 0.4]], np.float32)
    box_indices = np.array([0, 1, 1, 0])
    got = np.asarray(tfops.crop_and_resize(images, boxes, box_indices, (5, 4)))
    for k in range(4):
        expected = bilinear_crop(images[box_indices[k]], boxes[k], 5, 4)
        np.testing.assert_allclose(got[k], expected, atol=1e-5)


def meta(batch, size=IMAGE_SIZE, num_classes=3):
    row = [0, size, size, 3, size, size, 3, 0, 0, size, size, 1.0] + [1] * num_classes
    return np.array([row] * batch, np.float32)


def numpy_level(box):
    h, w = box[2] - box[0], box[3] - box[1]
    if h * w <= 0:
        return 2
    level = 4 + int(np.round(math.log2(math.sqrt(h * w) / (224.0 / IMAGE_SIZE))))
    return min(5, max(2, level))


def test_levels_follow_fpn_equation():
    # sqrt(h*w) in normalized units: 0.03 -> 2, 0.1 -> 3, 0.22 -> 4, 0.5 -> 5, 0 -> 2
    boxes = np.array([[[0, 0, 0.03, 0.03], [0.1, 0.1, 0.2, 0.2], [0, 0, 0.22, 0.22],
                       [0.2, 0.2, 0.7, 0.7], [0, 0, 0, 0]]], np.float32)
    got = np.asarray(roi_levels(boxes, meta(1)))
    np.testing.assert_array_equal(got, [[2, 3, 4, 5, 2]])


def test_pyramid_roi_align_matches_numpy_loop_and_keeps_order():
    rng = np.random.default_rng(3)
    sizes = [16, 8, 6, 4]
    maps = [rng.normal(size=(2, s, s, 3)).astype(np.float32) for s in sizes]
    sides = [0.03, 0.1, 0.22, 0.5, 0.6, 0.05, 0.25, 0.12]
    boxes = np.zeros((2, 9, 4), np.float32)  # last row stays zero padding
    for b in range(2):
        for n, side in enumerate(sides[::1 if b == 0 else -1]):
            y, x = rng.uniform(0, 1 - side, size=2)
            boxes[b, n] = [y, x, y + side, x + side]
    layer = PyramidROIAlign((7, 5), name="roi_align")
    got = np.asarray(layer([boxes, meta(2)] + maps))
    assert got.shape == (2, 9, 7, 5, 3)
    for b in range(2):
        for n in range(9):
            level = numpy_level(boxes[b, n])
            expected = bilinear_crop(maps[level - 2][b], boxes[b, n], 7, 5)
            np.testing.assert_allclose(got[b, n], expected, atol=1e-5)


def test_config_round_trip_and_symbolic_build():
    layer = PyramidROIAlign([14, 14], name="mask_align")
    clone = PyramidROIAlign.from_config(layer.get_config())
    assert clone.pool_shape == (14, 14) and clone.name == "mask_align"
    boxes = keras.Input((None, 4))
    image_meta = keras.Input((15,))
    maps = [keras.Input((s, s, 8)) for s in (16, 8, 4, 2)]
    out = clone([boxes, image_meta] + maps)
    assert tuple(out.shape) == (None, None, 14, 14, 8)
    model = keras.Model([boxes, image_meta] + maps, out)
    rng = np.random.default_rng(4)
    x = [np.array([[[0.1, 0.1, 0.5, 0.6]]], np.float32), meta(1)] + [
        rng.normal(size=(1, s, s, 8)).astype(np.float32) for s in (16, 8, 4, 2)]
    assert model.predict(x, verbose=0).shape == (1, 1, 14, 14, 8)


def test_gradient_reaches_the_feature_maps():
    import tensorflow as tf

    rng = np.random.default_rng(5)
    maps = [tf.Variable(rng.normal(size=(1, s, s, 2)).astype(np.float32)) for s in (8, 4, 4, 2)]
    boxes = np.array([[[0, 0, 0.03, 0.03], [0.2, 0.2, 0.7, 0.7]]], np.float32)  # P2 and P5
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(PyramidROIAlign((3, 3))([boxes, meta(1)] + maps))
    grads = tape.gradient(loss, maps)
    assert np.abs(grads[0].numpy()).sum() > 0 and np.abs(grads[3].numpy()).sum() > 0
    assert np.all(grads[1].numpy() == 0) and np.all(np.isfinite(grads[0].numpy()))
