"""Detected instances written into a GRASS vector map (or one map per class), streaming.

Like the rest of :mod:`maskrcnnlib.grassio`, the writer works in the current
computational region, never changes it nor the MASK, and raises
:class:`maskrcnnlib.errors.DetectionError` instead of calling ``gs.fatal``.
Instances are in region cells: ``mask[y, x]`` is region cell
``(row0 + y, col0 + x)``, rows from the northern edge, columns from the
western edge; a cell centre lies at east = west + (col + 0.5) * ewres,
north = north - (row + 0.5) * nsres.
"""
import mmap
import os
import re
import subprocess
import tempfile

import numpy as np
from scipy import ndimage

import grass.script as gs

from maskrcnnlib.errors import DetectionError
from maskrcnnlib.grassio.maps import exists_here, remove_maps, temporary_name
from maskrcnnlib.grassio.region import window_env
from maskrcnnlib.outlines import square_mask

OUTPUT_TYPES = ("area", "point")
# an instance with more than this share of its cells already taken is a duplicate
DUPLICATE_SHARE = 0.5
# holes in an object smaller than this share of its cells (and one-cell holes) are filled
HOLE_SHARE = 0.01
COLUMNS = ("class text, class_id integer, score double precision, area double precision, "
           "source text")
# v.generalize methods smoothing= takes: simplification, then smoothing
SMOOTHING_METHODS = ("douglas", "lang", "reduction", "reumann", "boyle", "sliding_averaging",
                     "distance_weighting", "chaiken", "hermite", "snakes")
# rows of the score raster built in memory at once: about this many cells
STRIP_CELLS = 1 << 20
# bytes a cell of such a strip holds: its id (int32), its score and the copy written out
STRIP_BYTES_PER_CELL = 20
# Vector names end up as SQL table names: keep them SQL-safe.
_VECTOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# G_legal_filename: not starting with a dot, none of these characters
_RASTER_NAME = re.compile(r"[^./\"'@,=*~\s][^/\"'@,=*~\s]*\Z")


def _largest_part(cells):
    """The largest 4-connected part of a bool mask (all of it when it is one part).

    r.to.vect makes one area per 4-connected part: keeping one part gives one
    polygon per object. Other parts (a cell touching only by a corner, or the
    far side of an object cut through by a better-scoring one) stay unclaimed.
    """
    labels, count = ndimage.label(cells)
    if count <= 1:
        return cells
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _fill_small_holes(cells, taken):
    """cells with their small holes filled, where no other object (taken) lies.

    A hole is a part of the background that no 4-connected path joins to the
    outside: a cell missing inside an object, or a notch that meets the outside
    only at a corner. r.to.vect makes each hole an area of its own (an area with
    no centroid), which splits the object's outline. Holes of at most
    max(1, HOLE_SHARE * cells) cells are thresholding noise of the mask and are
    filled; bigger ones (a courtyard) stay.
    """
    holes = ndimage.binary_fill_holes(cells) & ~cells
    if not holes.any():
        return cells
    labels, count = ndimage.label(holes)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    blocked = np.bincount(labels[taken], minlength=count + 1)
    small = (sizes <= max(1.0, HOLE_SHARE * np.count_nonzero(cells))) & (blocked == 0)
    small[0] = False
    return cells | small[labels]


def _sql_text(value):
    """An SQL text literal (NULL for None)."""
    return "NULL" if value is None else "'{}'".format(str(value).replace("'", "''"))


class InstanceWriter:
    """Writes instances into a vector map (or one map per class), streaming.

    Args:
        output: name of the vector map to create (current mapset); ignored
            when per_class.
        classes: class names; class id k (1..K) is ``classes[k - 1]``.
        output_type: "area" and/or "point". Both: areas and points go into the
            same map, and share a category (so one table row per instance).
        overwrite: replace existing maps; otherwise DetectionError up front.
        per_class: the 2018 tool's output: one map per class, named after the
            class, created only for classes with at least one instance (as in
            2018). The names of all classes are checked up front.
        history: text stored as the maps' command history (v.support cmdhist);
            the history then holds only this line, not the internal steps.
        min_area: objects whose claimed cells cover less (map units squared) are
            dropped (``small``).
        smoothing, smoothing_threshold: a v.generalize method (SMOOTHING_METHODS)
            and its threshold (map units) applied to the areas' boundaries; None:
            the cell outlines. v.generalize leaves a boundary as it was where the
            change would make it cross another, so areas never overlap.
        orthogonal: square each object (outlines.square_mask) before it claims
            its cells, then straighten the areas' staircases (douglas, two cells).
        instances, scores: raster maps to create (None: not made): the category,
            and the score, of the object claiming each cell; null elsewhere.
            They hold the claimed cells (the areas before smoothing).
        memory_bytes: cap of the buffer the score raster is built in (row strips
            of STRIP_BYTES_PER_CELL a cell, at most STRIP_CELLS cells); None: no
            cap beyond STRIP_CELLS.

    Instances (duck typed: ``class_id``, ``score``, ``row0``, ``col0``,
    ``mask`` bool [h, w] with mask[y, x] = region cell (row0 + y, col0 + x))
    get categories 1, 2, ... in the order added. Each claims the cells of its
    mask that no earlier instance took (so objects never overlap and touching
    objects stay separate areas), keeping only their largest 4-connected part (so
    each object is one area) with its small holes filled (``_fill_small_holes``).
    An instance left with no cell is dropped, and so is one that finds more
    than ``DUPLICATE_SHARE`` of its cells taken: it is another view of an
    object already written (Mask R-CNN suppresses duplicates per class only,
    so one object may come twice under two classes), and writing it would
    leave a sliver beside that object. Add
    instances best score first to keep the better view.
    Cells outside the region are ignored. ``add`` writes the cells at once
    into a disk-backed id grid of the region (4 bytes a cell, in the mapset's
    temporary directory, paged by the OS), so instances may come in any order,
    e.g. one image after another over the same region.

    Table columns: cat, class (text), class_id (integer), score (double),
    area (double: claimed cells * nsres * ewres, map units; degrees squared in
    a lat-lon project). Points lie at the mean of the claimed cell centres
    (for a non-convex object this can fall outside it). Areas follow cell
    edges (r.to.vect, no smoothing), one area per instance.

    Everything is built under temporary names in the region captured at
    construction and renamed onto the final names at the end of close();
    on failure (or abort()) the temporaries are removed and existing maps
    are untouched. The MASK is honoured by r.to.vect: cells under it do not
    become areas (the detect pipeline never puts objects there).
    """

    def __init__(self, output, classes, output_type=("area",), overwrite=False,
                 per_class=False, history=None, min_area=0.0, smoothing=None,
                 smoothing_threshold=None, orthogonal=False, instances=None, scores=None,
                 memory_bytes=None):
        if isinstance(output_type, str):
            output_type = output_type.split(",")
        self.output_type = tuple(dict.fromkeys(output_type))
        if not self.output_type or set(self.output_type) - set(OUTPUT_TYPES):
            raise DetectionError("output_type must be 'area' and/or 'point', got {}".format(
                ",".join(output_type)))
        self.classes = [str(name) for name in classes]
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise DetectionError("Class names must be given and differ: {}".format(
                ", ".join(self.classes)))
        self.overwrite, self.per_class, self.history = bool(overwrite), per_class, history
        self.outputs = self._check_outputs(output)
        self.rasters = self._check_rasters(instances, scores)
        if smoothing and smoothing not in SMOOTHING_METHODS:
            raise DetectionError("smoothing must be one of {}, got {}".format(
                ", ".join(SMOOTHING_METHODS), smoothing))
        if smoothing and not (smoothing_threshold and smoothing_threshold > 0):
            raise DetectionError("smoothing={} needs a threshold above 0 (map units)".format(
                smoothing))
        self.smoothing, self.smoothing_threshold = smoothing or None, smoothing_threshold
        self.orthogonal = bool(orthogonal)
        self._strip_cells = STRIP_CELLS if memory_bytes is None else max(
            1, min(STRIP_CELLS, int(memory_bytes) // STRIP_BYTES_PER_CELL))
        region = gs.region()
        self._rows, self._cols = int(region["rows"]), int(region["cols"])
        self._nsres, self._ewres = float(region["nsres"]), float(region["ewres"])
        self._north, self._west = float(region["n"]), float(region["w"])
        self._env = window_env(region, 0, 0, self._rows, self._cols)
        # fewer claimed cells than this: smaller than min_area
        self._min_cells = float(min_area or 0) / (self._nsres * self._ewres) - 1e-9
        # per category - 1: [class_id, score, cells, mean row, mean col, source]
        self._records = []
        self._dropped = self._duplicates = self._small = 0
        self._temporaries = {"raster": [], "vector": []}
        self._grid_path = gs.tempfile(create=True)
        self._map = self._ids = None
        self._done = False
        try:
            with open(self._grid_path, "r+b") as stream:
                stream.truncate(self._rows * self._cols * 4)  # sparse: zeros = no object
                self._map = mmap.mmap(stream.fileno(), 0)
            self._ids = np.ndarray((self._rows, self._cols), np.int32, buffer=self._map)
        except BaseException:
            self._release_grid()
            raise

    @property
    def count(self):
        """Instances written so far (those that kept at least one cell)."""
        return len(self._records)

    @property
    def dropped(self):
        """Instances dropped: no cell in the region, or mostly taken by earlier ones."""
        return self._dropped

    @property
    def small(self):
        """Of the dropped instances, those whose claimed cells cover less than min_area."""
        return self._small

    @property
    def duplicates(self):
        """Of the dropped instances, those dropped because earlier ones took their cells."""
        return self._duplicates

    def counts(self):
        """{class name: instances written}."""
        counts = {name: 0 for name in self.classes}
        for record in self._records:
            counts[self.classes[record[0] - 1]] += 1
        return counts

    def objects(self):
        """[(class_id, score, cells)] of the instances written; category k is item k - 1."""
        return [(record[0], record[1], record[2]) for record in self._records]

    def id_rows(self, top, bottom):
        """Categories (int32 [bottom - top, cols], 0 = none) of region rows top..bottom - 1.

        Only before close(): the id grid is gone afterwards.
        """
        self._check_open()
        return np.array(self._ids[top:bottom])

    def _check_outputs(self, output):
        """{class id or None: final map name}; DetectionError for bad or existing names."""
        if self.per_class:
            names = {index + 1: name for index, name in enumerate(self.classes)}
        elif not output:
            raise DetectionError("No output vector map name given")
        else:
            name, _, mapset = str(output).partition("@")
            if mapset and mapset != gs.gisenv()["MAPSET"]:
                raise DetectionError("Output map <{}> must be in the current mapset".format(
                    output))
            names = {None: name}
        for name in names.values():
            if not _VECTOR_NAME.match(name):
                raise DetectionError(
                    "<{}> is not a valid vector map name (letters, digits and _, starting "
                    "with a letter){}".format(name, "; give an output map name instead of "
                                             "one map per class" if self.per_class else ""))
            if not self.overwrite and exists_here("vector", name):
                raise DetectionError("Vector map <{}> exists; use overwrite to replace "
                                     "it".format(name))
        return names

    def _check_rasters(self, instances, scores):
        """{"instances"/"scores": final raster name}; DetectionError for bad or existing names."""
        names = {key: name for key, name in (("instances", instances), ("scores", scores))
                 if name}
        for key, name in names.items():
            name, _, mapset = str(name).partition("@")
            if mapset and mapset != gs.gisenv()["MAPSET"]:
                raise DetectionError("Raster map <{}> must be in the current mapset".format(
                    names[key]))
            if not _RASTER_NAME.match(name):
                raise DetectionError("<{}> is not a valid raster map name".format(name))
            if not self.overwrite and exists_here("raster", name):
                raise DetectionError("Raster map <{}> exists; use overwrite to replace "
                                     "it".format(name))
            names[key] = name
        if len(set(names.values())) < len(names):
            raise DetectionError("instances and scores must be two different maps")
        return names

    def add(self, instances, source=None):
        """Write instances (region cells) into the id grid; earlier ones keep shared cells.

        source: text for the ``source`` column of these instances (image or bands).
        """
        self._check_open()
        for instance in instances:
            class_id = int(instance.class_id)
            if not 1 <= class_id <= len(self.classes):
                raise DetectionError("Class id {} outside 1..{} ({})".format(
                    class_id, len(self.classes), ", ".join(self.classes)))
            mask = np.asarray(instance.mask, bool)
            row0, col0 = int(instance.row0), int(instance.col0)
            top, left = max(row0, 0), max(col0, 0)
            bottom = min(row0 + mask.shape[0], self._rows)
            right = min(col0 + mask.shape[1], self._cols)
            if bottom <= top or right <= left:
                self._dropped += 1
                continue
            window = self._ids[top:bottom, left:right]
            inside = mask[top - row0:bottom - row0, left - col0:right - col0]
            taken = window != 0
            free = _fill_small_holes(_largest_part(inside & ~taken), taken)
            if self.orthogonal and free.any():
                free = _fill_small_holes(_largest_part(square_mask(free) & ~taken), taken)
            rows, cols = np.nonzero(free)
            cells = np.count_nonzero(inside)
            if not cells or rows.size < cells * (1 - DUPLICATE_SHARE):
                self._dropped += 1
                self._duplicates += bool(cells)
                continue
            if rows.size < self._min_cells:
                self._dropped += 1
                self._small += 1
                continue
            self._records.append([class_id, float(instance.score), int(rows.size),
                                  float(top + rows.mean()), float(left + cols.mean()),
                                  source])
            window[rows, cols] = len(self._records)

    def flush_until(self, row):
        """Rows above ``row`` get no more instances: push them to disk, out of memory.

        Only a hint: add() writes at once, so a later instance in those rows is still
        written correctly (only read back from disk).
        """
        self._check_open()
        length = min(max(int(row), 0), self._rows) * self._cols * 4
        length -= length % mmap.PAGESIZE
        if length:
            self._map.flush(0, length)
            if hasattr(mmap, "MADV_DONTNEED"):
                self._map.madvise(mmap.MADV_DONTNEED, 0, length)

    def close(self):
        """Create the map(s) and return the number of instances written (0: empty map).

        With per_class and no instance, no map is created.
        """
        self._check_open()
        self._done = True
        try:
            self._release_grid(keep_file=True)
            built = self._build()
            self._rename(built)
        finally:
            self._cleanup()
        return self.count

    def abort(self):
        """Give up: remove every temporary map and file; no output is created. Idempotent."""
        self._done = True
        self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self.abort()

    def _check_open(self):
        if self._done:
            raise DetectionError("The instance writer is already closed")

    def _temporary(self, kind, purpose):
        name = temporary_name(purpose)
        self._temporaries[kind].append(name)  # before creation: removed even if half made
        return name

    def _run(self, module, **options):
        """Run an internal step; its messages (temporary names, notes) show only on failure."""
        process = gs.start_command(module, quiet=True, env=self._env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, **options)
        _, errors = process.communicate()
        if process.returncode:
            raise DetectionError("Writing the detected objects failed in {}: {}".format(
                module, gs.decode(errors).strip()[-2000:] or "exit status {}".format(
                    process.returncode)))

    def _build(self):
        """{(kind, final name): temporary map}: vectors with geometry, table and history,
        and the rasters."""
        ids = self._id_raster() if self._records and (
            "area" in self.output_type or "instances" in self.rasters) else None
        if self._records:
            parts = []
            if "area" in self.output_type:
                parts.append(self._areas(ids))
            if "point" in self.output_type:
                parts.append(self._points())
            combined = parts[0]
            if len(parts) > 1:
                combined = self._temporary("vector", "objects")
                self._run("v.patch", input=",".join(parts), output=combined)
        else:
            combined = self._temporary("vector", "objects")
            self._run("v.edit", map=combined, tool="create")
        self._run("v.db.addtable", map=combined, columns=COLUMNS)
        self._fill_table(combined)
        if not self.per_class:
            built = {("vector", self.outputs[None]): combined}
        else:
            present = sorted({record[0] for record in self._records})
            built = {}
            for class_id in present:
                part = self._temporary("vector", "class")
                self._run("v.extract", input=combined, output=part,
                          where="class_id = {}".format(class_id))
                built[("vector", self.outputs[class_id])] = part
        for temporary in built.values():
            self._set_history(temporary)
        if "instances" in self.rasters:
            if ids is None:  # no object: an all-null map
                ids = self._id_raster()
            self._set_raster_history(ids, "Object ids (the categories of the vector map)")
            built[("raster", self.rasters["instances"])] = ids
        if "scores" in self.rasters:
            scores = self._score_raster()
            self._set_raster_history(scores, "Score of the object covering each cell")
            built[("raster", self.rasters["scores"])] = scores
        return built

    def _import_grid(self, path, purpose, **options):
        """A temporary raster of the region from a raw row-major file of its cells."""
        name = self._temporary("raster", purpose)
        self._run("r.in.bin", input=path, output=name, order="native",
                  north=repr(self._north), south=repr(self._north - self._rows * self._nsres),
                  west=repr(self._west), east=repr(self._west + self._cols * self._ewres),
                  rows=self._rows, cols=self._cols, **options)
        return name

    def _id_raster(self):
        """The id grid as a temporary CELL raster, null where no object is."""
        return self._import_grid(self._grid_path, "ids", bytes=4, anull=0)

    def _score_raster(self):
        """A temporary DCELL raster of each cell's object score, written in row strips."""
        lookup = np.full(len(self._records) + 1, -1.0)  # -1: no object, becomes null
        for cat, record in enumerate(self._records, 1):
            lookup[cat] = record[1] if np.isfinite(record[1]) else -1.0
        ids = np.memmap(self._grid_path, np.int32, "r", shape=(self._rows, self._cols))
        handle, path = tempfile.mkstemp(prefix="maskrcnn_", suffix=".bin")
        try:
            with os.fdopen(handle, "wb") as stream:
                step = max(1, self._strip_cells // self._cols)
                for top in range(0, self._rows, step):
                    stream.write(lookup[ids[top:top + step]].astype("=f8").tobytes())
            del ids
            return self._import_grid(path, "scores", flags="d", bytes=8, anull=-1)
        finally:
            os.remove(path)

    def _areas(self, ids):
        areas = self._temporary("vector", "areas")
        self._run("r.to.vect", flags="vt", input=ids, output=areas, type="area")
        if self.orthogonal:  # the squared masks' staircases become straight edges
            areas = self._generalize(areas, "douglas", 2 * max(self._nsres, self._ewres))
        if self.smoothing:
            areas = self._generalize(areas, self.smoothing, self.smoothing_threshold)
        return areas

    def _generalize(self, areas, method, threshold):
        """areas with boundaries generalized; v.generalize keeps a boundary unchanged
        where the new one would cross another (topology stays valid)."""
        done = self._temporary("vector", "generalized")
        self._run("v.generalize", flags="t", input=areas, output=done, type="area",
                  method=method, threshold=repr(float(threshold)))
        return done

    def _points(self):
        points = self._temporary("vector", "points")
        handle, path = tempfile.mkstemp(prefix="maskrcnn_", suffix=".txt")
        try:
            with os.fdopen(handle, "w") as stream:
                for cat, (_, _, _, row, col, _) in enumerate(self._records, 1):
                    stream.write("{!r}|{!r}|{}\n".format(
                        self._west + (col + 0.5) * self._ewres,
                        self._north - (row + 0.5) * self._nsres, cat))
            self._run("v.in.ascii", flags="t", input=path, output=points, format="point",
                      separator="pipe", x=1, y=2, cat=3)
        finally:
            os.remove(path)
        return points

    def _fill_table(self, vector):
        """One UPDATE per instance, in one transaction where the driver has them."""
        link = gs.vector_db(vector, env=self._env)[1]
        cell_area = self._nsres * self._ewres
        handle, path = tempfile.mkstemp(prefix="maskrcnn_", suffix=".sql")
        try:
            with os.fdopen(handle, "w") as stream:
                transaction = link["driver"] in ("sqlite", "pg")
                if transaction:
                    stream.write("BEGIN;\n")
                for cat, (class_id, score, cells, _, _, source) in enumerate(self._records, 1):
                    stream.write(
                        "UPDATE {} SET class = {}, class_id = {}, score = {}, area = {}, "
                        "source = {} WHERE {} = {};\n".format(
                            link["table"], _sql_text(self.classes[class_id - 1]),
                            class_id, repr(score) if np.isfinite(score) else "NULL",
                            repr(cells * cell_area), _sql_text(source), link["key"], cat))
                if transaction:
                    stream.write("COMMIT;\n")
            if self._records:
                self._run("db.execute", input=path, driver=link["driver"],
                          database=link["database"])
        finally:
            os.remove(path)

    def _set_history(self, vector):
        """Replace the internal steps' history (temporary names) by ``history``."""
        if not self.history:
            return
        env = gs.gisenv()
        path = os.path.join(env["GISDBASE"], env["LOCATION_NAME"], env["MAPSET"], "vector",
                            vector, "hist")
        if os.path.exists(path):
            open(path, "w").close()
        self._run("v.support", map=vector, cmdhist=self.history)

    def _set_raster_history(self, raster, title):
        self._run("r.support", map=raster, title=title,
                  history=self.history or "i.ann.maskrcnn")

    def _rename(self, built):
        """Move the temporaries onto the final names (replacing old maps if overwrite)."""
        existing = [key for key in built if exists_here(*key)]
        if existing and not self.overwrite:
            raise DetectionError("{} map <{}> exists; use overwrite to replace it".format(
                existing[0][0].capitalize(), existing[0][1]))
        for (kind, final), temporary in built.items():
            if (kind, final) in existing:
                self._run("g.remove", flags="f", type=kind, name=final)
            self._run("g.rename", **{kind: "{},{}".format(temporary, final)})
            self._temporaries[kind].remove(temporary)
            if kind == "vector":  # the layer keeps the temporary name otherwise
                link = gs.vector_db(final, env=self._env)[1]
                self._run("v.db.connect", flags="o", map=final, layer=1,
                          table=link["table"], key=link["key"])

    def _release_grid(self, keep_file=False):
        self._ids = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if not keep_file and self._grid_path and os.path.exists(self._grid_path):
            os.remove(self._grid_path)

    def _cleanup(self):
        """Remove the id grid file and every temporary map that exists."""
        self._release_grid()
        for kind, names in self._temporaries.items():
            remove_maps(kind, names)
        self._temporaries = {"raster": [], "vector": []}

