"""DetectionTargetLayer on hand-made cases with known IoU."""
import math

import keras
import numpy as np

from maskrcnnlib.model.targets import DetectionTargetLayer

STD = np.array([0.1, 0.1, 0.2, 0.2])
GT_IDS = np.array([[1, 2, -1, 0]], np.int32)  # instance, instance, crowd, padding
GT_BOXES = np.array([[[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.6, 0.0, 1.0, 0.3],
                      [0, 0, 0, 0]]], np.float32)
PROPOSALS = np.array([[[0.0, 0.0, 0.4, 0.4],     # p0: IoU 1 with gt 0 -> positive
                       [0.0, 0.0, 0.4, 0.24],    # p1: IoU 0.6 with gt 0 -> positive
                       [0.5, 0.5, 0.9, 0.78],    # p2: IoU 0.7 with gt 1 -> positive
                       [0.6, 0.0, 0.9, 0.3],     # p3: IoU 0 with gt, touches the crowd
                       [0.0, 0.0, 0.4, 0.15],    # p4: IoU 0.375 -> negative
                       [0.0, 0.6, 0.2, 0.9],     # p5: IoU 0 -> negative
                       [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)  # padding


def deltas(box, gt):
    """Hand formula: centre shift / size and log size ratio, divided by STD."""
    h, w, gh, gw = box[2] - box[0], box[3] - box[1], gt[2] - gt[0], gt[3] - gt[1]
    d = [(gt[0] + gh / 2 - box[0] - h / 2) / h, (gt[1] + gw / 2 - box[1] - w / 2) / w,
         math.log(gh / h), math.log(gw / w)]
    return np.array(d) / STD


def full_masks():
    masks = np.zeros((1, 20, 20, 4), bool)
    masks[0, :, :, 0] = True       # gt 0: everything
    masks[0, :14, :, 1] = True     # gt 1: rows 0..13
    return masks


def run(layer, masks):
    return [np.asarray(x) for x in layer([PROPOSALS, GT_IDS, GT_BOXES, masks])]


def test_positive_negative_sets_deltas_and_masks():
    layer = DetectionTargetLayer(10, 0.33, STD.tolist(), (4, 4), False, seed=3)
    rois, class_ids, target_deltas, masks = run(layer, full_masks())
    assert rois.shape == (1, 10, 4) and class_ids.shape == (1, 10)
    assert target_deltas.shape == (1, 10, 4) and masks.shape == (1, 10, 4, 4)
    assert class_ids.dtype == np.int32
    expected = {0: (1, deltas(PROPOSALS[0, 0], GT_BOXES[0, 0]), np.ones((4, 4))),
                1: (1, deltas(PROPOSALS[0, 1], GT_BOXES[0, 0]), np.ones((4, 4))),
                # p2 samples rows 9.5, 12.03, 14.57, 17.1 of gt 1's mask (ones above 14)
                2: (2, deltas(PROPOSALS[0, 2], GT_BOXES[0, 1]),
                    np.array([[1.0] * 4, [1.0] * 4, [0.0] * 4, [0.0] * 4]))}
    found = []
    for row in range(3):  # positives first, in random order
        p = int(np.where(np.all(PROPOSALS[0] == rois[0, row], axis=1))[0][0])
        found.append(p)
        class_id, d, mask = expected[p]
        assert class_ids[0, row] == class_id
        np.testing.assert_allclose(target_deltas[0, row], d, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(masks[0, row], mask)
    assert sorted(found) == [0, 1, 2]
    negatives = sorted(int(np.where(np.all(PROPOSALS[0] == rois[0, r], axis=1))[0][0])
                       for r in (3, 4))
    assert negatives == [4, 5]  # p3 touches the crowd box, the padding is never picked
    assert np.all(class_ids[0, 3:] == 0) and np.all(target_deltas[0, 3:] == 0)
    assert np.all(masks[0, 3:] == 0) and np.all(rois[0, 5:] == 0)


def test_mini_masks_are_cropped_in_gt_box_coordinates():
    mini = np.zeros((1, 8, 8, 4), np.float32)
    mini[0, :, :4, 0] = 1.0  # left half of gt 0's box
    layer = DetectionTargetLayer(10, 0.33, STD.tolist(), (4, 4), True, seed=3)
    rois, class_ids, _, masks = run(layer, mini)
    for row in range(3):
        if np.allclose(rois[0, row], PROPOSALS[0, 0]):    # whole gt box: columns 0, 2.3, 4.7, 7
            np.testing.assert_array_equal(masks[0, row], [[1, 1, 0, 0]] * 4)
        elif np.allclose(rois[0, row], PROPOSALS[0, 1]):  # x in [0, 0.6]: 0, 1.4, 2.8, 4.2
            np.testing.assert_array_equal(masks[0, row], [[1, 1, 1, 0]] * 4)


def test_sampling_limits_and_seed():
    # 5 positives (boxes shifted inside gt 0), 4 negatives
    shifts = [0.0, 0.01, 0.02, 0.03, 0.04]
    positives = [[s, s, 0.4 + s, 0.4 + s] for s in shifts]
    negatives = [[s, 0.5, s + 0.1, 0.6] for s in (0.0, 0.1, 0.2, 0.3)]
    proposals = np.array([positives + negatives], np.float32)
    args = [proposals, GT_IDS, GT_BOXES, full_masks()]
    first = DetectionTargetLayer(6, 0.5, STD.tolist(), (4, 4), False, seed=11)(args)
    rois, class_ids = np.asarray(first[0]), np.asarray(first[1])
    assert list(class_ids[0]) == [1, 1, 1, 0, 0, 0]  # int(6 * 0.5) = 3, then 2 * 3 - 3
    assert len({tuple(r) for r in rois[0]}) == 6
    assert all(list(r) in proposals[0, :5].tolist() for r in rois[0, :3])
    assert all(list(r) in proposals[0, 5:].tolist() for r in rois[0, 3:])
    again = DetectionTargetLayer(6, 0.5, STD.tolist(), (4, 4), False, seed=11)(args)
    np.testing.assert_array_equal(np.asarray(again[0]), rois)
    # no positives -> no ROIs at all (matterport keeps the ratio)
    none = DetectionTargetLayer(6, 0.5, STD.tolist(), (4, 4), False, seed=1)(
        [proposals[:, 5:], GT_IDS, GT_BOXES, full_masks()])
    assert np.all(np.asarray(none[0]) == 0)


def test_config_round_trip_and_symbolic_build():
    layer = DetectionTargetLayer(10, 0.33, (0.1, 0.1, 0.2, 0.2), (4, 4), False, seed=5,
                                 name="proposal_targets")
    config = layer.get_config()
    clone = DetectionTargetLayer.from_config(config)
    assert clone.get_config() == config
    ins = [keras.Input((8, 4)), keras.Input((4,), dtype="int32"), keras.Input((4, 4)),
           keras.Input((20, 20, 4), dtype="bool")]
    outs = clone(ins)
    assert [tuple(o.shape) for o in outs] == [(None, 10, 4), (None, 10), (None, 10, 4),
                                              (None, 10, 4, 4)]
    got = keras.Model(ins, outs).predict([PROPOSALS, GT_IDS, GT_BOXES, full_masks()],
                                         verbose=0)
    assert sorted(got[1][0].tolist())[-3:] == [1, 1, 2]
