"""rpn_targets (anchor matching) on hand-made anchors, in pixels as matterport."""
import math

import numpy as np
import tensorflow as tf

from maskrcnnlib.model.rpn_targets import rpn_targets

STD = (0.1, 0.1, 0.2, 0.2)
GT_IDS = np.array([1, -1, 2, 0], np.int32)  # instance, crowd, instance, padding
GT_BOXES = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70], [0, 0, 0, 0]],
                    np.float32)
ANCHORS = np.array([[0, 0, 10, 10],    # IoU 1 -> positive
                    [0, 0, 10, 8],     # IoU 0.8 -> positive
                    [0, 0, 10, 6],     # IoU 0.6 -> neutral
                    [0, 0, 10, 2],     # IoU 0.2 -> negative
                    [40, 40, 50, 50],  # IoU 0 -> negative
                    [22, 22, 28, 28],  # inside the crowd -> neutral
                    [60, 60, 70, 64],  # IoU 0.4, tied best anchor of gt 2 -> positive
                    [60, 60, 64, 70],  # IoU 0.4, tied best anchor of gt 2 -> positive
                    [62, 62, 66, 66]],  # IoU 0.16 -> negative
                   np.float32)


def test_hand_made_anchors():
    match, bbox = rpn_targets(ANCHORS, GT_IDS, GT_BOXES, 8, STD, seed=(1, 2))
    match, bbox = np.asarray(match), np.asarray(bbox)
    assert match.dtype == np.int32 and bbox.shape == (8, 4)
    np.testing.assert_array_equal(match, [1, 1, 0, -1, -1, 0, 1, 1, -1])
    log = math.log
    expected = np.zeros((8, 4))
    expected[1] = [0, (5 - 4) / 8 / 0.1, 0, log(10 / 8) / 0.2]      # anchor 1 -> gt 0
    expected[2] = [0, (65 - 62) / 4 / 0.1, 0, log(10 / 4) / 0.2]    # anchor 6 -> gt 2
    expected[3] = [(65 - 62) / 4 / 0.1, 0, log(10 / 4) / 0.2, 0]    # anchor 7 -> gt 2
    np.testing.assert_allclose(bbox, expected, rtol=1e-5, atol=1e-6)


def test_subsampling_keeps_half_positives_and_fills_with_negatives():
    near = [[0, s, 10, 10 + s] for s in np.linspace(0, 1, 10)]       # IoU >= 0.82
    far = [[100 + 10 * i, 100, 110 + 10 * i, 110] for i in range(10)]  # IoU 0
    anchors = np.array(near + far, np.float32)
    ids, boxes = np.array([1], np.int32), np.array([[0, 0, 10, 10]], np.float32)
    match, bbox = rpn_targets(anchors, ids, boxes, 6, STD, seed=(3, 4))
    match, bbox = np.asarray(match), np.asarray(bbox)
    assert np.sum(match[:10] == 1) == 3 and np.all(match[:10] >= 0)
    assert np.sum(match[10:] == -1) == 3 and np.all(match[10:] <= 0)
    positives = np.where(match == 1)[0]
    for row, i in enumerate(positives):  # packed in anchor order
        expected_dx = (5 - (anchors[i, 1] + 5)) / 10 / 0.1
        np.testing.assert_allclose(bbox[row], [0, expected_dx, 0, 0], atol=1e-5)
    assert np.all(bbox[3:] == 0)
    again, _ = rpn_targets(anchors, ids, boxes, 6, STD, seed=(3, 4))
    np.testing.assert_array_equal(np.asarray(again), match)


def test_no_instances_and_tf_data_map():
    ids = np.array([-1, 0], np.int32)  # only a crowd and padding
    boxes = np.array([[20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    dataset = tf.data.Dataset.from_tensors((ANCHORS, ids, boxes)).map(
        lambda a, i, b: rpn_targets(a, i, b, 8, STD))
    match, bbox = next(iter(dataset))
    np.testing.assert_array_equal(match.numpy(), [-1, -1, -1, -1, -1, 0, -1, -1, -1])
    assert np.all(bbox.numpy() == 0)
