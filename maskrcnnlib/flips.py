"""Test-time flips (flag -t of i.ann.maskrcnn.detect), numpy around the Detector.

Each image runs through the network three times: as it is, flipped west-east and
flipped north-south (in one batch). The detections of the image as it is are kept
(boxes, classes, scores); each one's mask becomes the mean of its probability map and
those of the same object in the flipped images, flipped back, thresholded at
MASK_THRESHOLD. The same object is the detection of the same class whose box, flipped
back, overlaps the kept box most, at box IoU >= MATCH_IOU; a flip that has none adds
nothing. Images are [height, width, bands]; boxes (y1, x1, y2, x2) pixels, ends
exclusive; masks bool [height, width, N] as Detector.detect returns them.
"""
import numpy as np

from maskrcnnlib.model.molding import MASK_THRESHOLD, unmold_soft

MATCH_IOU = 0.5
FLIP_AXES = (1, 0)  # west-east (columns flipped), north-south (rows flipped)


def flip_boxes(boxes, axis, size):
    """Pixel boxes [N, 4] of an image flipped along axis (0 rows, 1 columns) of size
    pixels: the boxes of the same cells in the image before the flip (and back)."""
    boxes = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    low, high = (0, 2) if axis == 0 else (1, 3)
    boxes[:, [low, high]] = size - boxes[:, [high, low]]
    return boxes


def box_ious(boxes_a, boxes_b):
    """IoU of every box of boxes_a [Na, 4] with every box of boxes_b [Nb, 4] -> [Na, Nb]."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(1, -1, 4)
    height = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    width = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    common = height * width
    areas_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    areas_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return common / np.maximum(areas_a + areas_b - common, 1e-12)


def average_masks(kept, others, shape):
    """Masks bool [height, width, N] of the kept detections, each the mean of its soft
    mask and those of its matches among others.

    kept: (boxes [N, 4], class ids [N], soft crops [float32 [box h, box w]]) of the image
    as it is; others: the same for each flipped image, boxes and crops already flipped
    back into the image's frame; shape: (height, width).
    """
    boxes, class_ids, crops = kept
    height, width = shape
    masks = np.zeros((len(boxes), height, width), bool)
    for k, ((y1, x1, y2, x2), class_id, crop) in enumerate(zip(boxes, class_ids, crops)):
        total = np.zeros((height, width), np.float32)
        total[y1:y2, x1:x2] = crop
        count = 1
        for other_boxes, other_classes, other_crops in others:
            if not len(other_boxes):
                continue
            ious = box_ious([(y1, x1, y2, x2)], other_boxes)[0]
            ious[np.asarray(other_classes) != class_id] = 0
            best = int(np.argmax(ious))
            if ious[best] >= MATCH_IOU:
                b1, c1, b2, c2 = other_boxes[best]
                total[b1:b2, c1:c2] += other_crops[best]
                count += 1
        masks[k] = total >= MASK_THRESHOLD * count
    return np.moveaxis(masks, 0, -1)


def detect_with_flips(detector, images):
    """Detector.detect's results (rois, class_ids, scores, masks per image) with each
    mask averaged over the image and its two flips; one network call for all."""
    images = [np.asarray(image) for image in images]
    batch = images + [np.flip(image, axis) for axis in FLIP_AXES for image in images]
    outputs, molded, windows = detector.raw(batch)

    def soft(index):
        return unmold_soft(outputs[0][index], outputs[1][index], molded[index].shape,
                           windows[index], batch[index].shape)

    results = []
    for i, image in enumerate(images):
        boxes, class_ids, scores, crops = soft(i)
        others = []
        for turn, axis in enumerate(FLIP_AXES, start=1):
            other_boxes, other_classes, _, other_crops = soft(turn * len(images) + i)
            others.append((flip_boxes(other_boxes, axis, image.shape[axis]), other_classes,
                           [np.flip(crop, axis) for crop in other_crops]))
        results.append({"rois": boxes, "class_ids": class_ids, "scores": scores,
                        "masks": average_masks((boxes, class_ids, crops), others,
                                               image.shape[:2])})
    return results
