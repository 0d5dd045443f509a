"""tfops NMS against a naive greedy numpy loop."""
import numpy as np

from maskrcnnlib.model import tfops


def iou(a, b):
    """IoU of two (y1, x1, y2, x2) boxes, numpy float64."""
    y1, x1 = max(a[0], b[0]), max(a[1], b[1])
    y2, x2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(y2 - y1, 0.0) * max(x2 - x1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def greedy_nms(boxes, scores, max_output, threshold):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if len(keep) == max_output:
            break
        if all(iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def random_boxes(rng, n):
    yx = rng.uniform(0, 0.8, size=(n, 2))
    hw = rng.uniform(0.05, 0.3, size=(n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


def test_nms_padded_matches_greedy_loop():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 60)
    scores = rng.permutation(60).astype(np.float32) / 60.0
    for threshold, max_output in [(0.3, 100), (0.5, 10), (0.7, 40)]:
        expected = greedy_nms(boxes.astype(np.float64), scores, max_output, threshold)
        indices, count = tfops.nms_padded(boxes, scores, max_output, threshold)
        indices, count = np.asarray(indices), int(count)
        assert indices.shape == (max_output,)
        assert count == len(expected)
        np.testing.assert_array_equal(indices[:count], expected)
        assert np.all(indices[count:] == 0)


def test_batched_nms_excludes_neg_inf_scores():
    rng = np.random.default_rng(1)
    boxes = np.stack([random_boxes(rng, 30), random_boxes(rng, 30)])
    scores = rng.uniform(0, 1, size=(2, 30)).astype(np.float32)
    scores[0, ::3] = -np.inf
    indices, counts = tfops.batched_nms_padded(boxes, scores, 20, 0.5, exclude_neg_inf=True)
    indices, counts = np.asarray(indices), np.asarray(counts)
    assert indices.shape == (2, 20)
    for b in range(2):
        subset = [i for i in range(30) if np.isfinite(scores[b, i])]
        expected = greedy_nms(boxes[b, subset].astype(np.float64), scores[b, subset], 20, 0.5)
        np.testing.assert_array_equal(indices[b, :counts[b]], np.array(subset)[expected])
