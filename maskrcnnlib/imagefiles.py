"""Georeferenced image files (detect's images_directory), imported for detection.

Each file is imported into temporary raster maps (one per band) limited to the
current computational region, detected in like any other bands, and removed
afterwards, whatever happens. ``gdalinfo`` (Debian package gdal-bin) tells the
georeferencing of each file before anything is imported.

Georeferencing:
  * internal (default): the file carries its coordinates and its coordinate
    reference system (GeoTIFF, JPEG 2000...). A file in the project's CRS is
    imported as it is (r.in.gdal); one in another CRS is reprojected
    (r.import, bilinear).
  * external (the 2018 flag -e): a world file (.jgw, .pgw, .tfw, .wld...) or a
    .aux.xml beside the image gives its coordinates, in the project's CRS.
A file without coordinates is an error: without them its objects would land at
the project's origin.
"""
import json
import os
import shutil
import subprocess

import grass.script as gs

from maskrcnnlib.errors import DetectionError
from maskrcnnlib.grassio.maps import exists_here, remove_maps, temporary_name
from maskrcnnlib.grassio.region import overlaps_region


def list_images(directory, image_format):
    """Files of ``directory`` whose name ends with ``.image_format`` (any case), sorted."""
    suffix = "." + str(image_format).strip().lstrip(".").lower()
    if suffix == ".":
        raise DetectionError("images_format is empty: give the file name suffix, e.g. tif")
    if not os.path.isdir(directory):
        raise DetectionError("Directory <{}> does not exist".format(directory))
    files = sorted(os.path.join(directory, name) for name in os.listdir(directory)
                   if name.lower().endswith(suffix)
                   and os.path.isfile(os.path.join(directory, name)))
    if not files:
        raise DetectionError("No *{} file in <{}>".format(suffix, directory))
    return files


def world_file_names(path):
    """Names a world file of ``path`` may have: a.jpg -> a.jgw, a.jpgw, a.wld."""
    base, ext = os.path.splitext(os.path.basename(path))
    ext = ext.lstrip(".").lower()
    names = {base + ".wld"}
    if ext:
        names |= {"{}.{}{}w".format(base, ext[0], ext[-1]), "{}.{}w".format(base, ext)}
    return {name.lower() for name in names}


def describe(path):
    """What gdalinfo says of an image: {bands, transform, crs, sidecar, corners}.

    transform: the 6 GDAL geotransform numbers or None; crs: WKT or "";
    sidecar: a world file or .aux.xml was read with it; corners: (north,
    south, east, west) in the file's coordinates, or None.
    """
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo is None:
        raise DetectionError("gdalinfo is needed to read images_directory: install the "
                             "Debian package gdal-bin (tools/setup.sh does)")
    result = subprocess.run([gdalinfo, "-json", path], capture_output=True, text=True)
    if result.returncode != 0:
        raise DetectionError("Cannot read image <{}>: {}".format(
            path, (result.stderr.strip().splitlines() or ["not an image GDAL can open"])[-1]))
    info = json.loads(result.stdout)
    sidecars = world_file_names(path) | {os.path.basename(path).lower() + ".aux.xml"}
    files = {os.path.basename(name).lower() for name in info.get("files", [])}
    corners = None
    transform = info.get("geoTransform")
    if transform:
        size_x, size_y = info["size"]
        xs = [transform[0] + transform[1] * i + transform[2] * j
              for i in (0, size_x) for j in (0, size_y)]
        ys = [transform[3] + transform[4] * i + transform[5] * j
              for i in (0, size_x) for j in (0, size_y)]
        corners = (max(ys), min(ys), max(xs), min(xs))
    return {"bands": len(info.get("bands", [])), "transform": transform,
            "crs": (info.get("coordinateSystem") or {}).get("wkt", ""),
            "sidecar": bool(files & sidecars), "corners": corners}


def _project_is_xy():
    return gs.parse_command("g.proj", flags="g").get("name") == "xy_location_unprojected"


class ImportedImages:
    """Context manager: imports image files as temporary rasters, removes them on exit.

    Args:
        paths: image files, in order.
        external: georeferencing from a world file or .aux.xml, in the
            project's CRS (flag -e); otherwise the file's own.
        band_count: the bands every image must have (the model's), or None.
        warning: called with a message for each image that lies outside the
            region (it is skipped).

    ``images`` (after entering): one list of raster names per image that
    overlaps the region, one name per band; ``sources``: their file names.
    Raises DetectionError, before anything is imported, for a file with
    another band count, without georeferencing, or with -e but no world file
    or .aux.xml; and for a file that cannot be imported or reprojected, or
    when no image overlaps the region.
    """

    def __init__(self, paths, external=False, band_count=None, warning=print):
        self.paths, self.external, self.warning = list(paths), bool(external), warning
        self.band_count = band_count
        self.images, self._created = [], []
        self.sources = []  # the file name of each of images
        self._xy = False

    def __enter__(self):
        try:
            self._import_all()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, kind, value, traceback):
        self.remove()
        return False

    def _import_all(self):
        region = gs.region()
        self._xy = _project_is_xy()
        described = [(path, describe(path)) for path in self.paths]
        for path, info in described:  # every file is checked before any import
            if self.band_count is not None and info["bands"] != self.band_count:
                raise DetectionError("Image <{}> has {} bands; the model takes {} bands".format(
                    path, info["bands"], self.band_count))
            if not info["transform"]:
                raise DetectionError(
                    "Image <{}> has no georeferencing; give it a world file (e.g. {}) or "
                    ".aux.xml in the project's coordinates and use -e".format(
                        path, sorted(world_file_names(path))[0]))
            if self.external and not info["sidecar"]:
                raise DetectionError(
                    "-e: no world file ({}) or .aux.xml found beside <{}>".format(
                        ", ".join(sorted(world_file_names(path))), path))
        for path, info in described:
            same_crs = self.external or self._same_crs(path, info)
            if same_crs and not overlaps_region(info["corners"], region):
                self._skip(path)
                continue
            bands = self._import(path, temporary_name("image"), info, same_crs)
            if bands:
                self.images.append(bands)
                self.sources.append(os.path.basename(path))
        if not self.images:
            raise DetectionError("No image of {} overlaps the computational region "
                                 "(g.region -p)".format(", ".join(self.paths)))

    def _skip(self, path):
        self.warning("Image <{}> lies outside the computational region: skipped".format(path))

    def _same_crs(self, path, info):
        """Whether the file's coordinates are the project's (no reprojection)."""
        if self._xy:
            return True  # an XY project has no CRS to reproject to
        if not info["crs"]:
            raise DetectionError(
                "Image <{}> has coordinates but no coordinate reference system; if they are "
                "in the project's, use -e (world file or .aux.xml)".format(path))
        check = subprocess.run(["r.in.gdal", "-j", "input={}".format(path)],
                               capture_output=True, text=True)
        return check.returncode == 0

    def _import(self, path, name, info, same_crs):
        """Import one file limited to the region; its band rasters, or [] (outside)."""
        count = info["bands"]
        bands = [name] if count == 1 else ["{}.{}".format(name, i) for i in range(1, count + 1)]
        self._created += bands
        if same_crs:
            command = ["r.in.gdal", "-k", "-r", "input={}".format(path),
                       "output={}".format(name), "--quiet"]
            if self.external or self._xy:
                command.insert(1, "-o")
        else:
            command = ["r.import", "input={}".format(path), "output={}".format(name),
                       "extent=region", "resample=bilinear", "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            if "does not overlap" in result.stderr:  # known only once reprojected
                self._skip(path)
                return []
            raise DetectionError("Importing <{}> failed: {}".format(
                path, " ".join(result.stderr.split())[-400:]))
        missing = [band for band in bands if not exists_here("raster", band)]
        if missing:
            raise DetectionError("Importing <{}> gave no raster {}".format(path, missing[0]))
        return bands

    def remove(self):
        """Remove every raster imported so far. Idempotent."""
        created, self._created = self._created, []
        remove_maps("raster", created)
