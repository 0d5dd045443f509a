"""The current computational region, windows of it for single commands, overlap with it.

A window is a rectangle of region cells handed to one GRASS command through
``GRASS_REGION`` in a copied environment; the user's region is never changed.
Rows count from the northern edge, columns from the western edge (see
:mod:`maskrcnnlib.grassio`).
"""
import math
import os

import grass.script as gs


def region_info():
    """The current region: rows, cols (int); north, south, east, west, nsres, ewres (float)."""
    region = gs.region()
    info = {key: int(region[key]) for key in ("rows", "cols")}
    info.update({name: float(region[key]) for name, key in (
        ("north", "n"), ("south", "s"), ("east", "e"), ("west", "w"),
        ("nsres", "nsres"), ("ewres", "ewres"))})
    return info


def window_env(region, row, col, rows, cols):
    """Environment whose GRASS_REGION is a window of ``region`` (a ``gs.region()`` dict).

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


def overlaps_region(corners, region):
    """Whether (north, south, east, west) overlaps the region (gs.region() dict)."""
    north, south, east, west = (float(value) for value in corners)
    return (south < float(region["n"]) and north > float(region["s"])
            and west < float(region["e"]) and east > float(region["w"]))


def cells_within(bounds, region):
    """The region cells that a rectangle (north, south, east, west) meets, as half-open
    ((first row, end row), (first column, end column)) from the region's north-west
    corner, clipped to the region (empty ranges where it lies outside).

    region: a region_info() dict. A cell that the rectangle covers only in part counts.
    """
    north, south, east, west = (float(value) for value in bounds)
    tolerance = 1e-6  # of a cell: edges on cell boundaries, up to rounding

    def span(near, far, resolution, count):
        first = math.floor(near / resolution + tolerance)
        end = math.ceil(far / resolution - tolerance)
        return max(first, 0), min(end, count)

    rows = span(region["north"] - north, region["north"] - south, region["nsres"],
                region["rows"])
    cols = span(west - region["west"], east - region["west"], region["ewres"], region["cols"])
    return rows, cols
