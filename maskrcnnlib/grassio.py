"""The only place where maskrcnnlib reads or writes GRASS rasters and vectors.

Everything here works in the *current computational region* (the user's
``g.region``, or a temporary region the caller set with
``gs.use_temp_region()`` / ``GRASS_REGION``) and never changes it: windows
smaller than the region are read by handing each command its own
``GRASS_REGION`` in a copied environment. The MASK is neither created nor
removed; like every GRASS raster read, reads honour it (masked cells read as
null).

Coordinate order, stated once for the whole module:

* a region or a chip has ``rows`` x ``cols`` cells; row 0 is the northern
  edge, column 0 the western edge;
* an image array is ``[y, x, band]`` with ``y`` = GRASS row (down = south)
  and ``x`` = GRASS column (right = east), so ``image[r, c]`` is the cell
  whose centre is at east = west + (c + 0.5) * ewres,
  north = north - (r + 0.5) * nsres;
* a chip origin ``(row, col)`` is the region row/column of the chip's
  top-left cell.

Errors are raised as :class:`maskrcnnlib.errors.DatasetError`; nothing here
calls ``gs.fatal``.
"""
import json
import math
import os
import tempfile
import uuid

import numpy as np

import grass.script as gs
from grass.exceptions import CalledModuleError

from maskrcnnlib.errors import DatasetError

MIN_TILE_SIZE = 64
# An instance whose part inside a chip has fewer cells than this is left out
# of that chip: a sliver of 1-3 cells gives no usable box or mask target.
MIN_INSTANCE_CELLS = 4


def check_rasters(names):
    """Full names (``name@mapset``) of raster maps, in the order given.

    Raises DatasetError naming every map of ``names`` that is not found in
    the mapset search path, or when ``names`` is empty.
    """
    names = list(names or [])
    if not names:
        raise DatasetError("No raster maps given (bands)")
    full, missing = [], []
    for name in names:
        found = gs.find_file(name, element="cell")
        if found["fullname"]:
            full.append(found["fullname"])
        else:
            missing.append(name)
    if missing:
        raise DatasetError("Raster map{} not found: {}".format(
            "s" if len(missing) > 1 else "",
            ", ".join("<{}>".format(name) for name in missing)))
    return full


def chip_origins(length, tile_size, overlap):
    """Start offsets of the chips along one axis (rows or columns).

    Chips are ``tile_size`` cells long and step by ``tile_size - overlap``;
    the last chip is moved back to end exactly at the region's edge (so it may
    overlap its neighbour by more than ``overlap``). A region shorter than a
    chip gives the single origin 0 (the chip is padded with zeros beyond the
    region's edge).

    >>> chip_origins(200, 64, 16)
    [0, 48, 96, 136]
    """
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    count = int(math.ceil((length - tile_size) / stride)) + 1
    return [min(index * stride, length - tile_size) for index in range(count)]


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
        tile_size: chip side in cells (>= 64).
        overlap: cells shared by neighbouring chips (0 <= overlap < tile_size/2).
        negatives_share: share (0..1) of chips without objects to keep,
            ``round(share * negative chips)``, chosen at random with ``seed``.
        seed: seed of that choice (None: not reproducible).
        layer: layer of ``training_map`` holding categories and attributes.
        min_instance_cells: an instance with fewer cells in a chip is left out
            of that chip.

    Chips: origins from :func:`chip_origins` on region rows and columns,
    row-major (north to south, west to east) -- samples keep this order.

    Instances: each category of ``layer`` is one instance (areas sharing a
    category, e.g. multi-part features, form one instance). Areas are
    rasterized with ``v.to.rast use=cat`` in the current region: a cell
    belongs to the area its centre falls in, and to at most one instance.
    Overlapping polygons: in a clean map (e.g. from v.in.ogr) the overlap is
    an area of its own whose centroid holds both categories, and it goes to
    the first of them (the feature imported first); where areas nest or
    boundaries cross without cleaning, v.to.rast draws large areas first, so
    the smaller area keeps the shared cells. The other instance's mask has a
    hole there. An instance cut by a chip's edge keeps its clipped part in
    each chip it reaches.

    Values: null cells of the bands (and cells under a MASK) become 0; a
    masked cell is in no instance. Bands are read as float32 (integers above
    2**24 lose precision). Class values are compared as text (integral
    numbers without ".0").

    Reading: the areas are rasterized once into a temporary raster (removed
    on return or error); then that raster and the bands are read one strip
    of chips at a time through GRASS_REGION windows, so memory holds the
    samples plus one strip (tile_size rows x region columns). The user's
    region and MASK are not changed.

    Returns:
        (samples, summary). samples: list of ``(image, masks, class_ids)``
        with image float32 ``[tile_size, tile_size, len(bands)]``, masks bool
        ``[tile_size, tile_size, N]`` and class_ids int32 ``[N]`` (ids 1..K),
        all ``[y=row, x=col]`` (see the module docstring); cells beyond the
        region's edge are 0 / False. summary: a JSON-ready dict with
        chips_total, chips_kept, chips_with_objects, negatives_total,
        negatives_kept, classes (as used, id order), instances_per_class
        (areas/categories found in the region), masks_per_class (masks in the
        kept chips: a cut instance counts once per chip), region_rows,
        region_cols, nsres, ewres, bands (full names), training_map,
        class_column, tile_size, overlap, min_instance_cells.

    Raises:
        DatasetError: bad tile geometry or share, a band or the vector map
            missing, no areas, no table or column, unknown class values, or no
            areas in the current region.
    """
    _check_geometry(tile_size, overlap, negatives_share)
    band_names = check_rasters(bands)
    vector, key = _check_training_map(training_map, class_column, layer)
    region = gs.region()
    rows, cols = int(region["rows"]), int(region["cols"])
    origins = [(row, col) for row in chip_origins(rows, tile_size, overlap)
               for col in chip_origins(cols, tile_size, overlap)]
    instances = _temporary_name("instances")
    try:
        gs.run_command("v.to.rast", input=vector, layer=layer, type="area", use="cat",
                       output=instances, quiet=True)
        chip_ids, present = _scan_instances(instances, region, origins, tile_size,
                                            min_instance_cells)
        if not present:
            raise DatasetError(
                "No areas of vector map <{}> (with a category in layer {}) in the current "
                "region".format(vector, layer))
        values = _class_values(vector, layer, key, class_column, present)
        classes = _resolve_classes(values, classes, vector, class_column)
        class_of = {cat: classes.index(value) + 1 for cat, value in values.items()}
        chosen, negatives = _choose_chips(chip_ids, negatives_share, seed)
        samples = _read_samples(band_names, instances, region, origins, chip_ids, chosen,
                                class_of, tile_size)
    finally:
        _remove_raster(instances)
    summary = _summary(region, origins, chip_ids, chosen, negatives, classes, class_of,
                       samples)
    summary.update(bands=band_names, training_map=vector, class_column=class_column,
                   tile_size=int(tile_size), overlap=int(overlap),
                   min_instance_cells=int(min_instance_cells))
    return samples, summary


def _check_geometry(tile_size, overlap, negatives_share):
    if int(tile_size) != tile_size or tile_size < MIN_TILE_SIZE:
        raise DatasetError("tile_size must be an integer of at least {} cells, got {}".format(
            MIN_TILE_SIZE, tile_size))
    if int(overlap) != overlap or overlap < 0 or overlap >= tile_size / 2:
        raise DatasetError(
            "overlap must be an integer from 0 to less than half of tile_size ({}), "
            "got {}".format(tile_size, overlap))
    if not 0 <= negatives_share <= 1:
        raise DatasetError("negatives_share must be between 0 and 1, got {}".format(
            negatives_share))


def _check_training_map(name, class_column, layer):
    """(full name, key column) of a vector map with areas and the column."""
    found = gs.find_file(name, element="vector")
    if not found["fullname"]:
        raise DatasetError("Vector map <{}> not found".format(name))
    vector = found["fullname"]
    topology = gs.vector_info_topo(vector)
    if not topology.get("areas"):
        raise DatasetError(
            "Vector map <{}> has no areas (polygons): it holds {} points, {} lines, {} "
            "boundaries and {} centroids".format(
                vector, topology.get("points", 0), topology.get("lines", 0),
                topology.get("boundaries", 0), topology.get("centroids", 0)))
    links = gs.vector_db(vector)
    link = links.get(int(layer)) if str(layer).isdigit() else next(
        (info for info in links.values() if info.get("name") == layer), None)
    if link is None:
        raise DatasetError("Vector map <{}> has no attribute table in layer {}".format(
            vector, layer))
    columns = list(gs.vector_columns(vector, layer=link["layer"]))
    if class_column not in columns:
        raise DatasetError("Vector map <{}> has no column <{}> in layer {}; its columns "
                           "are: {}".format(vector, class_column, layer, ", ".join(columns)))
    return vector, link["key"]


def _temporary_name(purpose):
    return "tmp_maskrcnn_{}_{}_{}".format(purpose, os.getpid(), uuid.uuid4().hex[:12])


def _remove_raster(name):
    if gs.find_file(name, element="cell", mapset=".")["fullname"]:
        gs.run_command("g.remove", flags="f", type="raster", name=name, quiet=True)


def _window_env(region, row, col, rows, cols):
    """Environment whose GRASS_REGION is a window of ``region``.

    The window starts at region row ``row`` / column ``col`` (from the north-west
    corner) and has ``rows`` x ``cols`` cells of the region's resolution. Built
    here rather than with gs.region_env to spare a g.region run per window.
    """
    nsres, ewres = float(region["nsres"]), float(region["ewres"])
    north = float(region["n"]) - row * nsres
    west = float(region["w"]) + col * ewres
    fields = [("proj", region.get("projection", 0)), ("zone", region.get("zone", 0)),
              ("north", repr(north)), ("south", repr(north - rows * nsres)),
              ("east", repr(west + cols * ewres)), ("west", repr(west)),
              ("cols", cols), ("rows", rows), ("e-w resol", repr(ewres)),
              ("n-s resol", repr(nsres))]
    env = dict(os.environ)
    env["GRASS_REGION"] = "".join("{}: {};".format(key, value) for key, value in fields)
    return env


def _read(name, dtype, env, shape):
    """Array ``shape`` = [rows, cols] (y down, x right) of a raster in env's window.

    dtype: np.int32 (the instance raster) or np.float32 (bands); null -> 0.
    """
    handle, path = tempfile.mkstemp(prefix="maskrcnn_", suffix=".bin")
    os.close(handle)
    try:
        gs.run_command("r.out.bin", flags="i" if dtype == np.int32 else "f", input=name,
                       output=path, bytes=4, null=0, order="native", quiet=True, env=env,
                       overwrite=True)
        return np.fromfile(path, dtype=dtype).reshape(shape)
    finally:
        if os.path.exists(path):
            os.remove(path)


def _scan_instances(instances, region, origins, tile_size, min_cells):
    """(ids kept in each chip, all ids in the region), reading strip by strip."""
    rows, cols = int(region["rows"]), int(region["cols"])
    height, chip_ids, present = min(tile_size, rows), [], set()
    strip_row, strip = None, None
    for row, col in origins:
        if row != strip_row:
            strip_row = row
            strip = _read(instances, np.int32, _window_env(region, row, 0, height, cols),
                          (height, cols))
            present.update(int(cat) for cat in np.unique(strip) if cat > 0)
        chip = strip[:, col:col + tile_size]
        ids, counts = np.unique(chip[chip > 0], return_counts=True)
        chip_ids.append([int(cat) for cat in ids[counts >= min_cells]])
    return chip_ids, present


def _class_values(vector, layer, key, class_column, cats):
    """{category: class value as text, or None} for the given categories."""
    try:
        text = gs.read_command("v.db.select", map=vector, layer=layer,
                               columns="{},{}".format(key, class_column), format="json")
    except CalledModuleError as error:
        raise DatasetError("Cannot read column <{}> of vector map <{}>: {}".format(
            class_column, vector, error))
    table = {int(record[key]): record[class_column]
             for record in json.loads(text)["records"]}
    return {cat: _as_text(table.get(cat)) for cat in sorted(cats)}


def _as_text(value):
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _resolve_classes(values, classes, vector, class_column):
    """Class names in id order; DatasetError for values outside them."""
    found = set(values.values())
    if classes is None:
        classes = sorted(value for value in found if value is not None)
        numeric = all(value.lstrip("-").isdigit() for value in classes)
        classes = sorted(classes, key=int) if numeric else classes
    classes = [str(name) for name in classes]
    unknown = {}
    for value in values.values():
        if value is None or value not in classes:
            unknown[value] = unknown.get(value, 0) + 1
    if unknown:
        listed = ", ".join("{} ({} feature{})".format(
            "no value" if value is None else "'{}'".format(value), count,
            "s" if count > 1 else "") for value, count in sorted(
                unknown.items(), key=lambda item: str(item[0])))
        raise DatasetError(
            "Areas of vector map <{}> in the current region have values of column <{}> "
            "that are not among the classes ({}): {}".format(
                vector, class_column, ", ".join(classes), listed))
    if not classes:
        raise DatasetError("No classes found in column <{}> of vector map <{}>".format(
            class_column, vector))
    return classes


def _choose_chips(chip_ids, negatives_share, seed):
    """(sorted indices of chips kept, count of chips without objects)."""
    positives = [index for index, ids in enumerate(chip_ids) if ids]
    negatives = [index for index, ids in enumerate(chip_ids) if not ids]
    keep = int(math.floor(negatives_share * len(negatives) + 0.5))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(negatives, size=keep, replace=False).tolist() if keep else []
    return sorted(positives + [int(index) for index in chosen]), len(negatives)


def _read_samples(band_names, instances, region, origins, chip_ids, chosen, class_of,
                  tile_size):
    """Samples of the chosen chips; one read per strip spanning its chosen chips."""
    rows, cols = int(region["rows"]), int(region["cols"])
    height, width = min(tile_size, rows), min(tile_size, cols)
    by_row = {}
    for index in chosen:
        by_row.setdefault(origins[index][0], []).append(index)
    samples = []
    for row, indices in sorted(by_row.items()):
        first = origins[indices[0]][1]
        span = origins[indices[-1]][1] + width - first
        env = _window_env(region, row, first, height, span)
        strip_ids = _read(instances, np.int32, env, (height, span))
        strip_image = np.stack([_read(name, np.float32, env, (height, span))
                                for name in band_names], -1)
        for index in indices:
            left = origins[index][1] - first
            image = np.zeros((tile_size, tile_size, len(band_names)), np.float32)
            image[:height, :width] = strip_image[:, left:left + width]
            ids = chip_ids[index]
            masks = np.zeros((tile_size, tile_size, len(ids)), bool)
            chip = strip_ids[:, left:left + width]
            for slot, cat in enumerate(ids):
                masks[:height, :width, slot] = chip == cat
            class_ids = np.array([class_of[cat] for cat in ids], np.int32)
            samples.append((image, masks, class_ids))
    return samples


def _summary(region, origins, chip_ids, chosen, negatives, classes, class_of, samples):
    instances = {name: 0 for name in classes}
    for class_id in class_of.values():
        instances[classes[class_id - 1]] += 1
    masks = {name: 0 for name in classes}
    for _, _, class_ids in samples:
        for class_id in class_ids:
            masks[classes[int(class_id) - 1]] += 1
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


_DETECTION_IO = ("region_info", "read_tile_rows", "InstanceWriter")


def __getattr__(name):
    """grassio.region_info, .read_tile_rows, .InstanceWriter live in grassio_detect (size)."""
    if name in _DETECTION_IO:
        from maskrcnnlib import grassio_detect

        return getattr(grassio_detect, name)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
