"""Accuracy of i.ann.maskrcnn.detect against reference areas (its reference= option).

The reference areas are rasterized over the current region (v.to.rast use=cat,
a temporary raster) and compared with the written objects' id grid strip by
strip: only the cell count of each object and each reference, and the cells
every touching pair shares, are kept, so memory does not grow with the region.
The figures are COCO's mask AP (maskrcnnlib.evaluate.evaluate_overlaps, the
region being one image, without COCO's cap of 100 detections) and precision,
recall and F1 at IoU 0.5, per class and as means over the classes that have
reference objects. What is compared is what the map holds: each object's cells
after overlaps were resolved.
"""
import json
import os

import numpy as np
import grass.script as gs

from maskrcnnlib.errors import DetectionError
from maskrcnnlib.evaluate import evaluate_overlaps
from maskrcnnlib.grassio.areas import RasterizedAreas
from maskrcnnlib.grassio.region import window_env

STRIP_ROWS = 512
FIGURES = ("precision", "recall", "F1", "AP50", "AP75", "mAP")


def reference_error(message):
    """The DetectionError for a problem of the reference map (it names the option)."""
    return DetectionError("reference: {}".format(message))


class ReferenceAreas:
    """Reference areas with a class column, rasterized over the region; a context manager.

    classes: the model's class names (class id k is classes[k - 1]). Raises
    DetectionError for a missing map, a map without areas, a missing column, or
    class values that are not among the classes. Every check runs at
    construction, before any detection. layer, where: the layer of the map and an
    SQL condition selecting its reference areas (None: all).
    """

    def __init__(self, vector, column, classes, layer="1", where=None):
        self.classes = list(classes)
        self.areas = RasterizedAreas(vector, column, layer, purpose="reference",
                                     error=reference_error, where=where,
                                     where_option="reference_where")
        self.vector = self.areas.vector
        try:
            self.cats = self._cells_per_category(gs.region())
            _, self.class_of = self.areas.class_ids(self.cats, self.classes)
        except BaseException:
            self.remove()
            raise

    def _cells_per_category(self, region):
        """{category: cells in the region} of the rasterized reference."""
        counts = {}
        for top, strip in self.strips(region):
            cats, number = np.unique(strip[strip > 0], return_counts=True)
            for cat, count in zip(cats.tolist(), number.tolist()):
                counts[cat] = counts.get(cat, 0) + count
        return counts

    def strips(self, region):
        """(first row, int32 categories [h, cols], 0 = none) over the region, north first."""
        rows, cols = int(region["rows"]), int(region["cols"])
        for top in range(0, rows, STRIP_ROWS):
            height = min(STRIP_ROWS, rows - top)
            yield top, self.areas.read(window_env(region, top, 0, height, cols), (height, cols))

    def remove(self):
        self.areas.remove()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.remove()
        return False


def assess(writer, reference):
    """The figures of the objects a writer holds (before close) against the reference.

    Returns evaluate_overlaps' dict, with class names for class ids.
    """
    region = gs.region()
    objects = writer.objects()  # [(class_id, score, cells)], category k at index k - 1
    references = sorted(reference.cats)
    index_of = {cat: i for i, cat in enumerate(references)}
    overlaps = {}
    for top, strip in reference.strips(region):
        ids = writer.id_rows(top, top + strip.shape[0])
        both = (ids > 0) & (strip > 0)
        if not both.any():
            continue
        base = int(strip.max()) + 1
        pairs = ids[both].astype(np.int64) * base + strip[both]
        keys, counts = np.unique(pairs, return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist()):
            cat, ref = divmod(key, base)
            pair = (cat - 1, index_of[ref])
            overlaps[pair] = overlaps.get(pair, 0) + count
    figures = evaluate_overlaps(
        objects, [(reference.class_of[cat], reference.cats[cat]) for cat in references],
        overlaps, class_ids=list(range(1, len(reference.classes) + 1)))
    figures["classes"] = {reference.classes[class_id - 1]: values
                          for class_id, values in figures["classes"].items()}
    return figures


def table(figures, reference_name):
    """The figures as lines of text for the user."""
    lines = ["Accuracy against <{}> (IoU of cells; precision, recall and F1 at IoU 0.5):"
             .format(reference_name),
             "{:<16} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}".format(
                 "class", "reference", "detected", "precision", "recall", "F1", "AP50",
                 "AP75", "mAP")]
    for name, values in figures["classes"].items():
        cells = ["{:.3f}".format(values[key]) if values["references"] else "-"
                 for key in FIGURES]
        lines.append("{:<16} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}".format(
            name, values["references"], values["detections"], *cells))
    overall = ["{:.3f}".format(figures[key]) if figures[key] >= 0 else "-" for key in FIGURES]
    lines.append("{:<16} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}".format(
        "mean", sum(v["references"] for v in figures["classes"].values()),
        sum(v["detections"] for v in figures["classes"].values()), *overall))
    return lines


def check_report_path(path, overwrite):
    """DetectionError when the report cannot be written (up front, before detection)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DetectionError("Directory <{}> of report <{}> does not exist".format(folder, path))
    if os.path.exists(path) and not overwrite:
        raise DetectionError("Report file <{}> exists; use overwrite to replace it".format(path))


def write_report(path, figures, extra):
    """The JSON report: AP50, AP75, mAP, precision, recall, F1, classes, and extra keys."""
    data = dict(figures, **extra)
    temporary = "{}.tmp{}".format(path, os.getpid())
    with open(temporary, "w") as stream:
        json.dump(data, stream, indent=1, sort_keys=True)
        stream.write("\n")
    os.replace(temporary, path)
