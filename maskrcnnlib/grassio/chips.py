"""Training chips cut from GRASS maps: band rasters as images, vector areas as instances.

Chips are the tiles of :func:`maskrcnnlib.tiling.tile_grid` over the current
region, so training sees the grid detection reads (random windows and held-out cells:
:mod:`maskrcnnlib.dataset.windows`); instances come from
:class:`maskrcnnlib.grassio.areas.RasterizedAreas`. Coordinate order: see
:mod:`maskrcnnlib.grassio`.
"""
import math

import numpy as np

import grass.script as gs

from maskrcnnlib.dataset.windows import TrainingArea
from maskrcnnlib.errors import DatasetError
from maskrcnnlib.grassio.areas import RasterizedAreas
from maskrcnnlib.grassio.maps import remove_maps, temporary_name
from maskrcnnlib.grassio.rasters import check_rasters, read_raster
from maskrcnnlib.grassio.region import window_env
from maskrcnnlib.tiling import check_tiling, tile_grid

# An instance whose part inside a chip has fewer cells than this is left out
# of that chip: a sliver of 1-3 cells gives no usable box or mask target.
MIN_INSTANCE_CELLS = 4


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
    the region (see read_training_area), so memory holds the samples plus the
    training area. The user's region and MASK are not changed.

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
        class_column, tile_size, overlap, min_instance_cells.

    Raises:
        ConfigError: bad tile_size or overlap.
        DatasetError: a bad share, a band or the vector map missing, no areas,
            no table or column, unknown class values, or no areas in the
            current region.
    """
    area, summary = read_training_area(bands, training_map, class_column, classes, tile_size,
                                       overlap, negatives_share, seed, layer,
                                       min_instance_cells)
    return [area.chip(index) for index in area.chosen], summary


def read_training_area(bands, training_map, class_column, classes, tile_size, overlap,
                       negatives_share=0.1, seed=None, layer=1,
                       min_instance_cells=MIN_INSTANCE_CELLS):
    """The training area of the current region read once into memory, and its chip grid.

    Arguments, raised errors and the summary as read_training_chips. Returns
    (area, summary): area a maskrcnnlib.dataset.windows.TrainingArea holding the bands
    (float32 [rows, cols, bands]) and the rasterized instances (int32 [rows, cols]) of
    the whole region; its grid chips (area.chip(i) for i in area.chosen) are the samples
    read_training_chips returns. Memory: the region's cells times (4 bytes a band + 8).
    """
    check_tiling(tile_size, overlap)
    if not 0 <= negatives_share <= 1:
        raise DatasetError("negatives_share must be between 0 and 1, got {}".format(
            negatives_share))
    band_names = check_rasters(bands)
    with RasterizedAreas(training_map, class_column, layer, purpose="instances") as areas:
        region = gs.region()
        rows, cols = int(region["rows"]), int(region["cols"])
        grid = tile_grid(rows, cols, tile_size, overlap)
        origins = [(tile.row, tile.col) for tile_row in grid for tile in tile_row]
        env = window_env(region, 0, 0, rows, cols)
        ids = areas.read(env, (rows, cols))
        present = set(int(cat) for cat in np.unique(ids) if cat > 0)
        if not present:
            raise DatasetError(
                "No areas of vector map <{}> (with a category in layer {}) in the current "
                "region".format(areas.vector, layer))
        classes, class_of = areas.class_ids(present, classes)
        image = np.empty((rows, cols, len(band_names)), np.float32)
        for band, name in enumerate(band_names):
            image[:, :, band] = read_raster(name, env, (rows, cols))
    area = TrainingArea(image, ids, class_of, tile_size, origins, [], [],
                        min_instance_cells, geography=region)
    area.chip_ids = [area.instances_in(row, col) for row, col in origins]
    area.chosen, negatives = _choose_chips(area.chip_ids, negatives_share, seed)
    summary = _summary(region, origins, area.chip_ids, area.chosen, negatives, classes,
                       class_of)
    summary.update(bands=band_names, training_map=areas.vector, class_column=class_column,
                   tile_size=int(tile_size), overlap=int(overlap),
                   min_instance_cells=int(min_instance_cells))
    return area, summary


def read_validation_areas(name):
    """bool [rows, cols] of the current region: the cells inside the areas of vector map
    `name` (a cell is inside when its centre is). Raises DatasetError when the map is
    missing, has no areas, or none in the current region."""
    found = gs.find_file(name, element="vector")
    if not found["fullname"]:
        raise DatasetError("validation_map <{}> not found".format(name))
    vector = found["fullname"]
    if not gs.vector_info_topo(vector).get("areas"):
        raise DatasetError("validation_map <{}> has no areas (polygons)".format(vector))
    region = gs.region()
    rows, cols = int(region["rows"]), int(region["cols"])
    raster = temporary_name("validation")
    try:
        gs.run_command("v.to.rast", input=vector, type="area", use="val", value=1,
                       output=raster, quiet=True)
        cells = read_raster(raster, window_env(region, 0, 0, rows, cols), (rows, cols),
                            dtype=np.int32) > 0
    finally:
        remove_maps("raster", [raster])
    if not cells.any():
        raise DatasetError("The areas of validation_map <{}> lie outside the current "
                           "region".format(vector))
    return cells


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

