"""Vector areas with a class column: checked, rasterized over the region, classes read.

Training chips (:mod:`maskrcnnlib.grassio.chips`) and detect's reference areas
(:mod:`maskrcnnlib.accuracy`) both see objects this way: each category of the
layer is one object, drawn by ``v.to.rast use=cat`` into a temporary raster
of the current region, so a cell belongs to the area its centre falls in and
to at most one object.
"""
import json
import subprocess

import numpy as np

import grass.script as gs
from grass.exceptions import CalledModuleError

from maskrcnnlib.errors import DatasetError
from maskrcnnlib.grassio.maps import remove_maps, temporary_name
from maskrcnnlib.grassio.rasters import read_raster


class RasterizedAreas:
    """The areas of a vector map as a temporary raster of categories; a context manager.

    Construction checks the map (found, holding areas, with an attribute table
    in ``layer`` that has ``class_column``), then rasterizes its areas
    (``v.to.rast use=cat``) in the current region. The raster is removed on
    leaving the ``with`` block, by remove(), or when construction fails.

    Overlapping polygons: in a clean map (e.g. from v.in.ogr) the overlap is an
    area of its own whose centroid holds both categories, and it goes to the
    first of them (the feature imported first); where areas nest or boundaries
    cross without cleaning, v.to.rast draws large areas first, so the smaller
    area keeps the shared cells.

    Args:
        name: vector map name.
        class_column: attribute column (of ``layer``) holding class names.
        layer: layer (number or name) holding categories and attributes.
        where: SQL WHERE condition (without WHERE) on the layer's table: only the
            areas whose rows it selects are drawn; None: all. A condition that
            selects no row, or that the database refuses, raises ``error``.
        where_option: the option that gave ``where``, for those messages.
        purpose: a word for the temporary raster's name.
        error: makes the exception for a bad map or bad class values from a
            message: an exception class (DatasetError by default) or a function
            (e.g. one that says which option named the map).

    Attributes:
        vector: full name (``name@mapset``) of the map.
        raster: name of the temporary raster (int32 categories).
    """

    def __init__(self, name, class_column, layer=1, purpose="areas", error=DatasetError,
                 where=None, where_option="where"):
        self.class_column, self.layer, self.error = class_column, layer, error
        self.where, self._where_option = where or None, where_option
        self.vector, self._key = self._check(name)
        if self.where:
            self._check_where()
        self.raster = temporary_name(purpose)
        try:
            gs.run_command("v.to.rast", input=self.vector, layer=layer, type="area",
                           use="cat", output=self.raster, quiet=True,
                           **({"where": self.where} if self.where else {}))
        except BaseException:
            self.remove()
            raise

    def _check(self, name):
        """(full name, key column) of a vector map with areas and the class column."""
        found = gs.find_file(name, element="vector")
        if not found["fullname"]:
            raise self.error("Vector map <{}> not found".format(name))
        vector = found["fullname"]
        topology = gs.vector_info_topo(vector)
        if not topology.get("areas"):
            raise self.error(
                "Vector map <{}> has no areas (polygons): it holds {} points, {} lines, {} "
                "boundaries and {} centroids".format(
                    vector, topology.get("points", 0), topology.get("lines", 0),
                    topology.get("boundaries", 0), topology.get("centroids", 0)))
        links = gs.vector_db(vector)
        layer = self.layer
        link = links.get(int(layer)) if str(layer).isdigit() else next(
            (info for info in links.values() if info.get("name") == layer), None)
        if link is None:
            raise self.error("Vector map <{}> has no attribute table in layer {}".format(
                vector, layer))
        columns = list(gs.vector_columns(vector, layer=link["layer"]))
        if self.class_column not in columns:
            raise self.error("Vector map <{}> has no column <{}> in layer {}; its columns "
                             "are: {}".format(vector, self.class_column, layer,
                                              ", ".join(columns)))
        return vector, link["key"]

    def _check_where(self):
        """Error unless the where condition selects at least one row of the table."""
        process = gs.start_command("v.db.select", map=self.vector, layer=self.layer,
                                   columns=self._key, where=self.where, format="json",
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        text, errors = process.communicate()
        if process.returncode:
            lines = gs.decode(errors).strip().splitlines()
            raise self.error("{}=<{}> cannot select from vector map <{}> (layer {}): {}"
                             .format(self._where_option, self.where, self.vector, self.layer,
                                     lines[-1].strip() if lines else "v.db.select failed"))
        if not json.loads(gs.decode(text))["records"]:
            raise self.error("{}=<{}> selects no areas of vector map <{}> (layer {})".format(
                self._where_option, self.where, self.vector, self.layer))

    def read(self, env, shape):
        """Categories (int32 ``shape`` = [rows, cols], 0 = no area) in env's window."""
        return read_raster(self.raster, env, shape, dtype=np.int32)

    def class_ids(self, cats, classes=None):
        """(class names in id order, {category: class id 1..K}) of the given categories.

        classes: the class names, their order giving ids 1..K; None: the sorted
        distinct values of ``cats`` (numerically when all are integers). Class
        values are compared as text (integral numbers without ".0"). Raises
        ``error`` naming every value (or missing value) outside the classes.
        """
        values = self._class_values(cats)
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
            raise self.error(
                "Areas of vector map <{}> in the current region have values of column <{}> "
                "that are not among the classes ({}): {}".format(
                    self.vector, self.class_column, ", ".join(classes), listed))
        if not classes:
            raise self.error("No classes found in column <{}> of vector map <{}>".format(
                self.class_column, self.vector))
        return classes, {cat: classes.index(value) + 1 for cat, value in values.items()}

    def _class_values(self, cats):
        """{category: class value as text, or None} for the given categories."""
        try:
            text = gs.read_command("v.db.select", map=self.vector, layer=self.layer,
                                   columns="{},{}".format(self._key, self.class_column),
                                   format="json")
        except CalledModuleError as error:
            raise self.error("Cannot read column <{}> of vector map <{}>: {}".format(
                self.class_column, self.vector, error))
        table = {int(record[self._key]): record[self.class_column]
                 for record in json.loads(text)["records"]}
        return {cat: _as_text(table.get(cat)) for cat in sorted(cats)}

    def remove(self):
        """Remove the temporary raster (if it was made). Idempotent."""
        remove_maps("raster", [self.raster])

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.remove()
        return False


def _as_text(value):
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
