"""Our COCO mask AP against pycocotools' COCOeval on the same random instances."""
import numpy as np
import pytest

from maskrcnnlib.evaluate import ImageInstances, evaluate, mask_iou

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


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


def coco_figures(references, predictions, class_ids):
    images, annotations, results = [], [], []
    for image_id, (ref, pred) in enumerate(zip(references, predictions), start=1):
        h, w = ref.masks.shape[:2]
        images.append({"id": image_id, "height": h, "width": w})
        for i in range(ref.masks.shape[2]):
            rle = mask_utils.encode(np.asfortranarray(ref.masks[..., i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(ref.class_ids[i]), "segmentation": rle,
                                "area": float(ref.masks[..., i].sum()), "iscrowd": 0,
                                "bbox": list(mask_utils.toBbox(rle))})
        for i in range(pred.masks.shape[2]):
            rle = mask_utils.encode(np.asfortranarray(pred.masks[..., i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append({"image_id": image_id, "category_id": int(pred.class_ids[i]),
                            "segmentation": rle, "score": float(pred.scores[i])})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": c} for c in class_ids]}
    coco.createIndex()
    detections = coco.loadRes(results) if results else COCO()
    evaluator = COCOeval(coco, detections, "segm")
    evaluator.params.areaRng = [[0, 1e10]]
    evaluator.params.areaRngLbl = ["all"]
    evaluator.evaluate()
    evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    per_class = {}
    for k, class_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k]
        per_class[class_id] = [float(p[t][p[t] > -1].mean()) if (p[t] > -1).any() else -1
                               for t in range(p.shape[0])]
    return per_class


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
        if ours["classes"][class_id]["references"] == 0:
            continue
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
