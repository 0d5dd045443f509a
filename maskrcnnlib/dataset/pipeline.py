"""From instances to the training graph's input batches (tf.data).

A sample is (image [H, W, bands] any dtype, masks bool [H, W, N], class_ids [N]
int, 1-based). Per sample, numpy resizes and pads the image and its masks
(maskrcnnlib.model.molding, matterport's rules), derives the boxes from the masks and
packs the image meta. RPN targets (anchor matching) are computed in a tf.data map
with TensorFlow ops, not in Python, and samples are batched with padding of the
instance axis (class id 0 marks padding).
"""
import ctypes
import sys

import numpy as np
import tensorflow as tf

from maskrcnnlib.errors import DatasetError
from maskrcnnlib.model.anchors import pyramid_anchors
from maskrcnnlib.model.image_meta import compose_image_meta
from maskrcnnlib.model.molding import mini_masks, mold_image, resize_image, resize_masks
from maskrcnnlib.model.rpn_targets import rpn_targets


def extract_boxes(masks):
    """Pixel boxes [N, (y1, x1, y2, x2)] int32 of masks [H, W, N]; ends exclusive.

    An empty mask gives a zero box (matterport's extract_bboxes).
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.size == 0:
        return np.zeros((masks.shape[-1], 4), dtype=np.int32)
    row_hit = masks.any(axis=1)  # [H, N]: rows each mask touches
    col_hit = masks.any(axis=0)  # [W, N]
    height, width = row_hit.shape[0], col_hit.shape[0]
    # First touched row / column from each end: argmax finds the first True.
    boxes = np.stack([row_hit.argmax(axis=0), col_hit.argmax(axis=0),
                      height - row_hit[::-1].argmax(axis=0),
                      width - col_hit[::-1].argmax(axis=0)], axis=1)
    return np.where(row_hit.any(axis=0)[:, None], boxes, 0).astype(np.int32)


def prepare_sample(image, masks, class_ids, config, image_id=0, rng=None):
    """One training sample as numpy arrays for the pipeline.

    Returns a dict: image float32 [H', W', bands] molded; image_meta float32;
    gt_class_ids int32 [N']; gt_boxes float32 [N', 4] molded pixels;
    gt_masks bool [h, w, N'] (mini masks or molded size). Instances that vanish
    when resized are dropped; more than config.max_gt_instances are subsampled.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] != config.bands:
        raise DatasetError("image {} has {} bands, the model takes {}".format(
            image_id, image.shape[2], config.bands))
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[:2] != image.shape[:2]:
        raise DatasetError("masks of image {} are {}x{}, the image is {}x{}".format(
            image_id, *masks.shape[:2], *image.shape[:2]))
    class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
    resized = resize_image(image, config.image_min_dim, config.image_max_dim,
                           config.image_min_scale, config.resize_mode)
    masks = resize_masks(masks, resized.scale, resized.padding) if masks.shape[2] else \
        np.zeros(resized.image.shape[:2] + (0,), bool)
    boxes = extract_boxes(masks)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, masks, class_ids = boxes[keep], masks[:, :, keep], class_ids[keep]
    if len(class_ids) > config.max_gt_instances:
        rng = rng or np.random.default_rng()
        chosen = np.sort(rng.choice(len(class_ids), config.max_gt_instances, replace=False))
        boxes, masks, class_ids = boxes[chosen], masks[:, :, chosen], class_ids[chosen]
    if config.use_mini_mask:
        masks = mini_masks(masks, boxes, config.mini_mask_shape)
    active = np.ones(config.num_classes, dtype=np.int32)
    meta = compose_image_meta(image_id, image.shape, resized.image.shape, resized.window,
                              resized.scale, active)
    return {
        "image": mold_image(resized.image, config.pixel_mean, config.pixel_std),
        "image_meta": meta.astype(np.float32),
        "gt_class_ids": class_ids.astype(np.int32),
        "gt_boxes": boxes.astype(np.float32),
        "gt_masks": masks.astype(bool),
    }


def _signature(config):
    height, width, bands = config.image_shape
    mask_hw = tuple(config.mini_mask_shape) if config.use_mini_mask else (height, width)
    return {
        "image": tf.TensorSpec((height, width, bands), tf.float32),
        "image_meta": tf.TensorSpec((config.image_meta_size,), tf.float32),
        "gt_class_ids": tf.TensorSpec((None,), tf.int32),
        "gt_boxes": tf.TensorSpec((None, 4), tf.float32),
        "gt_masks": tf.TensorSpec(mask_hw + (None,), tf.bool),
    }


def pixel_anchors(config):
    """Anchors [A, 4] in molded pixels for config.image_shape (matterport's order)."""
    return pyramid_anchors(config.image_shape, config.rpn_anchor_scales,
                           config.rpn_anchor_ratios, config.backbone_strides,
                           config.rpn_anchor_stride).astype(np.float32)


# glibc's mallopt parameters (malloc.h) and the values training sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit systems
_TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_freed_memory():
    """Let glibc keep freed memory for reuse instead of giving it back at once.

    TensorFlow's generator dataset sets glibc's trim threshold to 128 KB (its log:
    "Memory patch applied: M_TRIM_THRESHOLD=128 kb"), which also freezes the mmap
    threshold at 128 KB: every larger tensor of every training step is then mapped
    anew and freed to the kernel, and the step spends its time in page faults (4x
    the minor faults, about twice the kernel time on a 2-core CPU; the training
    results are bit for bit the same). Called at the start of each pass over the
    samples, after TensorFlow's own setting. True where it applied (glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def training_dataset(samples, config, batch_size=None, seed=None, repeat=True):
    """A tf.data.Dataset of training-graph input dicts.

    samples: a callable returning an iterator of prepared samples (prepare_sample
    dicts); called again for every pass when repeat is True.
    seed: makes the RPN anchor sampling reproducible (None: random).
    """
    batch_size = batch_size or config.batch_size
    height, width = config.image_shape[:2]
    anchors = tf.constant(pixel_anchors(config))
    scale = tf.constant([height - 1, width - 1, height - 1, width - 1], tf.float32)
    shift = tf.constant([0, 0, 1, 1], tf.float32)

    # Each sample drawn gets its own key (pipeline seed, position in the stream): the
    # training graph samples its ROIs from it, the same on any number of replicas.
    base = int(np.random.default_rng().integers(0, 2 ** 31 - 1)) if seed is None \
        else int(seed) % (2 ** 31 - 1)

    def add_targets(index, sample):
        stateless = None if seed is None else tf.stack([tf.cast(seed, tf.int64), index])
        rpn_match, rpn_bbox = rpn_targets(
            anchors, sample["gt_class_ids"], sample["gt_boxes"],
            config.rpn_train_anchors_per_image, config.rpn_bbox_std_dev, seed=stateless)
        # an image without objects (a negative chip, an empty random window) keeps one
        # padding row (class 0, zero box), so a batch of such images still has an
        # instance axis for the training graph to reduce over
        missing = tf.maximum(0, 1 - tf.shape(sample["gt_class_ids"])[0])
        return {
            "image": sample["image"], "image_meta": sample["image_meta"],
            "rpn_match": tf.cast(rpn_match, tf.int32), "rpn_bbox_targets": rpn_bbox,
            "gt_class_ids": tf.pad(sample["gt_class_ids"], [[0, missing]]),
            "gt_boxes": tf.pad((sample["gt_boxes"] - shift) / scale, [[0, missing], [0, 0]]),
            "gt_masks": tf.pad(tf.cast(sample["gt_masks"], tf.float32),
                               [[0, 0], [0, 0], [0, missing]]),
            "sample_key": tf.stack([tf.constant(base, tf.int32),
                                    tf.cast(index % (2 ** 31 - 1), tf.int32)]),
        }

    def one_pass():
        keep_freed_memory()
        return samples()

    dataset = tf.data.Dataset.from_generator(one_pass, output_signature=_signature(config))
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.enumerate().map(add_targets, num_parallel_calls=tf.data.AUTOTUNE,
                                      deterministic=True)
    dataset = dataset.padded_batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
