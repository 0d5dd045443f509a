"""Our COCO mask AP against pycocotools' COCOeval on the same random instances."""
import numpy as np
import pytest

from maskrcnnlib.evaluate import ImageInstances, evaluate, mask_iou

pycocotools = pytest.importorskip("pycocotools")
from support.coco import coco_figures  # noqa: E402


def random_scene(rng, height=64, width=80, classes=(1, 2)):
    """Reference rectangles/ellipses and predictions that are jittered copies or noise."""
    count = rng.integers(1, 7)
    yy, xx = np.mgrid[:height, :width]
    ref_masks, ref_classes = [], []
    for _ in range(count):
        cy, cx = rng.integers(8, height - 8), rng.integers(8, width - 8)
        ry, rx = rng.integers(3, 10), rng.integers(3, 10)
        ref_masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
        ref_classes.append(rng.choice(classes))
    pred_masks, pred_classes, scores = [], [], []
    for mask, class_id in zip(ref_masks, ref_classes):
        if rng.random() < 0.8:
            shifted = np.roll(mask, (rng.integers(-3, 4), rng.integers(-3, 4)), axis=(0, 1))
            pred_masks.append(shifted)
            pred_classes.append(class_id if rng.random() < 0.85 else rng.choice(classes))
            scores.append(rng.random())
    for _ in range(rng.integers(0, 3)):  # false positives
        y, x = rng.integers(0, height - 10), rng.integers(0, width - 10)
        mask = np.zeros((height, width), bool)
        mask[y:y + rng.integers(2, 10), x:x + rng.integers(2, 10)] = True
        pred_masks.append(mask)
        pred_classes.append(rng.choice(classes))
        scores.append(rng.random())
    stack = lambda ms: np.stack(ms, -1) if ms else np.zeros((height, width, 0), bool)  # noqa
    return (ImageInstances(stack(ref_masks), ref_classes),
            ImageInstances(stack(pred_masks), pred_classes, scores))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_average_precision_matches_pycocotools(seed):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(5)]
    references = [s[0] for s in scenes]
    predictions = [s[1] for s in scenes]
    ours = evaluate(predictions, references, class_ids=[1, 2])
    theirs = coco_figures(references, predictions, [1, 2])
    for class_id in (1, 2):
        expected = theirs[class_id]
        assert ours["classes"][class_id]["references"] > 0  # else nothing is compared
        assert ours["classes"][class_id]["AP50"] == pytest.approx(expected[0], abs=1e-9)
        assert ours["classes"][class_id]["AP75"] == pytest.approx(expected[5], abs=1e-9)
        assert ours["classes"][class_id]["mAP"] == pytest.approx(np.mean(expected), abs=1e-9)


def test_mask_iou_hand_case():
    a = np.zeros((4, 4, 1), bool)
    a[:2, :2] = True  # 4 cells
    b = np.zeros((4, 4, 2), bool)
    b[:2, :, 0] = True  # 8 cells, 4 shared -> 4/8
    b[2:, 2:, 1] = True  # disjoint
    assert mask_iou(a, b).tolist() == [[0.5, 0.0]]


def test_perfect_predictions_score_one():
    masks = np.zeros((10, 10, 2), bool)
    masks[:3, :3, 0] = True
    masks[5:, 5:, 1] = True
    reference = ImageInstances(masks, [1, 2])
    prediction = ImageInstances(masks, [1, 2], [0.9, 0.8])
    result = evaluate([prediction], [reference])
    assert result["AP50"] == result["mAP"] == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_figures_from_cell_counts_equal_the_mask_figures(seed):
    """evaluate_overlaps (id grids: areas and common cells only) gives evaluate()'s
    figures, precision, recall and F1 included, for one image."""
    from maskrcnnlib.evaluate import evaluate_overlaps

    reference, prediction = random_scene(np.random.default_rng(100 + seed))
    dense = evaluate([prediction], [reference], class_ids=[1, 2])
    detections = [(int(c), float(s), int(prediction.masks[..., i].sum()))
                  for i, (c, s) in enumerate(zip(prediction.class_ids, prediction.scores))]
    references = [(int(c), int(reference.masks[..., i].sum()))
                  for i, c in enumerate(reference.class_ids)]
    overlaps = {(d, g): int((prediction.masks[..., d] & reference.masks[..., g]).sum())
                for d in range(len(detections)) for g in range(len(references))}
    sparse = evaluate_overlaps(detections, references, overlaps, class_ids=[1, 2])
    assert sparse["classes"].keys() == dense["classes"].keys()
    for class_id, figures in dense["classes"].items():
        assert sparse["classes"][class_id] == pytest.approx(figures)
    assert {k: v for k, v in sparse.items() if k != "classes"} == pytest.approx(
        {k: v for k, v in dense.items() if k != "classes"})


def test_precision_recall_f1_by_hand():
    """Two references of class 1; three detections: one exact, one shifted off
    (IoU 1/3), one on nothing: precision 1/3, recall 1/2, F1 0.4."""
    masks = np.zeros((20, 20, 2), bool)
    masks[:4, :4, 0] = True
    masks[10:14, 10:14, 1] = True
    found = np.zeros((20, 20, 3), bool)
    found[:4, :4, 0] = True
    found[10:14, 12:16, 1] = True  # 8 of 24 cells in common
    found[16:, :4, 2] = True
    result = evaluate([ImageInstances(found, [1, 1, 1], [0.9, 0.8, 0.7])],
                      [ImageInstances(masks, [1, 1])])["classes"][1]
    assert (result["detections"], result["matched"], result["references"]) == (3, 1, 2)
    assert result["precision"] == pytest.approx(1 / 3)
    assert result["recall"] == pytest.approx(0.5)
    assert result["F1"] == pytest.approx(0.4)
