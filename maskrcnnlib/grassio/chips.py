"""Training chips cut from GRASS maps: band rasters as images, vector areas as instances.

Chips are the tiles of :func:`maskrcnnlib.tiling.tile_grid` over the current
region, so training sees the grid detection reads (random windows and held-out cells:
:mod:`maskrcnnlib.dataset.windows`); instances come from
:class:`maskrcnnlib.grassio.areas.RasterizedAreas`. Coordinate order: see
:mod:`maskrcnnlib.grassio`.
"""
import math
import os
import shutil

import numpy as np

import grass.script as gs

from maskrcnnlib.dataset.cells import ArrayCells, FileCells, any_cell, strips
from maskrcnnlib.dataset.windows import TrainingArea
from maskrcnnlib.errors import DatasetError
from maskrcnnlib.grassio.areas import RasterizedAreas
from maskrcnnlib.grassio.maps import remove_maps, temporary_name
from maskrcnnlib.grassio.rasters import check_rasters
from maskrcnnlib.grassio.region import window_env
from maskrcnnlib.tiling import check_tiling, tile_grid

# An instance whose part inside a chip has fewer cells than this is left out
# of that chip: a sliver of 1-3 cells gives no usable box or mask target.
MIN_INSTANCE_CELLS = 4
# Megabytes a training area's rasters may take in memory unless told otherwise (memory=);
# a larger area stays on disk and is read a window at a time.
AREA_MEMORY_MB = 300


def read_training_chips(bands, training_map, class_column, classes, tile_size, overlap,
                        negatives_share=0.1, seed=None, layer=1,
                        min_instance_cells=MIN_INSTANCE_CELLS):
    """Training samples cut from GRASS maps in the current region.

    Args:
        bands: raster map names, one per image band (any number, in order).
        training_map: vector map whose areas (polygons) are the objects.
        class_column: attribute column (of ``layer``) holding class names.
        classes: class names; their order gives class ids 1..K. None: the
            sorted distinct values of the areas in the current region.
        tile_size: chip side in cells (>= tiling.MIN_TILE_SIZE).
        overlap: cells shared by neighbouring chips (0 <= overlap < tile_size/2).
        negatives_share: share (0..1) of chips without objects to keep,
            ``round(share * negative chips)``, chosen at random with ``seed``.
        seed: seed of that choice (None: not reproducible).
        layer: layer of ``training_map`` holding categories and attributes.
        min_instance_cells: an instance with fewer cells in a chip is left out
            of that chip.

    Chips: the tiles of :func:`maskrcnnlib.tiling.tile_grid` on the region,
    row-major (north to south, west to east) -- samples keep this order.

    Instances: each category of ``layer`` is one instance (areas sharing a
    category, e.g. multi-part features, form one instance), rasterized in the
    current region (see RasterizedAreas, also for overlapping polygons). Where
    two areas share cells, the other instance's mask has a hole there. An
    instance cut by a chip's edge keeps its clipped part in each chip it
    reaches.

    Values: null cells of the bands (and cells under a MASK) become 0; a
    masked cell is in no instance. Bands are read as float32 (integers above
    2**24 lose precision). Class values are compared as text (integral
    numbers without ".0").

    Reading: the areas are rasterized once into a temporary raster (removed
    on return or error); then that raster and the bands are read once over
    the region (see read_training_area), so memory holds the samples plus at
    most AREA_MEMORY_MB of training area. The user's region and MASK are not
    changed.

    Returns:
        (samples, summary). samples: list of ``(image, masks, class_ids)``
        with image float32 ``[tile_size, tile_size, len(bands)]``, masks bool
        ``[tile_size, tile_size, N]`` and class_ids int32 ``[N]`` (ids 1..K),
        all ``[y=row, x=col]`` (see the package docstring); cells beyond the
        region's edge are 0 / False. summary: a JSON-ready dict with
        chips_total, chips_kept, chips_with_objects, negatives_total,
        negatives_kept, classes (as used, id order), instances_per_class
        (areas/categories found in the region), masks_per_class (masks in the
        kept chips: a cut instance counts once per chip), region_rows,
        region_cols, nsres, ewres, bands (full names), training_map,
        class_column, layer, where, tile_size, overlap, min_instance_cells.

    Raises:
        ConfigError: bad tile_size or overlap.
        DatasetError: a bad share, a band or the vector map missing, no areas,
            no table or column, unknown class values, or no areas in the
            current region.
    """
    area, summary = read_training_area(bands, training_map, class_column, classes, tile_size,
                                       overlap, negatives_share, seed, layer,
                                       min_instance_cells)
    try:
        return [area.chip(index) for index in area.chosen], summary
    finally:
        area.close()


def area_bytes(rows, cols, bands):
    """Bytes the rasters of a training area take in memory: float32 bands and int32 ids."""
    return int(rows) * int(cols) * 4 * (int(bands) + 1)


def read_training_area(bands, training_map, class_column, classes, tile_size, overlap,
                       negatives_share=0.1, seed=None, layer=1,
                       min_instance_cells=MIN_INSTANCE_CELLS, where=None,
                       memory=AREA_MEMORY_MB):
    """The training area of the current region and its chip grid, in memory or on disk.

    Arguments, raised errors and the summary as read_training_chips; where: an SQL
    condition selecting the areas of training_map (RasterizedAreas); memory: megabytes
    the area's rasters may take in memory (None: AREA_MEMORY_MB). Returns (area,
    summary): area a maskrcnnlib.dataset.windows.TrainingArea over the bands (float32)
    and the rasterized instances (int32) of the whole region, read a window at a time;
    its grid chips (area.chip(i) for i in area.chosen) are the samples
    read_training_chips returns. Close it (area.close()) when done.

    Each raster is written once by r.out.bin into a folder of the mapset's temporary
    directory. When the area's rasters take at most `memory` MB (area_bytes: the
    region's cells times 4 bytes a band plus 4), they are read into memory and the files
    removed; otherwise they stay on disk until area.close() and each window is read from
    them (maskrcnnlib.dataset.cells.FileCells), so memory holds a window, not the area.
    Everything that needs the whole area (the instances present, each chip's instances)
    is found a strip or a chip at a time.
    """
    check_tiling(tile_size, overlap)
    if not 0 <= negatives_share <= 1:
        raise DatasetError("negatives_share must be between 0 and 1, got {}".format(
            negatives_share))
    memory = AREA_MEMORY_MB if memory is None else memory
    band_names = check_rasters(bands)
    folder = gs.tempdir()
    area = None
    try:
        with RasterizedAreas(training_map, class_column, layer, purpose="instances",
                             where=where) as areas:
            region = gs.region()
            rows, cols = int(region["rows"]), int(region["cols"])
            grid = tile_grid(rows, cols, tile_size, overlap)
            origins = [(tile.row, tile.col) for tile_row in grid for tile in tile_row]
            env = window_env(region, 0, 0, rows, cols)
            in_memory = area_bytes(rows, cols, len(band_names)) <= memory * 2 ** 20
            ids = _export([areas.raster], env, folder, "ids", rows, cols, np.int32, in_memory)
            present = set()
            for _, cells in strips(ids):
                present.update(int(cat) for cat in np.unique(cells) if cat > 0)
            if not present:
                raise DatasetError(
                    "No areas of vector map <{}> (with a category in layer {}) in the "
                    "current region".format(areas.vector, layer))
            classes, class_of = areas.class_ids(present, classes)
            image = _export(band_names, env, folder, "band", rows, cols, np.float32, in_memory)
        if in_memory:  # the files are read and gone
            shutil.rmtree(folder, ignore_errors=True)
        area = TrainingArea(image, ids, class_of, tile_size, origins, [], [],
                            min_instance_cells, geography=region, cleanup=None if in_memory
                            else lambda: shutil.rmtree(folder, ignore_errors=True))
        area.chip_ids = [area.instances_in(row, col) for row, col in origins]
    except BaseException:
        if area is not None:
            area.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    area.chosen, negatives = _choose_chips(area.chip_ids, negatives_share, seed)
    summary = _summary(region, origins, area.chip_ids, area.chosen, negatives, classes,
                       class_of)
    summary.update(bands=band_names, training_map=areas.vector, class_column=class_column,
                   tile_size=int(tile_size), overlap=int(overlap),
                   min_instance_cells=int(min_instance_cells), layer=str(layer),
                   where=where or None, area_in_memory=bool(in_memory))
    return area, summary


def _export(names, env, folder, stem, rows, cols, dtype, in_memory):
    """Rasters written by r.out.bin (4 bytes a cell, null and MASK as 0) into folder: an
    ArrayCells of them read back into memory (the files removed), or a FileCells."""
    paths = []
    for number, name in enumerate(names):
        path = os.path.join(folder, "{}{}.bin".format(stem, number))
        gs.run_command("r.out.bin", flags="i" if dtype == np.int32 else "f", input=name,
                       output=path, bytes=4, null=0, order="native", quiet=True, env=env,
                       overwrite=True)
        paths.append(path)
    if not in_memory:
        return FileCells(paths, rows, cols, dtype, stacked=dtype != np.int32)
    if dtype == np.int32:
        array = np.fromfile(paths[0], dtype).reshape(rows, cols)
    else:
        array = np.empty((rows, cols, len(paths)), dtype)
        for band, path in enumerate(paths):
            array[:, :, band] = np.fromfile(path, dtype).reshape(rows, cols)
    for path in paths:
        os.remove(path)
    return ArrayCells(array)


def read_validation_areas(name, streamed=False):
    """The cells of the current region inside the areas of vector map `name` (a cell is
    inside when its centre is), as a cell source (non-zero: inside): in memory, or with
    streamed, a file in the mapset's temporary directory read a window at a time (close()
    removes it). Raises DatasetError when the map is missing, has no areas, or none in
    the current region."""
    found = gs.find_file(name, element="vector")
    if not found["fullname"]:
        raise DatasetError("validation_map <{}> not found".format(name))
    vector = found["fullname"]
    if not gs.vector_info_topo(vector).get("areas"):
        raise DatasetError("validation_map <{}> has no areas (polygons)".format(vector))
    region = gs.region()
    rows, cols = int(region["rows"]), int(region["cols"])
    raster = temporary_name("validation")
    folder = gs.tempdir()
    try:
        gs.run_command("v.to.rast", input=vector, type="area", use="val", value=1,
                       output=raster, quiet=True)
        cells = _export([raster], window_env(region, 0, 0, rows, cols), folder, "held",
                        rows, cols, np.int32, not streamed)
        if not any_cell(cells):
            raise DatasetError("The areas of validation_map <{}> lie outside the current "
                               "region".format(vector))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        remove_maps("raster", [raster])
    if not streamed:
        shutil.rmtree(folder, ignore_errors=True)
        return cells
    return _Removing(cells, folder)


class _Removing:
    """A FileCells whose close() also removes its folder."""

    def __init__(self, cells, folder):
        self.cells, self.folder = cells, folder
        self.rows, self.cols, self.read = cells.rows, cells.cols, cells.read

    def close(self):
        self.cells.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _choose_chips(chip_ids, negatives_share, seed):
    """(sorted indices of chips kept, count of chips without objects)."""
    positives = [index for index, ids in enumerate(chip_ids) if ids]
    negatives = [index for index, ids in enumerate(chip_ids) if not ids]
    keep = int(math.floor(negatives_share * len(negatives) + 0.5))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(negatives, size=keep, replace=False).tolist() if keep else []
    return sorted(positives + [int(index) for index in chosen]), len(negatives)


def _summary(region, origins, chip_ids, chosen, negatives, classes, class_of):
    instances = {name: 0 for name in classes}
    for class_id in class_of.values():
        instances[classes[class_id - 1]] += 1
    masks = {name: 0 for name in classes}
    for index in chosen:
        for cat in chip_ids[index]:
            masks[classes[class_of[cat] - 1]] += 1
    kept_negatives = sum(1 for index in chosen if not chip_ids[index])
    return {
        "chips_total": len(origins), "chips_kept": len(chosen),
        "chips_with_objects": len(chosen) - kept_negatives,
        "negatives_total": negatives, "negatives_kept": kept_negatives,
        "classes": list(classes), "instances_per_class": instances,
        "masks_per_class": masks, "region_rows": int(region["rows"]),
        "region_cols": int(region["cols"]), "nsres": float(region["nsres"]),
        "ewres": float(region["ewres"]),
    }

