"""Input of a detection seen at the model's resolution: a cheap sample of band
values, and a temporary region with resampled copies of the bands (detect -r).

The user's region and maps are never changed: samples are read through a
coarser GRASS_REGION in a copied environment; the temporary region is a saved
region named by WIND_OVERRIDE in this process's environment (so every command
the detection runs uses it) and is dropped, with the copies, on leaving.
"""
import contextlib
import os

import grass.script as gs

from maskrcnnlib.grassio.maps import remove_maps, temporary_name

# r.univar over at most this many cells per band (every Nth row and column,
# nearest neighbour): enough for a mean and spread, fast on any region
SAMPLE_SIDE = 512


def band_samples(bands):
    """Per band raster {mean, std, minimum, maximum} of the current region's values,
    sampled on a grid of at most SAMPLE_SIDE x SAMPLE_SIDE cells; None for a band
    with no non-null cell in the sample."""
    region = gs.region()
    rows, cols = int(region["rows"]), int(region["cols"])
    env = dict(os.environ)
    if rows > SAMPLE_SIDE or cols > SAMPLE_SIDE:
        env["GRASS_REGION"] = gs.region_env(rows=min(rows, SAMPLE_SIDE),
                                            cols=min(cols, SAMPLE_SIDE))
    samples = []
    for name in bands:
        stats = gs.parse_command("r.univar", map=name, flags="g", env=env, quiet=True)
        if int(stats.get("n", 0)) == 0:
            samples.append(None)
            continue
        samples.append({"mean": float(stats["mean"]), "std": float(stats["stddev"]),
                        "minimum": float(stats["min"]), "maximum": float(stats["max"])})
    return samples


def _resample(name, output, nsres, ewres):
    """output: name in the current (temporary) region; averages of the cells it
    covers when coarser than the raster's own cells, else bilinear (nearest at the
    raster's edge, where r.resamp.interp leaves nulls; the two in output_bilinear
    and output_nearest, removed by the caller)."""
    info = gs.raster_info(name)
    if nsres > float(info["nsres"]) * 1.0001 or ewres > float(info["ewres"]) * 1.0001:
        gs.run_command("r.resamp.stats", flags="w", input=name, output=output,
                       method="average", quiet=True)
        return
    bilinear, nearest = output + "_bilinear", output + "_nearest"
    gs.run_command("r.resamp.interp", input=name, output=bilinear, method="bilinear",
                   quiet=True)
    gs.run_command("r.resample", input=name, output=nearest, quiet=True)
    gs.run_command("r.patch", input=[bilinear, nearest], output=output, quiet=True)


@contextlib.contextmanager
def model_resolution(images, training_res, message=print):
    """Within: the region's extent at the model's resolution (nsres, ewres), and
    images (lists of band rasters) resampled to it; yields the resampled images.

    The extent stays the user's (g.region adjusts the cell size to a whole number
    of rows and columns, so the resolution may differ slightly from training_res).
    """
    saved = {key: os.environ.get(key) for key in ("WIND_OVERRIDE", "GRASS_REGION")}
    region_name = temporary_name("region")
    made = []
    try:
        gs.run_command("g.region", save=region_name, quiet=True)
        os.environ["WIND_OVERRIDE"] = region_name
        os.environ.pop("GRASS_REGION", None)
        gs.run_command("g.region", nsres=training_res[0], ewres=training_res[1], quiet=True)
        region = gs.region()
        message("Detecting on a copy resampled to {:g} x {:g} (rows {}, columns {})".format(
            float(region["nsres"]), float(region["ewres"]), region["rows"], region["cols"]))
        resampled = []
        for bands in images:
            copies = []
            for name in bands:
                copy = temporary_name("resampled")
                made += [copy, copy + "_bilinear", copy + "_nearest"]
                _resample(name, copy, float(region["nsres"]), float(region["ewres"]))
                copies.append(copy)
            resampled.append(copies)
        yield resampled
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        remove_maps("raster", made)
        gs.run_command("g.remove", flags="f", type="region", name=region_name, quiet=True)


def rasters_to_region(names, message=print):
    """Raster maps written at the model's resolution, resampled (nearest neighbour,
    so ids and scores stay whole values of one object) into the current region in
    place; names that are None or absent are passed over."""
    for name in names:
        if not name or not gs.find_file(name, element="cell", mapset=".")["fullname"]:
            continue
        copy = temporary_name("region_copy")
        try:
            gs.run_command("r.resample", input=name, output=copy, quiet=True)
            gs.run_command("g.rename", raster=(copy, name), overwrite=True, quiet=True)
        finally:
            remove_maps("raster", [copy])
        message("Raster map <{}> resampled back to the region's resolution".format(name))
