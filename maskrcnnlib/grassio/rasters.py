"""Raster maps: found by name, checked against the region, read in windows and in tile strips.

Arrays are ``[y, x]`` (or ``[y, x, band]``) with y = region row (south is
down) and x = region column (east is right); see :mod:`maskrcnnlib.grassio`.
"""
import os
import tempfile

import numpy as np

import grass.script as gs

from maskrcnnlib.errors import DatasetError, DetectionError
from maskrcnnlib.grassio.region import overlaps_region, window_env


def check_rasters(names, error=DatasetError):
    """Full names (``name@mapset``) of raster maps, in the order given.

    Raises ``error`` (DatasetError for training data, DetectionError for
    detection inputs) naming every map of ``names`` that is not found in the
    mapset search path, or when ``names`` is empty.
    """
    names = list(names or [])
    if not names:
        raise error("No raster maps given (bands)")
    full, missing = [], []
    for name in names:
        found = gs.find_file(name, element="cell")
        if found["fullname"]:
            full.append(found["fullname"])
        else:
            missing.append(name)
    if missing:
        raise error("Raster map{} not found: {}".format(
            "s" if len(missing) > 1 else "",
            ", ".join("<{}>".format(name) for name in missing)))
    return full


def images_in_region(images, warning):
    """The images (lists of band rasters) whose rasters all overlap the current region.

    warning: called with a message naming each image left out. Raises
    DetectionError when no image overlaps the region.
    """
    region = gs.region()
    kept, outside = [], []
    for bands in images:
        infos = [gs.raster_info(name) for name in bands]
        if all(overlaps_region((info["north"], info["south"], info["east"], info["west"]),
                               region) for info in infos):
            kept.append(bands)
        else:
            outside.append(bands)
    if not kept:
        raise DetectionError(
            "The input rasters ({}) do not overlap the computational region (n={:g} s={:g} "
            "e={:g} w={:g}); set it with g.region raster=...".format(
                "; ".join(",".join(bands) for bands in images),
                *[float(region[key]) for key in ("n", "s", "e", "w")]))
    for bands in outside:
        warning("Raster maps {} do not overlap the computational region: skipped".format(
            ",".join(bands)))
    return kept


def read_raster(name, env, shape, dtype=np.float32, null=0):
    """Cells of a raster in env's window (see region.window_env), as an array.

    shape: [rows, cols] of the window (y down, x right). dtype: np.float32
    (bands) or np.int32 (categories). null: what null cells (and cells under
    the MASK) read as: a number, or "nan" with float32.
    """
    handle, path = tempfile.mkstemp(prefix="maskrcnn_", suffix=".bin")
    os.close(handle)
    try:
        gs.run_command("r.out.bin", flags="i" if dtype == np.int32 else "f", input=name,
                       output=path, bytes=4, null=null, order="native", quiet=True, env=env,
                       overwrite=True)
        return np.fromfile(path, dtype=dtype).reshape(shape)
    finally:
        if os.path.exists(path):
            os.remove(path)


def read_tile_rows(bands, tile_rows):
    """Images of tiles, read one strip of region rows per list of tiles.

    Args:
        bands: raster map names, one per image band, in order.
        tile_rows: iterable of lists of tiles (e.g. ``tiling.tile_grid``); a tile
            has ``row``, ``col`` (region cell of its first cell) and ``height``,
            ``width`` (cells), all inside the current region.

    Yields, per list of tiles, a list of ``(tile, image, valid)``: image float32
    ``[height, width, len(bands)]`` indexed ``[y=row - tile.row, x=col - tile.col,
    band]``; valid bool ``[height, width]``, False where any band is null (or
    under the MASK). Null cells are 0 in image. One strip (the rows and columns
    the list spans, all bands) is in memory at a time: a list of some tiles of a
    row (see tile_pieces) reads only their columns.

    Raises:
        DetectionError: a band is missing, or a tile lies outside the region.
    """
    names = check_rasters(bands, error=DetectionError)
    region = gs.region()
    rows, cols = int(region["rows"]), int(region["cols"])
    for tiles in tile_rows:
        tiles = list(tiles)
        if not tiles:
            yield []
            continue
        for tile in tiles:
            if (tile.row < 0 or tile.col < 0 or tile.height < 1 or tile.width < 1
                    or tile.row + tile.height > rows or tile.col + tile.width > cols):
                raise DetectionError("Tile {} lies outside the region of {} x {} cells".format(
                    tuple(tile), rows, cols))
        top = min(tile.row for tile in tiles)
        height = max(tile.row + tile.height for tile in tiles) - top
        left = min(tile.col for tile in tiles)
        width = max(tile.col + tile.width for tile in tiles) - left
        env = window_env(region, top, left, height, width)
        image = np.empty((height, width, len(names)), np.float32)
        valid = np.ones((height, width), bool)
        for index, name in enumerate(names):
            band = read_raster(name, env, (height, width), null="nan")
            null = np.isnan(band)
            valid &= ~null
            band[null] = 0.0
            image[:, :, index] = band
        yield [(tile,
                image[tile.row - top:tile.row - top + tile.height,
                      tile.col - left:tile.col - left + tile.width].copy(),
                valid[tile.row - top:tile.row - top + tile.height,
                      tile.col - left:tile.col - left + tile.width].copy())
               for tile in tiles]


def tile_bytes(tile, bands, pad_to=None):
    """Bytes one tile of a row holds while it is detected: its part of the strip
    (float32 bands and the valid mask), its own copy of both, and its zero-padded
    copy (pad_to cells square; the tile's size when None)."""
    cells = tile.height * tile.width
    padded = (pad_to or max(tile.height, tile.width)) ** 2
    return 2 * cells * (4 * bands + 1) + padded * 4 * bands


def tile_pieces(tiles, bands, memory_bytes, pad_to=None):
    """A row of tiles cut into runs of neighbouring tiles whose buffers (tile_bytes)
    fit in memory_bytes together; each run holds at least one tile. memory_bytes
    None: the whole row as one run."""
    tiles = list(tiles)
    if memory_bytes is None:
        return [tiles] if tiles else []
    pieces, piece, used = [], [], 0
    for tile in tiles:
        cost = tile_bytes(tile, bands, pad_to)
        if piece and used + cost > memory_bytes:
            pieces.append(piece)
            piece, used = [], 0
        piece.append(tile)
        used += cost
    if piece:
        pieces.append(piece)
    return pieces


def group_rasters(group, subgroup=None, error=DatasetError):
    """Full names of the raster maps of an imagery group (or of one of its subgroups),
    in the group's order: the bands, band 1 first.

    Raises ``error`` when the group or the subgroup does not exist or holds no
    raster map.
    """
    found = gs.find_file(group, element="group")
    if not found["fullname"]:
        raise error("Imagery group <{}> not found".format(group))
    group = found["fullname"]
    if subgroup:
        subgroups = gs.read_command("i.group", flags="sg", group=group, quiet=True).split()
        if subgroup not in subgroups:
            raise error("Imagery group <{}> has no subgroup <{}>{}".format(
                group, subgroup, "; its subgroups: {}".format(", ".join(subgroups))
                if subgroups else " (it has none)"))
        names = gs.read_command("i.group", flags="g", group=group, subgroup=subgroup,
                                quiet=True).split()
    else:
        names = gs.read_command("i.group", flags="g", group=group, quiet=True).split()
    if not names:
        raise error("Imagery group <{}>{} holds no raster maps".format(
            group, " subgroup <{}>".format(subgroup) if subgroup else ""))
    return names
