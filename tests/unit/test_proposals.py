"""ProposalLayer against a numpy re-implementation of matterport's steps."""
import keras
import numpy as np

from maskrcnnlib.model.proposals import ProposalLayer

STD = np.array([0.1, 0.1, 0.2, 0.2])


def iou(a, b):
    inter = (max(min(a[2], b[2]) - max(a[0], b[0]), 0)
             * max(min(a[3], b[3]) - max(a[1], b[1]), 0))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def numpy_proposals(probs, deltas, anchors, count, threshold, limit):
    order = sorted(range(len(probs)), key=lambda i: (-probs[i, 1], i))[:limit]
    scores, d, a = probs[order, 1], deltas[order] * STD, anchors[order]
    h, w = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cy, cx = a[:, 0] + 0.5 * h + d[:, 0] * h, a[:, 1] + 0.5 * w + d[:, 1] * w
    h, w = h * np.exp(d[:, 2]), w * np.exp(d[:, 3])
    boxes = np.clip(np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], 1), 0, 1)
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if len(keep) < count and all(iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    out = np.zeros((count, 4))
    out[:len(keep)] = boxes[keep]
    return out


def inputs(rng, batch, num):
    fg = rng.permutation(batch * num).reshape(batch, num) / (batch * num)
    probs = np.stack([1 - fg, fg], -1).astype(np.float32)
    deltas = rng.normal(scale=1.0, size=(batch, num, 4)).astype(np.float32)
    yx = rng.uniform(-0.1, 0.8, size=(batch, num, 2))
    hw = rng.uniform(0.05, 0.4, size=(batch, num, 2))
    anchors = np.concatenate([yx, yx + hw], -1).astype(np.float32)
    return probs, deltas, anchors


def test_matches_numpy_steps_and_pads_with_zeros():
    rng = np.random.default_rng(5)
    probs, deltas, anchors = inputs(rng, 2, 80)
    for count, threshold, limit in [(30, 0.5, 50), (100, 0.7, 60)]:
        layer = ProposalLayer(count, threshold, limit, STD.tolist(), name="proposals")
        got = np.asarray(layer([probs, deltas, anchors]))
        assert got.shape == (2, count, 4)
        for b in range(2):
            expected = numpy_proposals(probs[b], deltas[b], anchors[b], count, threshold, limit)
            np.testing.assert_allclose(got[b], expected, atol=1e-6)
    assert np.all(got[:, 60:] == 0)  # at most pre_nms_limit boxes survive


def test_config_round_trip_and_dynamic_anchor_count():
    layer = ProposalLayer(10, 0.6, 25, (0.1, 0.1, 0.2, 0.2), name="ROI")
    config = layer.get_config()
    clone = ProposalLayer.from_config(config)
    assert clone.get_config() == config
    ins = [keras.Input((None, 2)), keras.Input((None, 4)), keras.Input((None, 4))]
    model = keras.Model(ins, clone(ins))
    probs, deltas, anchors = inputs(np.random.default_rng(6), 1, 40)
    got = model.predict([probs, deltas, anchors], verbose=0)
    expected = numpy_proposals(probs[0], deltas[0], anchors[0], 10, 0.6, 25)
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
