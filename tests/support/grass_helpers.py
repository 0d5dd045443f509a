"""Helpers for tests that work in the temporary GRASS project (tests/conftest.py)."""
import contextlib
import os
import uuid


def error_message(stderr):
    """The text of the first ERROR in a module's stderr, GRASS's line wrapping undone.

    GRASS prints the whole usage, which names every option, before a parser error,
    and modules report progress: a check on all of stderr finds words said elsewhere.
    """
    assert "ERROR:" in stderr, stderr
    return " ".join(stderr[stderr.index("ERROR:") + len("ERROR:"):].split())


def unique(prefix):
    """A map name no other test of the session uses."""
    return "{}_{}".format(prefix, uuid.uuid4().hex[:8])


@contextlib.contextmanager
def region_override(**bounds):
    """A region as this process' GRASS_REGION (the project's WIND is untouched)."""
    import grass.script as gs

    saved = os.environ.get("GRASS_REGION")
    os.environ["GRASS_REGION"] = gs.region_env(**bounds)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("GRASS_REGION", None)
        else:
            os.environ["GRASS_REGION"] = saved


def project_state(gs):
    """Everything a call must leave alone: WIND, region, MASK, the maps, the tables."""
    gisenv = gs.gisenv()
    wind = os.path.join(gisenv["GISDBASE"], gisenv["LOCATION_NAME"], gisenv["MAPSET"],
                        "WIND")
    with open(wind) as stream:
        wind_text = stream.read()
    return {"wind": wind_text, "region": gs.read_command("g.region", flags="g"),
            "maps": gs.read_command("g.list", type="all", mapset="*"),
            "mask": gs.find_file("MASK", element="cell")["fullname"],
            "temp_region": os.environ.get("WIND_OVERRIDE"),
            "tables": gs.read_command("db.tables", flags="p")}


def write_bands(image, prefix):
    """Each band of image [rows, cols, bands] as raster map <prefix>_<band> in the
    current region (which must have the image's shape); their names, comma-separated."""
    import numpy as np
    from grass.script import array as garray

    names = []
    for band in range(image.shape[2]):
        raster = garray.array(dtype=np.float64)
        raster[...] = image[:, :, band]
        raster.write(f"{prefix}_{band}", overwrite=True)
        names.append(f"{prefix}_{band}")
    return ",".join(names)
