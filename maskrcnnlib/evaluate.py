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


def _greedy_match(candidates, reference_count, thresholds):
    """COCO's matching of score-ranked detections: true-positive flags [T, D].

    candidates: per detection (best score first), [(reference index, IoU)] in
    reference order, the references it overlaps. At each threshold every
    detection takes the unmatched reference of highest IoU >= threshold (the
    last of equals, as COCOeval does).
    """
    true_positive = np.zeros((len(thresholds), len(candidates)), dtype=bool)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(reference_count, dtype=bool)
        for d, overlaps in enumerate(candidates):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for g, iou in overlaps:
                if not taken[g] and iou >= best_iou:
                    best, best_iou = g, iou
            if best >= 0:
                taken[best] = True
                true_positive[t, d] = True
    return true_positive


def _match_image(predicted, reference, class_id, thresholds, max_detections):
    """Scores and true-positive flags [T, D] of one image's detections of one class."""
    detections = np.flatnonzero(predicted.class_ids == class_id)
    detections = detections[np.argsort(-predicted.scores[detections], kind="mergesort")]
    detections = detections[:max_detections]
    references = np.flatnonzero(reference.class_ids == class_id)
    candidates = [[] for _ in detections]
    if len(detections) and len(references):
        ious = mask_iou(predicted.masks[..., detections], reference.masks[..., references])
        candidates = [[(g, ious[d, g]) for g in np.flatnonzero(ious[d] > 0)]
                      for d in range(len(detections))]
    true_positive = _greedy_match(candidates, len(references), thresholds)
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
    Returns {"AP50", "AP75", "mAP", "precision", "recall", "F1", "classes":
    {class_id: {the same, "references", "detections", "matched"}}}; overall
    figures are means over classes that have references (-1 when there are
    none). precision, recall and F1 count matches at IoU 0.5 among all
    detections given (those above the score threshold they were made with).
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
        per_class[int(class_id)] = _class_figures(scores, flags, count)
    return _summary(per_class)


def _class_figures(scores, flags, count):
    """AP50, AP75, mAP, and precision / recall / F1 at IoU 0.5 over all detections."""
    aps = [_average_precision(scores, flags[t], count) for t in range(len(IOU_THRESHOLDS))]
    matched = int(flags[0].sum()) if flags.size else 0
    precision = matched / len(scores) if len(scores) else 0.0
    recall = matched / count if count else 0.0
    return {"references": int(count), "detections": int(len(scores)), "matched": matched,
            "AP50": aps[0], "AP75": aps[5], "mAP": float(np.mean(aps)) if count else -1.0,
            "precision": precision, "recall": recall,
            "F1": 2 * precision * recall / (precision + recall) if matched else 0.0}


def _summary(per_class):
    """Means over the classes that have references (-1 without any), and the classes."""
    summary = {}
    for key in ("AP50", "AP75", "mAP", "precision", "recall", "F1"):
        values = [entry[key] for entry in per_class.values() if entry["references"]]
        summary[key] = float(np.mean(values)) if values else -1.0
    summary["classes"] = per_class
    return summary


def evaluate_overlaps(detections, references, overlaps, class_ids=None):
    """The figures of evaluate() from cell counts, for one image of any size.

    detections: [(class_id, score, cells)]; references: [(class_id, cells)];
    overlaps: {(detection index, reference index): cells in common}. Made for
    instances kept as an id grid (a vector map's areas rasterized): only the
    pairs that touch are needed, never a mask per instance. No cap on the
    detection count (COCO's maxDets is meant for photos, not whole regions).
    """
    by_detection = {}
    for (d, g), common in overlaps.items():
        if common > 0:
            by_detection.setdefault(d, []).append((g, common))
    if class_ids is None:
        class_ids = sorted({int(c) for c, _ in references})
    per_class = {}
    for class_id in class_ids:
        refs = [g for g, (c, _) in enumerate(references) if c == class_id]
        position = {g: i for i, g in enumerate(refs)}
        dets = [d for d, (c, _, _) in enumerate(detections) if c == class_id]
        dets.sort(key=lambda d: -detections[d][1])  # stable: ties keep their order
        candidates = []
        for d in dets:
            cells = detections[d][2]
            candidates.append([
                (position[g], common / (cells + references[g][1] - common))
                for g, common in sorted(by_detection.get(d, [])) if g in position])
        flags = _greedy_match(candidates, len(refs), IOU_THRESHOLDS)
        scores = np.array([detections[d][1] for d in dets], dtype=np.float64)
        per_class[int(class_id)] = _class_figures(scores, flags, len(refs))
    return _summary(per_class)
