"""Synthetic scenes for tests: squares (class 1) and disks (class 2) on a noisy background."""
import numpy as np


# With class_colors, class 1 is reddish and class 2 bluish (3 bands): tests about
# tiling and vector output then need no shape recognition from a tiny model.
CLASS_COLORS = {1: (230.0, 70.0, 70.0), 2: (70.0, 70.0, 230.0)}


def shapes_scene(rng, size=128, count=(2, 5), radius=(7, 14), bands=3, class_colors=False):
    """One image [size, size, bands] uint8, masks bool [size, size, N], class ids [N].

    Objects do not overlap; class 1 is an axis-aligned square, class 2 a disk.
    Colors vary per object so that color alone does not tell the class, unless
    class_colors gives each class its own color (CLASS_COLORS, jittered).
    """
    image = rng.normal(90, 12, (size, size, bands))
    yy, xx = np.mgrid[:size, :size]
    taken = np.zeros((size, size), bool)
    masks, class_ids = [], []
    for _ in range(100):
        if len(masks) >= rng.integers(count[0], count[1] + 1):
            break
        r = rng.integers(radius[0], radius[1] + 1)
        cy, cx = rng.integers(r + 1, size - r - 1, size=2)
        class_id = int(rng.integers(1, 3))
        if class_id == 1:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if (mask & taken).any():
            continue
        grown = (np.abs(yy - cy) <= r + 3) & (np.abs(xx - cx) <= r + 3)
        taken |= grown
        if class_colors:
            image[mask] = np.array(CLASS_COLORS[class_id]) + rng.uniform(-15, 15, bands)
        else:
            image[mask] = rng.uniform(150, 250, bands)
        masks.append(mask)
        class_ids.append(class_id)
    masks = np.stack(masks, -1) if masks else np.zeros((size, size, 0), bool)
    return np.clip(image, 0, 255).astype(np.uint8), masks, np.array(class_ids, np.int32)
