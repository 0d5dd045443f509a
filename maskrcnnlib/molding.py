"""Images and masks to and from the network's format (numpy + scikit-image).

"Molding" resizes and pads an image to the network input size and subtracts
the per-band mean; "unmolding" maps detections back onto the original image.
The arithmetic is matterport Mask_RCNN's, step by step, so detections match.

Images are [height, width, bands] arrays (image rows and columns, y down);
masks are [height, width, instances] boolean arrays; boxes are pixel
(y1, x1, y2, x2) with (y2, x2) outside the box; a window is the pixel box of
the real image inside the padded one.
"""

import random
import warnings

import numpy as np
import scipy.ndimage
import skimage.transform

from maskrcnnlib.errors import ConfigError, DatasetError
from maskrcnnlib.model.anchors import denorm_boxes, norm_boxes

MASK_THRESHOLD = 0.5  # matterport's binarisation threshold of predicted masks


def _resize(image, output_shape, preserve_range=False):
    """Bilinear resize with matterport's fixed settings (order 1, constant
    border, clipping, no anti-aliasing). Boolean input is resized as 0/1
    floats, which is what scikit-image did when matterport was written."""
    if image.dtype == bool:
        image = image.astype(np.float64)
    return skimage.transform.resize(
        image,
        output_shape,
        order=1,
        mode="constant",
        cval=0,
        clip=True,
        preserve_range=preserve_range,
        anti_aliasing=False,
        anti_aliasing_sigma=None,
    )


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
    """_resize of one 2-D float mask as two small matrix products (bilinear is
    separable): equal to scikit-image's result up to float32 rounding, about 5
    times faster on a 28x28 mask (unmolding pastes one per detection)."""
    mask = np.asarray(mask)
    height, width = (int(v) for v in output_shape)
    values = mask.astype(np.float64)
    resized = (_bilinear_weights(mask.shape[0], height) @ values
               @ _bilinear_weights(mask.shape[1], width).T)
    resized = np.clip(resized, values.min(), values.max())  # clip=True
    return resized.astype(mask.dtype if mask.dtype == np.float32 else np.float64)


def _mask_in_box(mask, box):
    """A predicted mask resized bilinearly to its box (y1, x1, y2, x2) and
    binarised: bool [y2 - y1, x2 - x1], True where >= MASK_THRESHOLD."""
    y1, x1, y2, x2 = (int(v) for v in box)
    return _resize_mask(mask, (y2 - y1, x2 - x1)) >= MASK_THRESHOLD


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize keeping the aspect ratio, then pad (or crop) to the input size.

    image: [height, width, bands] array of any dtype (returned in that dtype).
    min_dim: scale up (never down) so that the short side is >= min_dim.
    max_dim: in "square" mode, scale down so that the long side <= max_dim.
    min_scale: scale up by at least this factor.
    mode: "none" (unchanged), "square" (pad to max_dim x max_dim),
        "pad64" (pad each side up to a multiple of 64; min_dim must be a
        multiple of 64) or "crop" (random min_dim x min_dim crop; training
        only, `rng` is a random.Random or None for the global one).

    Returns (image, window, scale, padding, crop):
        window: (y1, x1, y2, x2) pixel box of the image inside the output.
        scale: the resize factor (1 if not resized).
        padding: [(top, bottom), (left, right), (0, 0)] pixels added.
        crop: (y, x, height, width) in "crop" mode, else None.
    """
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop
    if mode not in ("square", "pad64", "crop"):
        raise ConfigError("Unknown resize mode '{}'".format(mode), field="resize_mode")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square":
        longest = max(h, w)
        if round(longest * scale) > max_dim:
            scale = max_dim / longest
    if scale != 1:
        image = _resize(image, (round(h * scale), round(w * scale)), preserve_range=True)

    h, w = image.shape[:2]
    if mode == "square":
        top, left = (max_dim - h) // 2, (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    elif mode == "pad64":
        if not min_dim or min_dim % 64:
            raise ConfigError(
                "image_min_dim must be a multiple of 64 in pad64 mode", field="image_min_dim"
            )
        padding = [_pad_to_64(h), _pad_to_64(w), (0, 0)]
    else:
        rng = rng or random
        y = rng.randint(0, h - min_dim)
        x = rng.randint(0, w - min_dim)
        crop = (y, x, min_dim, min_dim)
        image = image[y : y + min_dim, x : x + min_dim]
        return image.astype(image_dtype), (0, 0, min_dim, min_dim), scale, padding, crop

    padding = padding[: image.ndim]
    image = np.pad(image, padding, mode="constant", constant_values=0)
    window = (padding[0][0], padding[1][0], h + padding[0][0], w + padding[1][0])
    return image.astype(image_dtype), window, scale, padding, crop


def _pad_to_64(size):
    """(before, after) padding that brings `size` up to a multiple of 64."""
    extra = (64 - size % 64) % 64
    return (extra // 2, extra - extra // 2)


def resize_mask(mask, scale, padding, crop=None):
    """Resize and pad (or crop) masks as resize_image did their image.

    mask: [height, width, instances]; scale, padding, crop: from resize_image.
    Nearest-neighbour zoom (scipy.ndimage.zoom, order 0) as matterport.
    Returns [new_height, new_width, instances] in the input dtype.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's note on round() vs int()
        mask = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
    if crop is not None:
        y, x, h, w = crop
        return mask[y : y + h, x : x + w]
    return np.pad(mask, padding, mode="constant", constant_values=0)


def minimize_mask(bbox, mask, mini_shape):
    """Crop each mask to its box and resize it to mini_shape (saves memory).

    bbox: [instances, (y1, x1, y2, x2)] int pixel boxes; mask: [H, W, instances];
    mini_shape: (height, width). Returns bool [*mini_shape, instances].
    Raises DatasetError for a box of zero area.
    """
    mini_shape = tuple(int(v) for v in mini_shape)
    mini_mask = np.zeros(mini_shape + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        cut = mask[y1:y2, x1:x2, i].astype(bool)
        if cut.size == 0:
            raise DatasetError(
                "Instance {} has a bounding box of zero area: {}".format(i, (y1, x1, y2, x2))
            )
        mini_mask[:, :, i] = np.around(_resize(cut, mini_shape)).astype(bool)
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of minimize_mask: resize mini masks back into their boxes.

    bbox: [instances, (y1, x1, y2, x2)]; mini_mask: [h, w, instances];
    image_shape: (height, width[, bands]). Returns bool [height, width, instances].
    """
    mask = np.zeros(tuple(int(v) for v in image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        resized = _resize(mini_mask[:, :, i], (y2 - y1, x2 - x1))
        mask[y1:y2, x1:x2, i] = np.around(resized).astype(bool)
    return mask


def unmold_mask(mask, bbox, image_shape):
    """Paste one predicted mask into a full-size boolean image.

    mask: [h, w] float probabilities (typically 28 x 28).
    bbox: (y1, x1, y2, x2) int pixel box in the target image.
    image_shape: (height, width[, bands]) of the target image.
    Returns bool [height, width]: mask resized bilinearly to the box, >= 0.5.
    """
    y1, x1, y2, x2 = (int(v) for v in bbox)
    full_mask = np.zeros(tuple(int(v) for v in image_shape[:2]), dtype=bool)
    full_mask[y1:y2, x1:x2] = _mask_in_box(mask, bbox)
    return full_mask


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


def unmold_image(molded, pixel_mean, pixel_std=None):
    """Inverse of mold_image, as float64 (callers choose the output dtype)."""
    values = np.asarray(molded, np.float64)
    if pixel_std is not None:
        values = values * np.asarray(pixel_std, np.float64)
    return values + np.asarray(pixel_mean, np.float64)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack an image's attributes into one 1-D float64 vector.

    Layout (length 12 + num_classes):
        [0] image_id, [1:4] original (h, w, bands), [4:7] molded (h, w, bands),
        [7:11] window (y1, x1, y2, x2) in molded pixels, [11] scale,
        [12:] active_class_ids (1 for classes present in the image's dataset).
    """
    return np.array(
        [image_id]
        + list(original_image_shape)
        + list(image_shape)
        + list(window)
        + [scale]
        + list(active_class_ids),
        dtype=np.float64,
    )


def parse_image_meta(meta):
    """Unpack compose_image_meta vectors.

    meta: [batch, 12 + num_classes] (or one [12 + num_classes] vector, then
    the batch axis is dropped from every value). Returns a dict with
    image_id, original_image_shape, image_shape, window (int32),
    scale (float32) and active_class_ids (int32).
    """
    meta = np.asarray(meta)
    single = meta.ndim == 1
    meta = np.atleast_2d(meta)
    parsed = {
        "image_id": meta[:, 0].astype(np.int32),
        "original_image_shape": meta[:, 1:4].astype(np.int32),
        "image_shape": meta[:, 4:7].astype(np.int32),
        "window": meta[:, 7:11].astype(np.int32),
        "scale": meta[:, 11].astype(np.float32),
        "active_class_ids": meta[:, 12:].astype(np.int32),
    }
    if single:
        parsed = {key: value[0] for key, value in parsed.items()}
    return parsed


def mold_input(image, config, image_id=0):
    """Resize, pad and normalize one image for detection.

    image: [height, width, bands]; config: a Config (image_min_dim,
    image_max_dim, image_min_scale, resize_mode, pixel_mean, pixel_std,
    num_classes). Returns (molded float32 [H', W', bands], meta float64
    [12 + num_classes], window (y1, x1, y2, x2)).
    """
    resized, window, scale, _, _ = resize_image(
        image,
        min_dim=config.image_min_dim,
        max_dim=config.image_max_dim,
        min_scale=config.image_min_scale,
        mode=config.resize_mode,
    )
    molded = mold_image(resized, config.pixel_mean, config.pixel_std)
    meta = compose_image_meta(
        image_id, image.shape, molded.shape, window, scale,
        np.zeros([config.num_classes], dtype=np.int32),
    )
    return molded, meta, window


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """Turn one image's network output into boxes and masks of the original image.

    detections: [max_instances, (y1, x1, y2, x2, class_id, score)], boxes
        normalized to the molded image, zero-padded after the last detection.
    mrcnn_mask: [max_instances, mask_h, mask_w, num_classes] probabilities.
    original_image_shape: (height, width[, bands]) before molding.
    image_shape: (height, width[, bands]) of the molded image.
    window: (y1, x1, y2, x2) pixel box of the image inside the molded one.

    Returns (boxes int32 [N, (y1, x1, y2, x2)] original pixels,
    class_ids int32 [N], scores [N], masks bool [height, width, N], a view of an
    [N, height, width] array, so that each instance's mask is contiguous).
    Detections whose box has no area in the original image are dropped.
    """
    detections = np.asarray(detections)
    padding_rows = np.where(detections[:, 4] == 0)[0]
    count = padding_rows[0] if padding_rows.shape[0] > 0 else detections.shape[0]
    boxes = detections[:count, :4]
    class_ids = detections[:count, 4].astype(np.int32)
    scores = detections[:count, 5]
    # Trailing detections whose box is all zero (clipped away entirely) have no mask
    # row (the graph's ValidRows cuts them): dropped below with the empty boxes.
    rows = min(count, len(mrcnn_mask))
    masks = np.zeros((count,) + tuple(mrcnn_mask.shape[1:3]), np.float32)
    masks[:rows] = mrcnn_mask[np.arange(rows), :, :, class_ids[:rows]]

    # normalized molded-image boxes -> normalized window boxes -> original pixels
    wy1, wx1, wy2, wx2 = norm_boxes(np.asarray(window), tuple(image_shape[:2]))
    window_height = wy2 - wy1
    window_width = wx2 - wx1
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([window_height, window_width, window_height, window_width])
    boxes = denorm_boxes(np.divide(boxes - shift, scale), tuple(original_image_shape[:2]))

    keep = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0) & \
        (np.arange(count) < rows)
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]

    height, width = (int(v) for v in original_image_shape[:2])
    # one plane per instance, written only inside its box (unmold_mask's result
    # without a full-size image per instance), seen as [height, width, N]
    planes = np.zeros((len(boxes), height, width), dtype=bool)
    for plane, mask, (y1, x1, y2, x2) in zip(planes, masks, boxes.astype(int)):
        plane[y1:y2, x1:x2] = _mask_in_box(mask, (y1, x1, y2, x2))
    return boxes, class_ids, scores, np.moveaxis(planes, 0, -1)
