"""The image meta vector: one float vector per image, beside its pixels.

It carries what the graph and the unmolding need to know of a molded image.
The layout is the one matterport's graph reads (the 2018 models take it as
their second input), and this module is its only description:

    image_id (1), original_image_shape (3: height, width, bands),
    image_shape (3: the molded image's), window (4: y1, x1, y2, x2 in molded
    pixels, the real image inside the padding), scale (1), then one
    active-class flag per class (num_classes values).
"""

import numpy as np

_FIELD_LENGTHS = (
    ("image_id", 1),
    ("original_image_shape", 3),
    ("image_shape", 3),
    ("window", 4),
    ("scale", 1),
)
_STARTS = np.cumsum([0] + [length for _, length in _FIELD_LENGTHS])

# where each field lies in the vector; the class flags fill the rest
FIELDS = {
    name: slice(int(start), int(start) + length)
    for (name, length), start in zip(_FIELD_LENGTHS, _STARTS)
}
HEADER_SIZE = int(_STARTS[-1])
IMAGE_SHAPE = FIELDS["image_shape"]
WINDOW = FIELDS["window"]


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """One image's meta vector: float64 [HEADER_SIZE + len(active_class_ids)].

    Shapes are (height, width, bands); window is (y1, x1, y2, x2) in molded pixels;
    active_class_ids has a 1 for each class the image's dataset can contain.
    """
    header = (image_id, original_image_shape, image_shape, window, scale)
    parts = [np.ravel(np.asarray(value, dtype=np.float64)) for value in header]
    for (name, where), part in zip(FIELDS.items(), parts):
        if part.size != where.stop - where.start:
            raise ValueError("image meta: {} needs {} values, got {}".format(
                name, where.stop - where.start, part.size))
    parts.append(np.ravel(np.asarray(active_class_ids, dtype=np.float64)))
    return np.concatenate(parts)
