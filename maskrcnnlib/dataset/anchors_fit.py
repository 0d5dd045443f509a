"""RPN anchor scales fitted to the sizes of the training objects.

matterport's RPN_ANCHOR_SCALES (32, 64, 128, 256, 512) suit COCO photographs;
objects in imagery are often 10-60 cells across and, after molding, far
smaller than 32 px, so few anchors overlap them enough to become positives.
Pure numpy (no TensorFlow).
"""
import math

import numpy as np

from maskrcnnlib.errors import DatasetError
from maskrcnnlib.model.molding import resize_scale

MIN_SCALE = 8  # two strides of the finest level (4 px); smaller anchors hardly overlap
LOW_PERCENTILE, HIGH_PERCENTILE = 10, 90


def object_sizes(dataset, config, max_images=500):
    """Sizes sqrt(box height * box width) in molded pixels of every instance.

    dataset: len() and load(index) -> (image, masks bool [H, W, N], class_ids).
    Reads at most max_images images, evenly spread over the dataset.
    Returns float64 [instances]; empty masks are skipped.
    """
    count = len(dataset)
    indices = np.unique(np.linspace(0, count - 1, min(count, max_images)).round().astype(int)) \
        if count else []
    sizes = []
    for index in indices:
        _, masks, _ = dataset.load(int(index))
        masks = np.asarray(masks, dtype=bool)
        scale = resize_scale(masks.shape[0], masks.shape[1], config.image_min_dim,
                             config.image_max_dim, config.image_min_scale, config.resize_mode)
        rows, cols = masks.any(axis=1), masks.any(axis=0)  # [H, N], [W, N]
        filled = rows.any(axis=0)
        heights = rows.shape[0] - rows[::-1].argmax(axis=0) - rows.argmax(axis=0)
        widths = cols.shape[0] - cols[::-1].argmax(axis=0) - cols.argmax(axis=0)
        sizes.extend((np.sqrt(heights * widths.astype(np.float64)) * scale)[filled])
    return np.asarray(sizes, dtype=np.float64)


def _power_of_two(value):
    """The power of two nearest to value on a log scale (12 -> 16, 11 -> 8)."""
    return 2 ** int(math.floor(math.log2(value) + 0.5))


def fit_anchor_scales(dataset_or_box_sizes, config, max_images=500):
    """One anchor scale (side of a square anchor, molded pixels) per pyramid level.

    dataset_or_box_sizes: a dataset (len(), load(i) -> (image, masks, class_ids))
        or a 1-D sequence of object sizes already in molded pixels.
    config: a Config; uses its resize rules, image_max_dim and backbone_strides.
    An object's size is sqrt(h * w) of its box, in pixels of the molded image
    (the original size times the molding's resize_scale). The rule:

    1. lo, hi = 10th and 90th percentiles of the sizes.
    2. smallest = the power of two nearest to lo (log scale), so most objects
       are at least as large as the finest anchors.
    3. levels double: smallest * 2**i (as matterport's 32..512), spanning 16x
       over 5 levels. If hi is beyond the largest level's reach (more than
       sqrt(2) times it), the span is centred on the objects instead:
       smallest = power of two nearest sqrt(lo * hi) / 4.
    4. clip smallest to >= 8 (MIN_SCALE) and so that the largest level is
       <= image_max_dim; when image_max_dim < 16 * 8 the levels above
       image_max_dim are capped at the largest power of two <= image_max_dim
       (they repeat, still ascending-or-equal).

    E.g. objects of 16 px, or spread over 10-60 px, give [16, 32, 64, 128, 256];
    objects of 11 px give [8, 16, 32, 64, 128]. Returns a list of plain ints.
    Raises DatasetError when there is no object to measure.
    """
    if hasattr(dataset_or_box_sizes, "load"):
        sizes = object_sizes(dataset_or_box_sizes, config, max_images)
    else:
        sizes = np.asarray(dataset_or_box_sizes, dtype=np.float64).reshape(-1)
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if not sizes.size:
        raise DatasetError("No objects in the training data to fit the anchor scales to")
    levels = len(config.backbone_strides)
    lo, hi = np.percentile(sizes, [LOW_PERCENTILE, HIGH_PERCENTILE])
    smallest = _power_of_two(lo)
    span = 2 ** (levels - 1)
    if hi > smallest * span * math.sqrt(2):
        # the levels' geometric centre is smallest * sqrt(span)
        smallest = _power_of_two(math.sqrt(lo * hi / span))
    cap = 2 ** int(math.floor(math.log2(config.image_max_dim)))
    smallest = max(MIN_SCALE, min(smallest, cap // span))
    return [int(min(smallest * 2 ** i, max(cap, MIN_SCALE))) for i in range(levels)]
