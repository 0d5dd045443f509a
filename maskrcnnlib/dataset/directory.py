"""Training datasets: the original (2018) directory layout and in-memory samples.

Layout (one folder per image, the folder named after the image)::

    path/<id>/<id>.jpg              the image (.jpg .jpeg .png .tif .tiff); any band count
    path/<id>/<id>-<class>-<n>.png  one mask per instance, non-zero = object

<class> is everything between the leading "<id>-" and the trailing "-<n>"
(so class names may contain "-"); <n> is a number that tells the instances of
one class apart. `classes` (a list of names) gives class ids 1..K in its order.

A sample is the triple (image [H, W, bands] as read (uint8, uint16, float...),
masks bool [H, W, N], class_ids int32 [N], 1-based). Arrays are image rows and
columns (y down, x right). Every problem raises DatasetError naming the file.
PNG and JPEG are read with Pillow (alpha dropped: a PNG holds at most RGB + alpha),
TIFF with tifffile (every band kept: a 4-band TIFF is e.g. RGB + NIR).
"""
import math
import os
import re

import numpy as np

from maskrcnnlib.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
MASK_EXTENSIONS = (".png", ".tif", ".tiff")  # lossless only: JPEG noise makes background non-zero
_TIFF = (".tif", ".tiff")
_INSTANCE = re.compile(r"^(?P<cls>.+)-(?P<n>\d+)$")


# ------------------------------------------------------------------ file reading
def _read_pillow(path):
    """[H, W] or [H, W, C] array of a PNG/JPEG and whether its last channel is alpha."""
    from PIL import Image

    with Image.open(path) as picture:
        picture.load()
        if picture.mode == "P":  # palette: its colours (and transparency), not its indices
            picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
        elif picture.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            picture = picture.convert("L" if picture.mode == "1" else "RGB")
        alpha = picture.mode in ("LA", "RGBA", "La", "RGBa", "PA")
        return np.asarray(picture), alpha


def _read_tiff(path):
    """[H, W] or [H, W, C] array of a TIFF.

    The bands are the samples axis (pixel-interleaved or planar, as GDAL
    writes) when there is one; in a stack of pages, the smaller of the first
    and last axes of the array as tifffile returns it: (B, H, W) pages are
    bands, and an (H, W, B) array that tifffile stored as H pages stays so.
    """
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        array, axes = series.asarray(), series.axes
    keep = [i for i, axis in enumerate(axes) if axis in "YX" or array.shape[i] > 1]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if array.ndim == 3:
        band = next((i for i, axis in enumerate(axes) if axis in "SC"), None)
        if band is None:
            band = 2 if array.shape[2] < array.shape[0] else 0
        array = np.moveaxis(array, band, 2)
    elif array.ndim != 2:
        raise ValueError("{} dimensions ({}), expected rows, columns and bands".format(
            array.ndim, axes))
    return array, False


def _read(path, what):
    """(array, has_alpha) of an image file; DatasetError if it cannot be decoded."""
    try:
        if path.lower().endswith(_TIFF):
            return _read_tiff(path)
        return _read_pillow(path)
    except Exception as error:  # decoders raise many kinds (OSError, ValueError, SyntaxError...)
        raise DatasetError("Cannot read {} {}: {}".format(what, path, error)) from error


def read_image(path):
    """Image file -> [H, W, bands] array in its own dtype (PNG/JPEG alpha dropped)."""
    array, alpha = _read(path, "image")
    if array.ndim == 2:
        array = array[:, :, None]
    if alpha:
        array = array[:, :, :-1]
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array


def read_mask(path):
    """Mask file -> bool [H, W]: a pixel is object where any colour channel is non-zero
    (and, if the file has alpha, the pixel is not fully transparent)."""
    array, alpha = _read(path, "mask")
    if array.ndim == 2:
        return array != 0
    if alpha:
        return (array[:, :, :-1] != 0).any(axis=2) & (array[:, :, -1] != 0)
    return (array != 0).any(axis=2)


# ------------------------------------------------------------------ scanning
def _scan_folder(folder, image_id, classes):
    """(image path, [(class_id, n, mask path)] sorted) of one image folder."""
    images, masks, seen = [], [], {}
    for name in sorted(os.listdir(folder)):
        stem, extension = os.path.splitext(name)
        extension = extension.lower()
        if stem == image_id and extension in IMAGE_EXTENSIONS:
            images.append(name)
            continue
        if not stem.startswith(image_id + "-") or extension not in IMAGE_EXTENSIONS:
            continue  # not part of the layout (notes, .aux.xml, thumbnails)
        path = os.path.join(folder, name)
        if extension not in MASK_EXTENSIONS:
            raise DatasetError("Mask {} must be PNG (or TIFF), not {}: lossy compression "
                               "turns background pixels into object".format(path, extension))
        match = _INSTANCE.match(stem[len(image_id) + 1:])
        if not match:
            raise DatasetError("Mask file name {} does not follow <id>-<class>-<number>.png "
                               "(e.g. {}-{}-1.png)".format(path, image_id, classes[0]))
        name_of_class, number = match.group("cls"), int(match.group("n"))
        if name_of_class not in classes:
            raise DatasetError("Mask {} is of class '{}', which is not among the classes: "
                               "{}".format(path, name_of_class, ", ".join(classes)))
        key = (name_of_class, number)
        if key in seen:
            raise DatasetError("Masks {} and {} are both instance {} of class '{}'".format(
                seen[key], path, number, name_of_class))
        seen[key] = path
        masks.append((classes.index(name_of_class) + 1, number, path))
    if not images:
        raise DatasetError("Folder {} has no image {}.<{}>".format(
            folder, image_id, "|".join(e[1:] for e in IMAGE_EXTENSIONS)))
    if len(images) > 1:
        raise DatasetError("Folder {} has several images of {}: {}; keep one".format(
            folder, image_id, ", ".join(images)))
    if not masks:
        raise DatasetError("Image {} has no mask: expected {}-<class>-<number>.png "
                           "beside it".format(os.path.join(folder, images[0]), image_id))
    return os.path.join(folder, images[0]), sorted(masks)


def classes_in_directory(path):
    """The class names the mask file names of a dataset directory hold, sorted (by
    number when all are integers): the class order when none is given."""
    found = set()
    for folder in sorted(e.name for e in os.scandir(path)
                         if e.is_dir() and not e.name.startswith(".")):
        for name in os.listdir(os.path.join(path, folder)):
            stem, extension = os.path.splitext(name)
            if stem.startswith(folder + "-") and extension.lower() in IMAGE_EXTENSIONS:
                match = _INSTANCE.match(stem[len(folder) + 1:])
                if match:
                    found.add(match.group("cls"))
    if found and all(name.lstrip("-").isdigit() for name in found):
        return sorted(found, key=int)
    return sorted(found)


def _check_classes(classes):
    classes = [str(name) for name in classes or []]
    if not classes or not all(classes):
        raise DatasetError("Classes must be a non-empty list of non-empty names")
    if len(set(classes)) != len(classes):
        raise DatasetError("Classes contain duplicates: {}".format(", ".join(classes)))
    return classes


class DirectoryDataset:
    """The images and masks of a dataset directory in the original layout.

    path: the dataset directory; classes: class names, ids 1..K in this order.
    Scanned at construction (file names only, no pixels read): raises
    DatasetError for a missing directory, no image folders, a folder without
    its image or with several, an image without masks, a mask name that does
    not parse, an unknown class or a duplicate instance. Image folders are
    sorted by name; hidden folders (".x") are skipped.

    Attributes: path, classes, image_ids (list of str, folder names).
    """

    def __init__(self, path, classes):
        self.path = os.fspath(path)
        self.classes = _check_classes(classes)
        if not os.path.isdir(self.path):
            raise DatasetError("Dataset directory {} does not exist".format(self.path))
        folders = sorted(e.name for e in os.scandir(self.path)
                         if e.is_dir() and not e.name.startswith("."))
        if not folders:
            raise DatasetError("The dataset {} is empty: no image folders (expected "
                               "<id>/<id>.jpg with <id>-<class>-<n>.png masks)".format(self.path))
        self.image_ids = folders
        self._entries = [_scan_folder(os.path.join(self.path, f), f, self.classes)
                         for f in folders]
        self._bands = None

    def __len__(self):
        return len(self.image_ids)

    @property
    def bands(self):
        """Band count of the first image (read once); every load checks the others."""
        if self._bands is None:
            self._bands = read_image(self._entries[0][0]).shape[2]
        return self._bands

    def image_path(self, index):
        """Path of the image file of sample `index`."""
        return self._entries[index][0]

    def load(self, index):
        """(image [H, W, bands], masks bool [H, W, N], class_ids int32 [N]) of sample `index`.

        Masks come sorted by class id, then instance number. Raises DatasetError
        for an unreadable file, a band count other than the first image's or a
        mask whose size differs from its image.
        """
        image_path, masks = self._entries[index]
        image = read_image(image_path)
        if image.shape[2] != self.bands:
            raise DatasetError("Image {} has {} band(s), the first image ({}) has {}".format(
                image_path, image.shape[2], self._entries[0][0], self.bands))
        stack = np.zeros(image.shape[:2] + (len(masks),), dtype=bool)
        for i, (_, _, mask_path) in enumerate(masks):
            mask = read_mask(mask_path)
            if mask.shape != image.shape[:2]:
                raise DatasetError("Mask {} is {}x{} (rows x columns), its image {} is "
                                   "{}x{}".format(mask_path, *mask.shape, image_path,
                                                  *image.shape[:2]))
            stack[:, :, i] = mask
        class_ids = np.array([class_id for class_id, _, _ in masks], dtype=np.int32)
        return image, stack, class_ids

    def class_counts(self):
        """{class name: number of instances} in `classes` order, from file names."""
        counts = dict.fromkeys(self.classes, 0)
        for _, masks in self._entries:
            for class_id, _, _ in masks:
                counts[self.classes[class_id - 1]] += 1
        return counts


class ArrayDataset:
    """In-memory samples with DirectoryDataset's interface (len, image_ids, bands,
    load, class_counts).

    samples: list of (image [H, W(, bands)], masks [H, W, N], class_ids [N]) triples.
    classes: class names (ids 1..K); None names classes "1", "2", ...
    image_ids: one name per sample; None gives default_ids: "000001", "000002", ...
    Samples without instances (negative chips) are allowed.
    Shapes and class ids are checked at construction (DatasetError).
    """

    def __init__(self, samples, classes=None, image_ids=None):
        samples = list(samples)
        self.image_ids = [str(i) for i in image_ids] if image_ids is not None else \
            default_ids(len(samples))
        if len(self.image_ids) != len(samples):
            raise DatasetError("{} image ids for {} samples".format(len(self.image_ids),
                                                                    len(samples)))
        if not samples:
            raise DatasetError("The dataset has no samples")
        self._samples = [_checked_sample(s, i, classes) for i, s in zip(self.image_ids, samples)]
        top = max((int(s[2].max()) for s in self._samples if s[2].size), default=0)
        self.classes = _check_classes(classes) if classes is not None else [
            str(i) for i in range(1, top + 1)]
        self.bands = self._samples[0][0].shape[2]
        for image_id, (image, _, _) in zip(self.image_ids, self._samples):
            if image.shape[2] != self.bands:
                raise DatasetError("Sample {} has {} band(s), the first has {}".format(
                    image_id, image.shape[2], self.bands))

    def __len__(self):
        return len(self._samples)

    def load(self, index):
        """The sample triple of `index` (the stored arrays, not copies)."""
        return self._samples[index]

    def class_counts(self):
        """{class name: number of instances} in `classes` order."""
        counts = dict.fromkeys(self.classes, 0)
        for _, _, class_ids in self._samples:
            for class_id in class_ids:
                counts[self.classes[class_id - 1]] += 1
        return counts


def _checked_sample(sample, image_id, classes):
    """The sample as (image [H, W, bands], masks bool [H, W, N], class_ids int32 [N])."""
    try:
        image, masks, class_ids = sample
    except (TypeError, ValueError) as error:
        raise DatasetError("Sample {} is not an (image, masks, class_ids) triple".format(
            image_id)) from error
    image = np.asarray(image)
    image = image[:, :, None] if image.ndim == 2 else image
    masks, class_ids = np.asarray(masks, dtype=bool), np.asarray(class_ids, np.int32).reshape(-1)
    if image.ndim != 3 or masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
        raise DatasetError("Sample {}: masks {} do not fit image {} ([H, W, N] vs "
                           "[H, W, bands])".format(image_id, masks.shape, image.shape))
    if masks.shape[2] != len(class_ids):
        raise DatasetError("Sample {}: {} masks but {} class ids".format(
            image_id, masks.shape[2], len(class_ids)))
    top = len(classes) if classes is not None else np.iinfo(np.int32).max
    if class_ids.size and (class_ids.min() < 1 or class_ids.max() > top):
        raise DatasetError("Sample {}: class ids {} outside 1..{}".format(
            image_id, sorted(set(class_ids.tolist())), top))
    return image, masks, class_ids


def default_ids(count):
    """Image ids of `count` unnamed samples: "000001", "000002", ... (1-based, zero-padded)."""
    width = max(6, len(str(count)))
    return [str(i + 1).zfill(width) for i in range(count)]


# ------------------------------------------------------------------ hold-out split
def split_holdout(image_ids, share=0.1, seed=None):
    """(kept, held_out): a random `share` of image_ids held out for validation.

    image_ids: any sequence (ids or indices); both lists keep its order.
    Holds out round(share * n) items (half up), at least 1 and at most n - 1
    when n >= 2; none when n < 2. Deterministic for a seed; seed None uses a
    fixed seed (0), so a resumed run holds out the same images.
    """
    if not 0 < share < 1:
        raise DatasetError("The held-out share must be between 0 and 1, got {}".format(share))
    items = list(image_ids)
    count = len(items)
    held = 0 if count < 2 else min(count - 1, max(1, int(math.floor(share * count + 0.5))))
    rng = np.random.default_rng(0 if seed is None else int(seed) & 0xFFFFFFFFFFFFFFFF)
    chosen = set(rng.permutation(count)[:held].tolist())
    return ([x for i, x in enumerate(items) if i not in chosen],
            [x for i, x in enumerate(items) if i in chosen])


# ------------------------------------------------------------------ writing
def _write_image(folder, image_id, image):
    """Write image [H, W(, bands)] as PNG (1 or 3 bands of uint8) or TIFF (anything else)."""
    image = np.asarray(image)
    image = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    bands = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype == np.uint8 and bands in (1, 3):
        from PIL import Image

        path = os.path.join(folder, image_id + ".png")
        Image.fromarray(image).save(path)
    else:
        import tifffile

        path = os.path.join(folder, image_id + ".tif")
        tifffile.imwrite(path, image, photometric="minisblack", planarconfig="contig"
                         if image.ndim == 3 else None)
    return path


def _clear_layout(path):
    """Remove what a previous write left in path: layout files and emptied folders."""
    for entry in os.scandir(path):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        for name in os.listdir(entry.path):
            stem, extension = os.path.splitext(name)
            if extension.lower() in IMAGE_EXTENSIONS and (
                    stem == entry.name or stem.startswith(entry.name + "-")):
                os.remove(os.path.join(entry.path, name))
        if not os.listdir(entry.path):
            os.rmdir(entry.path)


def write_directory_dataset(path, samples, classes, ids=None, overwrite=False):
    """Write samples in the original layout; returns the list of image ids written.

    samples: iterable of (image [H, W(, bands)], masks [H, W, N], class_ids [N]); with
    ids and no len() (a generator), read and written one at a time, so memory holds one
    sample. classes: class names (ids 1..K). ids: one folder name per sample; None gives
    default_ids (as ArrayDataset's). Images: PNG when 1 or 3 bands of uint8, else
    TIFF (dtype kept). Masks: 8-bit PNG, 255 = object, numbered 1.. per class.
    Samples without instances are skipped: the layout needs a mask per image.
    A non-empty `path` raises DatasetError unless overwrite, which first removes
    the image and mask files of every image folder there (nothing else).
    """
    classes = _check_classes(classes)
    path = os.fspath(path)
    if ids is None or hasattr(samples, "__len__"):
        samples = list(samples)
        count = len(samples)
    else:
        count = None  # an iterator of samples, read one at a time: len(ids) of them
    ids = [str(i) for i in ids] if ids is not None else default_ids(len(samples))
    if (count is not None and len(ids) != count) or len(set(ids)) != len(ids):
        raise DatasetError("ids must name each of the {} samples once".format(
            len(ids) if count is None else count))
    for image_id in ids:
        if not image_id or image_id.startswith(".") or os.sep in image_id or "/" in image_id:
            raise DatasetError("'{}' cannot be an image folder name".format(image_id))
    for name in classes:
        if os.sep in name or "/" in name:
            raise DatasetError("Class '{}' cannot be part of a file name".format(name))
    try:
        os.makedirs(path, exist_ok=True)
        if os.listdir(path):
            if not overwrite:
                raise DatasetError("Directory {} is not empty; choose an empty one".format(path))
            _clear_layout(path)
        from PIL import Image

        written, seen = [], 0
        for image_id, sample in zip(ids, samples):
            seen += 1
            image, masks, class_ids = _checked_sample(sample, image_id, classes)
            if not len(class_ids):
                continue
            written.append(image_id)
            folder = os.path.join(path, image_id)
            os.makedirs(folder, exist_ok=True)
            _write_image(folder, image_id, image)
            numbers = {}
            for i, class_id in enumerate(class_ids.tolist()):
                numbers[class_id] = numbers.get(class_id, 0) + 1
                name = "{}-{}-{}.png".format(image_id, classes[class_id - 1], numbers[class_id])
                Image.fromarray(masks[:, :, i].astype(np.uint8) * 255).save(
                    os.path.join(folder, name))
        if seen < len(ids):
            raise DatasetError("{} ids for {} samples".format(len(ids), seen))
    except OSError as error:
        raise DatasetError("Cannot write the dataset to {}: {}".format(path, error)) from error
    return written
