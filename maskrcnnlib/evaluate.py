"""COCO-style accuracy of predicted instances against reference instances (numpy only).

Definitions follow COCO's evaluation for segmentation ("segm", area range "all",
at most ``max_detections`` per image): per class, detections of all images are
ranked by score; each one matches the unmatched reference instance of the same
image with the highest mask IoU at or above the threshold; precision is made
monotonic and sampled at 101 recall points; AP is their mean. Classes without any
reference instance are left out of the means.

Instances are given per image as boolean masks shaped [height, width, count]
(image rows, columns), class ids shaped [count] and, for predictions, scores.
"""
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class ImageInstances:
    """Instances of one image: masks [H, W, N] bool, class_ids [N], scores [N] or None."""

    masks: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray = None

    def __post_init__(self):
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be [height, width, count], got {self.masks.shape}")
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.class_ids) != self.masks.shape[2]:
            raise ValueError("one class id per mask is needed")


def mask_iou(masks_a, masks_b):
    """IoU between every mask of masks_a [H, W, Na] and masks_b [H, W, Nb] → [Na, Nb]."""
    a = masks_a.reshape(-1, masks_a.shape[-1]).astype(np.float64)
    b = masks_b.reshape(-1, masks_b.shape[-1]).astype(np.float64)
    intersection = a.T @ b
    union = a.sum(axis=0)[:, None] + b.sum(axis=0)[None, :] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def _match_image(predicted, reference, class_id, thresholds, max_detections):
    """Scores and true-positive flags [T, D] of one image's detections of one class."""
    detections = np.flatnonzero(predicted.class_ids == class_id)
    detections = detections[np.argsort(-predicted.scores[detections], kind="mergesort")]
    detections = detections[:max_detections]
    references = np.flatnonzero(reference.class_ids == class_id)
    true_positive = np.zeros((len(thresholds), len(detections)), dtype=bool)
    if len(detections) and len(references):
        ious = mask_iou(predicted.masks[..., detections], reference.masks[..., references])
        for t, threshold in enumerate(thresholds):
            taken = np.zeros(len(references), dtype=bool)
            for d in range(len(detections)):
                best, best_iou = -1, min(threshold, 1 - 1e-10)
                for g in range(len(references)):
                    if not taken[g] and ious[d, g] >= best_iou:
                        best, best_iou = g, ious[d, g]
                if best >= 0:
                    taken[best] = True
                    true_positive[t, d] = True
    return predicted.scores[detections], true_positive, len(references)


def _average_precision(scores, true_positive, reference_count):
    """101-point interpolated AP from pooled detections; -1 without references."""
    if reference_count == 0:
        return -1.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(true_positive[order])
    fp = np.cumsum(~true_positive[order])
    recall = tp / reference_count
    precision = tp / np.maximum(tp + fp, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    positions = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.array([precision[p] if p < len(precision) else 0.0 for p in positions])
    return float(sampled.mean())


def evaluate(predictions, references, class_ids=None, max_detections=100):
    """COCO mask AP per class and overall.

    predictions, references: lists of ImageInstances, one per image, same order.
    Returns {"AP50", "AP75", "mAP", "classes": {class_id: {"AP50", "AP75", "mAP",
    "references"}}}; overall figures are means over classes that have references
    (-1 when there are none).
    """
    if len(predictions) != len(references):
        raise ValueError("one prediction entry per reference image is needed")
    if class_ids is None:
        class_ids = sorted({int(c) for image in references for c in image.class_ids})
    per_class = {}
    for class_id in class_ids:
        scores, flags, count = [], [], 0
        for predicted, reference in zip(predictions, references):
            s, tp, n = _match_image(predicted, reference, class_id, IOU_THRESHOLDS,
                                    max_detections)
            scores.append(s)
            flags.append(tp)
            count += n
        scores = np.concatenate(scores) if scores else np.zeros(0)
        flags = np.concatenate(flags, axis=1) if flags else np.zeros((10, 0), bool)
        aps = [_average_precision(scores, flags[t], count) for t in range(len(IOU_THRESHOLDS))]
        per_class[int(class_id)] = {
            "references": count,
            "AP50": aps[0], "AP75": aps[5],
            "mAP": float(np.mean(aps)) if count else -1.0,
        }
    summary = {}
    for key in ("AP50", "AP75", "mAP"):
        values = [entry[key] for entry in per_class.values() if entry["references"]]
        summary[key] = float(np.mean(values)) if values else -1.0
    summary["classes"] = per_class
    return summary
