"""Images into the network's input format, and its detections back out (numpy).

Molding fits an image into the input size (bilinear resize keeping the aspect
ratio, zero padding around it) and normalizes its values; unmolding maps the
network's normalized boxes and 28 x 28 masks back onto the original image.
The resize rule, the interpolation and every rounding step are those of
matterport's engine, so that old models give the same detections.

Images are [height, width, bands] arrays (rows down, columns right); masks
are [height, width, instances]; pixel boxes are (y1, x1, y2, x2) with
(y2, x2) outside the box; a window is the pixel box of the real image inside
the padded one.
"""

from typing import NamedTuple

import numpy as np
import scipy.ndimage
import skimage.transform

from maskrcnnlib.errors import ConfigError, DatasetError
from maskrcnnlib.model.boxes import boxes_to_normalized, boxes_to_pixels
from maskrcnnlib.model.image_meta import compose_image_meta

MASK_THRESHOLD = 0.5  # a predicted mask probability from here up is the object


# "none": the image as it is; "square": padded to max_dim x max_dim; "pad64": each
# side padded up to a multiple of 64 (the coarsest feature map's stride)
RESIZE_MODES = ("none", "square", "pad64")


# ------------------------------------------------------------------ resizing


def resize_scale(height, width, min_dim, max_dim, min_scale, mode):
    """The factor resize_image scales a height x width image by.

    Up (never down) until the short side reaches min_dim, and at least min_scale;
    then, in "square" mode, down until the long side (rounded) fits max_dim.
    1 in "none" mode. A 0 or None setting is not applied.
    """
    if mode not in RESIZE_MODES:
        raise ConfigError("Unknown resize mode '{}'".format(mode), field="resize_mode")
    if mode == "none":
        return 1
    scale = max(1, min_dim / min(height, width)) if min_dim else 1
    if min_scale:
        scale = max(scale, min_scale)
    longest = max(height, width)
    if mode == "square" and max_dim and round(longest * scale) > max_dim:
        scale = max_dim / longest
    return scale


class Resized(NamedTuple):
    """An image resized and padded for the network, and how that was done."""

    image: np.ndarray  # [H', W', bands] in the input's dtype
    scale: float  # the factor both axes were resized by, before padding
    padding: tuple  # ((top, bottom), (left, right)): zero rows and columns added

    @property
    def window(self):
        """(y1, x1, y2, x2) of the resized image inside the padded one."""
        (top, bottom), (left, right) = self.padding
        return (top, left, self.image.shape[0] - bottom, self.image.shape[1] - right)


def _centred(size, padded_size):
    """(before, after) that centre `size` in `padded_size`; the odd one goes after."""
    before = (padded_size - size) // 2
    return (before, padded_size - size - before)


def _bilinear(image, output_shape, preserve_range=False):
    """scikit-image's order-1 resize with the settings matterport's results depend on.

    No anti-aliasing, zeros beyond the border, clipped to the input's range.
    Boolean input is resized as 0/1 floats (what older scikit-image did with it).
    """
    if image.dtype == bool:
        image = image.astype(np.float64)
    return skimage.transform.resize(
        image, output_shape, order=1, mode="constant", cval=0, clip=True,
        preserve_range=preserve_range, anti_aliasing=False, anti_aliasing_sigma=None)


def resize_image(image, min_dim, max_dim, min_scale, mode):
    """Resize an image keeping its aspect ratio (resize_scale), then zero-pad it.

    image: [height, width, bands], any dtype (kept); mode: one of RESIZE_MODES.
    The image is centred in the padding. Returns a Resized.
    """
    height, width = image.shape[:2]
    scale = resize_scale(height, width, min_dim, max_dim, min_scale, mode)
    if mode == "none":
        return Resized(image, scale, ((0, 0), (0, 0)))
    if scale != 1:
        image = _bilinear(image, (round(height * scale), round(width * scale)),
                          preserve_range=True).astype(image.dtype)
    sides = image.shape[:2]
    padded_sides = (max_dim, max_dim) if mode == "square" else [-(-s // 64) * 64 for s in sides]
    padding = tuple(_centred(side, padded) for side, padded in zip(sides, padded_sides))
    image = np.pad(image, padding + ((0, 0),) * (image.ndim - 2))
    return Resized(image, scale, padding)


def resize_masks(masks, scale, padding):
    """Masks [height, width, instances] resized and padded as resize_image did their image.

    Nearest neighbour (scipy.ndimage.zoom, order 0). Returns the input's dtype.
    """
    if scale != 1:
        masks = scipy.ndimage.zoom(masks, zoom=(scale, scale, 1), order=0)
    return np.pad(masks, tuple(padding) + ((0, 0),))


def mini_masks(masks, boxes, mini_shape):
    """Each instance's mask cut to its box and resized to mini_shape (height, width).

    masks: [H, W, N]; boxes: int pixel boxes [N, 4]. Returns bool [*mini_shape, N]:
    the bilinear resize of the cut, true above one half. A box of no area is a
    DatasetError.
    """
    mini_shape = tuple(int(v) for v in mini_shape)
    minis = np.zeros(mini_shape + (masks.shape[-1],), dtype=bool)
    for index, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, dtype=np.int64)[:, :4]):
        cut = masks[y1:y2, x1:x2, index] != 0
        if cut.size == 0:
            raise DatasetError("Instance {} has a bounding box of zero area: {}".format(
                index, (y1, x1, y2, x2)))
        # > 0.5, not >= 0.5: a value of exactly one half rounds down (half to even)
        minis[:, :, index] = _bilinear(cut, mini_shape) > 0.5
    return minis


# -------------------------------------------------------------- pixel values
def mold_image(images, pixel_mean, pixel_std=None):
    """Normalize pixel values: (value - mean) / std per band, as float32.

    images: [..., bands] array (one image or a batch).
    pixel_mean, pixel_std: one value per band (std defaults to 1).
    Computed in float64 and rounded once to float32, like matterport's
    float32-minus-float64-mean fed to a float32 input.
    """
    images = np.asarray(images)
    mean = np.asarray(pixel_mean, np.float64)
    if images.dtype == np.float32 or (images.dtype.kind in "ui" and images.dtype.itemsize <= 2):
        # exact in float32 already: one pass instead of two conversions and a subtraction
        values = np.subtract(images, mean, dtype=np.float64)
    else:
        values = images.astype(np.float32).astype(np.float64) - mean
    if pixel_std is not None and np.any(np.asarray(pixel_std, np.float64) != 1):
        np.divide(values, np.asarray(pixel_std, np.float64), out=values)
    return values.astype(np.float32)


def mold_input(image, config, image_id=0):
    """One image ready for detection: (molded float32 [H', W', bands], meta, window).

    config: a Config (image_min_dim, image_max_dim, image_min_scale, resize_mode,
    pixel_mean, pixel_std, num_classes). meta: float64 [image_meta_size] with no
    active classes; window: (y1, x1, y2, x2) of the image in the molded one.
    """
    resized = resize_image(image, config.image_min_dim, config.image_max_dim,
                           config.image_min_scale, config.resize_mode)
    molded = mold_image(resized.image, config.pixel_mean, config.pixel_std)
    meta = compose_image_meta(image_id, image.shape, molded.shape, resized.window,
                              resized.scale, np.zeros(config.num_classes))
    return molded, meta, resized.window


# ----------------------------------------------------------------- unmolding
def _bilinear_weights(size_in, size_out):
    """[size_out, size_in] weights of scikit-image's order-1 resize along one axis:
    output pixel i samples input coordinate (i + 0.5) * size_in / size_out - 0.5,
    linearly between its two neighbours; a neighbour outside the input counts as 0
    (mode "constant", cval 0)."""
    position = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    low = np.floor(position)
    fraction = position - low
    low = low.astype(np.intp)
    weights = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    for index, weight in ((low, 1.0 - fraction), (low + 1, fraction)):
        inside = (index >= 0) & (index < size_in)
        weights[rows[inside], index[inside]] += weight[inside]
    return weights


def _resize_mask(mask, output_shape):
    """_bilinear of one 2-D float mask as two small matrix products (bilinear is
    separable): equal to scikit-image's result up to float32 rounding, about 5
    times faster on a 28x28 mask (unmolding pastes one per detection)."""
    mask = np.asarray(mask)
    height, width = (int(v) for v in output_shape)
    values = mask.astype(np.float64)
    resized = (_bilinear_weights(mask.shape[0], height) @ values
               @ _bilinear_weights(mask.shape[1], width).T)
    resized = np.clip(resized, values.min(), values.max())  # clip=True
    return resized.astype(mask.dtype if mask.dtype == np.float32 else np.float64)


def _to_original_pixels(boxes, molded_shape, window, original_shape):
    """Normalized boxes of the molded image -> int32 pixel boxes of the original one.

    Via the window: normalized to the molded image, the window spans a part of
    [0, 1]; stretched onto the window's span, the boxes are normalized to the
    original image. The stretch is in float32, as matterport's.
    """
    window = boxes_to_normalized(window, molded_shape)
    origin = np.tile(window[:2], 2)
    span = np.tile(window[2:] - window[:2], 2)
    return boxes_to_pixels((boxes - origin) / span, original_shape)


def _kept_detections(detections, masks, molded_shape, window, original_shape):
    """(rows of the network's output kept, their int32 pixel boxes in the original
    image, their detection rows): those before the first padding row (class id 0)
    whose box has an area in the original image and that have a mask row."""
    detections = np.asarray(detections)
    is_padding = detections[:, 4] == 0
    count = int(is_padding.argmax()) if is_padding.any() else len(detections)
    detections = detections[:count]
    boxes = _to_original_pixels(detections[:, :4], molded_shape, window, original_shape)
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    kept = np.flatnonzero((heights * widths > 0) & (np.arange(count) < len(masks)))
    return kept, boxes[kept], detections[kept]


def unmold_soft(detections, masks, molded_shape, window, original_shape):
    """unmold_detections without the threshold: (boxes int32 [N, 4], class_ids int32 [N],
    scores [N], [float32 [y2 - y1, x2 - x1]]: each mask's probabilities resized to its
    box, whose cells from MASK_THRESHOLD up are unmold_detections' mask)."""
    kept, boxes, detections = _kept_detections(detections, masks, molded_shape, window,
                                               original_shape)
    class_ids = detections[:, 4].astype(np.int32)
    crops = [_resize_mask(np.asarray(masks[row, :, :, class_id], dtype=np.float32),
                          (y2 - y1, x2 - x1))
             for row, class_id, (y1, x1, y2, x2) in zip(kept, class_ids, boxes)]
    return boxes, class_ids, detections[:, 5], crops


def unmold_detections(detections, masks, molded_shape, window, original_shape):
    """One image's network output as boxes and masks of the original image.

    detections: [rows, (y1, x1, y2, x2, class_id, score)], boxes normalized to the
        molded image; the rows after the first with class id 0 are padding.
    masks: [mask rows, mask_h, mask_w, num_classes] probabilities; a trailing
        detection clipped to nothing may have no mask row (the graph stops at the
        last box with an area).
    molded_shape: (height, width[, bands]) of the molded image; window: its
        (y1, x1, y2, x2) pixel box of the real image; original_shape: (height,
        width[, bands]) of the image before molding.

    Returns (boxes int32 [N, 4] original pixels, class_ids int32 [N], scores [N],
    masks bool [height, width, N]). Detections whose box has no area in the
    original image are dropped. The masks are a view of an [N, height, width]
    array, so that each instance's mask is contiguous.
    """
    kept, boxes, detections = _kept_detections(detections, masks, molded_shape, window,
                                               original_shape)
    class_ids = detections[:, 4].astype(np.int32)

    height, width = (int(v) for v in original_shape[:2])
    planes = np.zeros((len(kept), height, width), dtype=bool)
    for plane, row, class_id, (y1, x1, y2, x2) in zip(planes, kept, class_ids, boxes):
        probabilities = np.asarray(masks[row, :, :, class_id], dtype=np.float32)
        resized = _resize_mask(probabilities, (y2 - y1, x2 - x1))
        plane[y1:y2, x1:x2] = resized >= MASK_THRESHOLD
    return boxes, class_ids, detections[:, 5], np.moveaxis(planes, 0, -1)
