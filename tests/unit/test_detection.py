"""DetectionLayer: a hand-worked case and a numpy re-implementation of refine_detections."""
import math

import keras
import numpy as np

from maskrcnnlib.model.detection import DetectionLayer

STD = np.array([0.1, 0.1, 0.2, 0.2])


def meta(batch, window, size=101, num_classes=3):
    row = [0, size, size, 3, size, size, 3] + list(window) + [1.0] + [1] * num_classes
    return np.array([row] * batch, np.float32)


def hand_case():
    """6 ROIs, 3 classes, window x <= 0.5 (pixels [0, 0, 101, 51] of a 101 x 101 image)."""
    rois = np.array([[0.1, 0.1, 0.3, 0.3],     # class 1, 0.8, height doubled -> [0, .1, .4, .3]
                     [0.12, 0.1, 0.32, 0.3],   # class 1, 0.7, IoU 0.5 with ROI 0 -> suppressed
                     [0.12, 0.1, 0.32, 0.3],   # class 2, 0.6 -> kept (NMS is per class)
                     [0.5, 0.4, 0.7, 0.6],     # class 2, 0.9, moved down 0.01, x2 clipped
                     [0.2, 0.2, 0.4, 0.4],     # background
                     [0.6, 0.1, 0.8, 0.3]],    # class 1, 0.4 < min_confidence
                    np.float32)
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6], [0.05, 0.05, 0.9],
                      [0.8, 0.1, 0.1], [0.35, 0.4, 0.25]], np.float32)
    deltas = np.zeros((6, 3, 4), np.float32)
    deltas[0, 1, 2] = math.log(2.0) / 0.2
    deltas[3, 2, 0] = 0.5
    deltas[3, 1, 0] = 9.0  # deltas of other classes are ignored
    expected = np.array([[0.51, 0.4, 0.71, 0.5, 2, 0.9],
                         [0.0, 0.1, 0.4, 0.3, 1, 0.8],
                         [0.12, 0.1, 0.32, 0.3, 2, 0.6]])
    return rois, probs, deltas, expected


def test_hand_worked_detections():
    rois, probs, deltas, expected = hand_case()
    # second image: everything background -> no detections
    bg = np.tile(np.array([[0.9, 0.05, 0.05]], np.float32), (6, 1))
    layer = DetectionLayer(5, 0.5, 0.3, STD.tolist(), name="mrcnn_detection")
    got = np.asarray(layer([np.stack([rois, rois]), np.stack([probs, bg]),
                            np.stack([deltas, deltas]), meta(2, [0, 0, 101, 51])]))
    assert got.shape == (2, 5, 6)
    np.testing.assert_allclose(got[0, :3], expected, atol=1e-6)
    assert np.all(got[0, 3:] == 0) and np.all(got[1] == 0)
    top2 = DetectionLayer(2, 0.5, 0.3, STD.tolist())([rois[None], probs[None], deltas[None],
                                                      meta(1, [0, 0, 101, 51])])
    np.testing.assert_allclose(np.asarray(top2)[0], expected[:2], atol=1e-6)


def iou(a, b):
    inter = (max(min(a[2], b[2]) - max(a[0], b[0]), 0)
             * max(min(a[3], b[3]) - max(a[1], b[1]), 0))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def numpy_refine(rois, probs, deltas, window, max_instances, min_conf, threshold):
    class_ids = probs.argmax(1)
    scores = probs[np.arange(len(rois)), class_ids]
    d = deltas[np.arange(len(rois)), class_ids] * STD
    h, w = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
    cy, cx = rois[:, 0] + 0.5 * h + d[:, 0] * h, rois[:, 1] + 0.5 * w + d[:, 1] * w
    h, w = h * np.exp(d[:, 2]), w * np.exp(d[:, 3])
    boxes = np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], 1)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], window[0], window[2])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], window[1], window[3])
    keep = [i for i in range(len(rois)) if class_ids[i] > 0 and scores[i] >= min_conf]
    kept = []
    for c in sorted(set(class_ids[keep])):
        members = sorted([i for i in keep if class_ids[i] == c], key=lambda i: (-scores[i], i))
        chosen = []
        for i in members:
            if len(chosen) < max_instances and all(iou(boxes[i], boxes[k]) <= threshold
                                                   for k in chosen):
                chosen.append(i)
        kept += chosen
    kept = sorted(kept, key=lambda i: (-scores[i], i))[:max_instances]
    out = np.zeros((max_instances, 6))
    for row, i in enumerate(kept):
        out[row] = list(boxes[i]) + [class_ids[i], scores[i]]
    return out


def test_matches_numpy_refine_detections():
    rng = np.random.default_rng(7)
    batch, num, classes = 2, 40, 4
    yx = rng.uniform(0, 0.7, size=(batch, num, 2))
    rois = np.concatenate([yx, yx + rng.uniform(0.1, 0.3, size=(batch, num, 2))], -1)
    logits = rng.normal(scale=2.0, size=(batch, num, classes))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    deltas = rng.normal(scale=0.5, size=(batch, num, classes, 4))
    image_meta = meta(batch, [10, 0, 91, 101], num_classes=classes)
    window = np.array([0.1, 0.0, 0.9, 1.0])  # (pixels - [0, 0, 1, 1]) / 100
    args = [x.astype(np.float32) for x in (rois, probs, deltas)] + [image_meta]
    got = np.asarray(DetectionLayer(12, 0.3, 0.3, STD.tolist())(args))
    for b in range(batch):
        expected = numpy_refine(*[x[b].astype(np.float64) for x in args[:3]], window, 12,
                                0.3, 0.3)
        np.testing.assert_allclose(got[b], expected, atol=1e-5)


def test_config_round_trip_and_symbolic_build():
    layer = DetectionLayer(7, 0.7, 0.3, (0.1, 0.1, 0.2, 0.2), name="mrcnn_detection")
    config = layer.get_config()
    assert DetectionLayer.from_config(config).get_config() == config
    ins = [keras.Input((None, 4)), keras.Input((None, 3)), keras.Input((None, 3, 4)),
           keras.Input((15,))]
    out = DetectionLayer.from_config(config)(ins)
    assert tuple(out.shape) == (None, 7, 6)
    rois, probs, deltas, expected = hand_case()
    got = keras.Model(ins, out).predict(
        [rois[None], probs[None], deltas[None], meta(1, [0, 0, 101, 51])], verbose=0)
    np.testing.assert_allclose(got[0, :2], expected[:2], atol=1e-6)  # min_confidence 0.7
    assert np.all(got[0, 2:] == 0)
