"""The town of the manual pages' examples, small and synthetic.

The examples tell one story: an RGB orthophoto of a town in UTM zone 33N
(EPSG:32633, 0.5 m cells), surveyed footprints of houses and pools (a vector map
with a column ``type``), a training area in the west and a test area in the east,
and drone images with world files north of the orthophoto. This module writes
the files a user would have under /data (ortho.tif, footprints.gpkg, areas.gpkg,
drone/*.jpg + .jgw) and imports them into a GRASS project under the names the
manual uses (ortho.red, ortho.green, ortho.blue, footprints, training_area,
test_area). Houses are reddish squares and pools bluish disks (as in
tools/demo_job.py), 256 x 256 cells: big enough for the examples' tiles, small
enough for a test.
"""
import json
import os
import subprocess

import numpy as np

CRS = "EPSG:32633"
WEST, NORTH, RES, SIZE = 512300.0, 5623400.0, 0.5, 256  # the orthophoto
EAST, SOUTH = WEST + SIZE * RES, NORTH - SIZE * RES
MIDDLE = WEST + SIZE // 2 * RES  # training area west of it, test area east
DRONE_NORTH = NORTH + SIZE * RES  # the drone flight: just north of the orthophoto
COLORS = {"house": (230.0, 70.0, 70.0), "pool": (70.0, 70.0, 230.0)}


def scene(rng, size=SIZE, count=24):
    """Image [size, size, 3] uint8 and objects [(type, row, col, radius)] that do not touch."""
    image = rng.normal(90, 12, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    taken = np.zeros((size, size), bool)
    objects = []
    for _ in range(1000):
        if len(objects) == count:
            break
        r = int(rng.integers(6, 12))
        cy, cx = (int(v) for v in rng.integers(r + 2, size - r - 2, size=2))
        kind = ("house", "pool")[int(rng.integers(0, 2))]
        box = (abs(yy - cy) <= r + 3) & (abs(xx - cx) <= r + 3)
        if (box & taken).any():
            continue
        taken |= box
        if kind == "house":
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[mask] = np.array(COLORS[kind]) + rng.uniform(-15, 15, 3)
        objects.append((kind, cy, cx, r))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def outline(kind, cy, cx, r, west=WEST, north=NORTH):
    """The object's ring in map coordinates (east, north), closed."""
    if kind == "house":
        w, e = west + (cx - r) * RES, west + (cx + r + 1) * RES
        n, s = north - (cy - r) * RES, north - (cy + r + 1) * RES
        ring = [(w, s), (w, n), (e, n), (e, s)]
    else:
        x, y, radius = west + (cx + 0.5) * RES, north - (cy + 0.5) * RES, (r + 0.5) * RES
        ring = [(x + radius * np.cos(a), y + radius * np.sin(a))
                for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
    return [[float(x), float(y)] for x, y in ring + ring[:1]]


def rectangle(west, south, east, north):
    return [[west, south], [west, north], [east, north], [east, south], [west, south]]


def write_gpkg(path, layer, polygons, fields):
    """polygons: [ring]; fields: [{column: value}] (same length); in CRS, one layer."""
    features = [{"type": "Feature", "properties": props,
                 "geometry": {"type": "Polygon", "coordinates": [ring]}}
                for ring, props in zip(polygons, fields)]
    geojson = str(path) + "." + layer + ".geojson"
    with open(geojson, "w") as stream:
        json.dump({"type": "FeatureCollection", "features": features}, stream)
    update = ["-update"] if os.path.exists(path) else []
    subprocess.run(["ogr2ogr", *update, "-f", "GPKG", "-a_srs", CRS, "-nln", layer,
                    str(path), geojson], check=True, capture_output=True)
    os.remove(geojson)


def write_image(path, image, west, north, world_file=None):
    """A GeoTIFF in CRS (world_file None) or a JPEG with its world file (.jgw)."""
    from PIL import Image

    if world_file is None:
        png = str(path) + ".png"
        Image.fromarray(image).save(png)
        height, width = image.shape[:2]
        subprocess.run(["gdal_translate", "-q", "-of", "GTiff", "-a_srs", CRS, "-a_ullr",
                        str(west), str(north), str(west + width * RES),
                        str(north - height * RES), png, str(path)], check=True)
        os.remove(png)
        return
    Image.fromarray(image).save(path, quality=95)
    # cell size, two rotation terms, -cell size, centre of the north-west cell
    with open(world_file, "w") as stream:
        stream.write("{r}\n0\n0\n-{r}\n{x}\n{y}\n".format(r=RES, x=west + RES / 2,
                                                       y=north - RES / 2))


def write_files(data):
    """The files of the story in the directory data (the manual's /data)."""
    os.makedirs(data, exist_ok=True)
    image, objects = scene(np.random.default_rng(2026))
    write_image(os.path.join(data, "ortho.tif"), image, WEST, NORTH)
    write_gpkg(os.path.join(data, "footprints.gpkg"), "footprints",
               [outline(*o) for o in objects], [{"type": o[0]} for o in objects])
    areas = os.path.join(data, "areas.gpkg")
    write_gpkg(areas, "training_area", [rectangle(WEST, SOUTH, MIDDLE, NORTH)],
               [{"name": "west"}])
    write_gpkg(areas, "test_area", [rectangle(MIDDLE, SOUTH, EAST, NORTH)],
               [{"name": "east"}])
    drone = os.path.join(data, "drone")
    os.makedirs(drone, exist_ok=True)
    flight, _ = scene(np.random.default_rng(7), count=20)
    half = SIZE // 2
    for row in range(2):
        for col in range(2):
            name = os.path.join(drone, "DJI_{:04d}".format(row * 2 + col + 1))
            write_image(name + ".jpg", flight[row * half:(row + 1) * half,
                                              col * half:(col + 1) * half],
                        WEST + col * half * RES, DRONE_NORTH - row * half * RES,
                        world_file=name + ".jgw")
    return objects


IMPORT = """set -e
r.import input={data}/ortho.tif output=ortho --quiet
g.rename raster=ortho.1,ortho.red,ortho.2,ortho.green,ortho.3,ortho.blue --quiet
v.import input={data}/footprints.gpkg output=footprints --quiet
v.import input={data}/areas.gpkg layer=training_area output=training_area --quiet
v.import input={data}/areas.gpkg layer=test_area output=test_area --quiet
"""


def import_maps(data, env):
    """Import the story's files into the project of env (GISRC) with the manual's names."""
    result = subprocess.run(["bash", "-c", IMPORT.format(data=data)], env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError("importing the story's maps failed: " + result.stderr)
