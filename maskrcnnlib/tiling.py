"""Tiles over the computational region, and one instance per object across tile seams.

Pure numpy. Coordinates are cells of the current computational region:
(row, col), row 0 the northern edge, col 0 the western edge. Inside a tile's
image, y = row - tile.row and x = col - tile.col. Boxes are
(row0, col0, row1, col1) with row1 and col1 exclusive.

Grid: tiles are ``tile_size`` cells square and step by ``tile_size - overlap``;
the last tile of each axis is moved back to end at the region's edge, so it
may overlap its neighbour by more than ``overlap``, and in rare cases the tile
before that one as well. A region shorter than a tile gets one tile along that
axis; the caller pads that tile's image beyond the region.

Merging: each detection is a *view* of an object from one tile. Two views from
tiles T and U are linked when they have the same class and
  * T and U overlap. Both tiles saw exactly the same cells in the common
    area C = T n U, so two views of one object should agree there, whether
    the object lies wholly inside C (a duplicate) or is cut by the edge of T
    or U (a piece). Views are linked when, *restricted to C*, their
    IoU >= iou_threshold or their intersection over the smaller of the two
    >= ios_threshold (one tile saw only part of it). Cells outside C do not
    count, so a piece clipped by T's edge still matches U's fuller view.
  * T and U only touch along a seam line that no other tile covers (only
    possible with overlap = 0). Views that reach that line from both sides
    are linked when their one-cell-wide profiles along it pass the same
    IoU / IoS test.
Links are transitive (union-find), so an object spanning any number of tiles
in both directions becomes one instance. A group of linked views comes out as
one Instance: mask = union of the views, so partial and cut views together
give the whole object (or, with masks="central", which detection uses, each
cell as decided by the view whose tile holds it farthest from its inner
edges, so a whole view from inside a tile overrules a cut view's guess at its
tile's edge, and cut views still add the cells only they see); score = the
highest view score (keeping the best-scoring duplicate; no area weighting, so a merged object never scores
below its best view); class = the shared class. Views of different classes
are never linked. Views from the same tile are never compared with each
other: the detector has already told them apart.

Touching objects: when overlap > 0, two same-class objects that touch each
other, even on a tile edge, stay separate. Adjacency alone never links views:
inside C each tile sees both objects, and the views of one do not overlap the
views of the other. Only with overlap = 0 is adjacency the sole evidence.
There, two same-class objects that touch exactly along a seam line are merged.
The only fix is an overlap > 0.

Limits (with real detections):
  * Links chain. If one tile's detection covers two objects that its
    neighbour told apart, the two objects come out as one.
  * A view that enters C by a thin sliver can be linked by IoS to a
    neighbour's view whose mask spills over that sliver, if the neighbouring
    tile missed the sliver itself.
  * The union keeps any wrong cells that a tile predicted near its edge.
    ``instances_from_tile(core_margin=...)`` drops views that lie wholly
    within the edge margin, which the neighbour sees away from its own edge.
  * Views that share no cells in C stay separate. An example is a tile that
    missed the part of the object inside C.

Streaming: ``SeamMerger.add_row`` takes the views of one tile row. An
instance is finished, and is returned by ``pop_finished``, as soon as its
last row is above ``start of the next tile row - 1``: no later tile can then
overlap or touch it. The merger holds only the views of groups that are not
finished: the current row, plus the objects that reach into the next tile
row.
"""
import numbers
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from maskrcnnlib.errors import ConfigError

MIN_TILE_SIZE = 64
# how SeamMerger makes one mask of the views of one object
MASK_RULES = ("union", "central")


class Tile(NamedTuple):
    """One tile: the region cells [row, row + height) x [col, col + width).

    row, col: offset of the tile's first cell in the region. height, width:
    cells of the region inside the tile. They are tile_size except where the
    region is smaller than a tile. There the caller pads the image to
    tile_size x tile_size.
    """

    row: int
    col: int
    height: int
    width: int

    @property
    def row_end(self):
        """First region row below the tile (exclusive end)."""
        return self.row + self.height

    @property
    def col_end(self):
        """First region column right of the tile (exclusive end)."""
        return self.col + self.width

    @property
    def box(self):
        """(row0, col0, row1, col1) in region cells, ends exclusive."""
        return (self.row, self.col, self.row_end, self.col_end)


@dataclass(eq=False)
class Instance:
    """One object in region coordinates, kept compact.

    mask: bool [height, width] over the bounding box whose first cell is the
    region cell (row0, col0), so mask[y, x] is cell (row0 + y, col0 + x).
    tile: the Tile that the view was detected in. It is None for merged
    instances, which come out of SeamMerger.
    """

    class_id: int
    score: float
    row0: int
    col0: int
    mask: np.ndarray
    tile: Optional[Tile] = None

    @property
    def row1(self):
        return self.row0 + self.mask.shape[0]

    @property
    def col1(self):
        return self.col0 + self.mask.shape[1]

    @property
    def box(self):
        """(row0, col0, row1, col1) in region cells, ends exclusive."""
        return (self.row0, self.col0, self.row1, self.col1)

    @property
    def area(self):
        """Number of cells in the mask."""
        return int(np.count_nonzero(self.mask))


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_tiling(tile_size, overlap, min_tile=MIN_TILE_SIZE):
    """Raise ConfigError (a ValueError) unless min_tile <= tile_size, 0 <= overlap < tile_size/2."""
    if not _is_int(tile_size) or tile_size < min_tile:
        raise ConfigError("tile_size must be an integer of at least {} cells, got {!r}".format(
            min_tile, tile_size), field="tile_size")
    if not _is_int(overlap) or not 0 <= overlap < tile_size / 2:
        raise ConfigError(
            "overlap must be an integer from 0 to less than half of tile_size ({}), got {!r}"
            .format(tile_size, overlap), field="overlap")


def tile_origins(length, tile_size, overlap):
    """Start offsets of the tiles along one axis (rows or columns) of `length` cells.

    >>> tile_origins(200, 64, 16)
    [0, 48, 96, 136]
    """
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    count = -(-(length - tile_size) // stride) + 1
    return [min(index * stride, length - tile_size) for index in range(count)]


def tile_grid(rows, cols, tile_size, overlap, min_tile=MIN_TILE_SIZE):
    """Tiles covering a region of rows x cols cells: a list of tile rows, north to south.

    Each tile row is a list of Tile, west to east. All tiles of a tile row
    share row and height, and all tiles of a column share col and width.
    Raises ConfigError (a ValueError) for a bad tile_size or overlap, or an
    empty region.
    """
    check_tiling(tile_size, overlap, min_tile)
    if not (_is_int(rows) and _is_int(cols)) or rows < 1 or cols < 1:
        raise ConfigError("the region must have at least one row and one column, got "
                          "{!r} x {!r}".format(rows, cols))
    col_starts = tile_origins(cols, tile_size, overlap)
    return [[Tile(row, col, min(tile_size, rows - row), min(tile_size, cols - col))
             for col in col_starts] for row in tile_origins(rows, tile_size, overlap)]


def tiles_meeting(grid, rows, cols):
    """How many tiles of grid (tile_grid) share at least one cell with a block of cells.

    rows, cols: the block's (first, end) region rows and columns, end excluded; an
    empty range meets no tile.
    """
    (first_row, end_row), (first_col, end_col) = rows, cols
    if first_row >= end_row or first_col >= end_col:
        return 0
    tile_rows = sum(1 for row in grid if row[0].row < end_row and row[0].row_end > first_row)
    tile_cols = sum(1 for tile in grid[0] if tile.col < end_col and tile.col_end > first_col)
    return tile_rows * tile_cols


def instances_from_tile(tile, masks, class_ids, scores, core_margin=0, region_shape=None):
    """Views detected in one tile, as Instances in region coordinates.

    Args:
        tile: the Tile that the image was read from.
        masks: bool [H, W, N], indexed [y, x, instance], at the tile's cell
            size (already un-molded to the tile image). H >= tile.height and
            W >= tile.width. Cells beyond them are padding and are ignored.
        class_ids: int [N]. scores: float [N].
        core_margin: a view that lies wholly within this many cells of a tile
            edge shared with a neighbouring tile is dropped: the neighbour
            sees it whole, away from its own edge, as long as
            core_margin <= overlap // 2. Edges on the region's border never
            drop anything.
        region_shape: (rows, cols) of the region. Needed when core_margin > 0.

    Returns a list of Instance with tile set. Each mask is a copy cropped to
    its box. Empty masks are dropped.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] < tile.height or masks.shape[1] < tile.width:
        raise ValueError("masks must be [H, W, N] with H >= {} and W >= {}, got {}".format(
            tile.height, tile.width, masks.shape))
    class_ids = np.asarray(class_ids).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(class_ids) == len(scores) == masks.shape[2]:
        raise ValueError("one class id and one score per mask are needed")
    if core_margin < 0:
        raise ValueError("core_margin must be >= 0, got {}".format(core_margin))
    if core_margin and region_shape is None:
        raise ValueError("region_shape is needed to tell interior tile edges when core_margin > 0")
    masks = masks[:tile.height, :tile.width].astype(bool, copy=False)
    rows_hit, cols_hit = masks.any(axis=1), masks.any(axis=0)  # [h, N], [w, N]
    instances = []
    for index in range(masks.shape[2]):
        rows = np.flatnonzero(rows_hit[:, index])
        if not rows.size:
            continue
        cols = np.flatnonzero(cols_hit[:, index])
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        if core_margin and _in_edge_margin(tile, (y0, x0, y1, x1), core_margin, region_shape):
            continue
        instances.append(Instance(int(class_ids[index]), float(scores[index]), tile.row + y0,
                                  tile.col + x0, masks[y0:y1, x0:x1, index].copy(), tile))
    return instances


def _in_edge_margin(tile, local_box, margin, region_shape):
    """Whether a box (tile y/x) lies wholly within `margin` cells of one interior tile edge."""
    y0, x0, y1, x1 = local_box
    rows, cols = region_shape
    return ((tile.row > 0 and y1 <= margin)
            or (tile.col > 0 and x1 <= margin)
            or (tile.row_end < rows and y0 >= tile.height - margin)
            or (tile.col_end < cols and x0 >= tile.width - margin))


def _meet(box_a, box_b):
    """Intersection of two boxes, or None when it is empty."""
    box = (max(box_a[0], box_b[0]), max(box_a[1], box_b[1]),
           min(box_a[2], box_b[2]), min(box_a[3], box_b[3]))
    return box if box[0] < box[2] and box[1] < box[3] else None


def _cells(instance, box):
    """The instance's mask over `box`, zero where the box leaves the instance's box."""
    out = np.zeros((box[2] - box[0], box[3] - box[1]), dtype=bool)
    inner = _meet(instance.box, box)
    if inner is not None:
        out[inner[0] - box[0]:inner[2] - box[0], inner[1] - box[1]:inner[3] - box[1]] = \
            instance.mask[inner[0] - instance.row0:inner[2] - instance.row0,
                          inner[1] - instance.col0:inner[3] - instance.col0]
    return out


def _count(instance, box):
    """Cells of the instance inside `box`."""
    inner = _meet(instance.box, box)
    return 0 if inner is None else int(np.count_nonzero(_cells(instance, inner)))


class _TileViews:
    """Views of one tile still able to link: ids, boxes int [n, 4], class ids [n]."""

    def __init__(self, tile, ids, views):
        self.tile = tile
        self.ids = list(ids)
        self.boxes = np.array([views[i].box for i in self.ids], dtype=np.int64).reshape(-1, 4)
        self.classes = np.array([views[i].class_id for i in self.ids], dtype=np.int64)

    def meeting(self, box):
        """Indices of the views whose box meets `box`."""
        b = self.boxes
        return np.flatnonzero((b[:, 0] < box[2]) & (b[:, 2] > box[0])
                              & (b[:, 1] < box[3]) & (b[:, 3] > box[1]))

    def keep(self, selected, views):
        """These views restricted to the ids in `selected`, or None when none is left."""
        ids = [i for i in self.ids if i in selected]
        return _TileViews(self.tile, ids, views) if ids else None


class SeamMerger:
    """Streaming merge of the views of a tile grid, fed one tile row at a time.

    Call add_row(views) once per tile row of `grid`, in order and even when a
    row has no views. After each call, pop_finished() returns the instances
    that no later tile can reach. finish() returns the rest. The merge rule
    is in the module docstring.

    Args:
        grid: the tile_grid() result. The merger needs the real start of
            every tile row, because the last row overlaps by more than
            `overlap`.
        iou_threshold, ios_threshold: in (0, 1]. They are applied to views
            restricted to the area that their two tiles share.
        cross_class: also link views of different classes that agree in the
            shared area (one object seen whole by one tile and cut by the other's
            edge is often classified differently there); the group takes the
            class of its best-scoring view. Off: classes never mix.
        masks: MASK_RULES: "union" (the union of the group's views) or "central"
            (each cell as the view decides whose tile holds the cell farthest from
            that tile's inner edges, so where a tile sees the object whole and away
            from its edges, its view gives the mask). What a view guesses at its
            tile's edge, or two views that disagree at the outline, make the
            union larger than any view.
    """

    def __init__(self, grid, iou_threshold=0.5, ios_threshold=0.8, cross_class=False,
                 masks="union"):
        if not grid or not all(grid):
            raise ValueError("the tile grid must have at least one tile")
        for name, value in (("iou_threshold", iou_threshold), ("ios_threshold", ios_threshold)):
            if not 0 < value <= 1:
                raise ValueError("{} must be in (0, 1], got {}".format(name, value))
        self._grid = grid
        self._iou, self._ios = float(iou_threshold), float(ios_threshold)
        self._cross_class = bool(cross_class)
        if masks not in MASK_RULES:
            raise ValueError("masks must be one of {}, got {!r}".format(MASK_RULES, masks))
        self._central = masks == "central"
        self._shape = (grid[-1][0].row_end, grid[0][-1].col_end)
        self._row_spans = [(row[0].row, row[0].row_end) for row in grid]
        self._col_spans = [(tile.col, tile.col_end) for tile in grid[0]]
        self._next_row = 0
        self._views = {}    # id -> Instance (every view held)
        self._parent = {}   # id -> id (union-find)
        self._members = {}  # root id -> ids of its group
        self._last_row = {}  # root id -> last region row of its group
        self._index = []    # _TileViews of earlier rows still able to link
        self._finished = []
        self._next_id = 0

    @property
    def held(self):
        """Number of views held (the current row plus open groups)."""
        return len(self._views)

    @property
    def first_open_row(self):
        """Top region row that instances still to come may reach, or None once all is out.

        Rows above it are final: no later instance has cells there. It is the
        start of the next tile row, or the top of an open group above that.
        """
        if self._next_row >= len(self._grid):
            return None
        tops = [view.row0 for view in self._views.values()]
        return min(tops + [self._grid[self._next_row][0].row])

    def add_row(self, instances):
        """Add the views (Instances with .tile) of the next tile row and merge them."""
        if self._next_row >= len(self._grid):
            raise ValueError("all {} tile rows were added already".format(len(self._grid)))
        by_tile = {tile: [] for tile in self._grid[self._next_row]}
        for view in instances:
            if view.tile not in by_tile:
                raise ValueError("a view from tile {} is not in tile row {}".format(
                    view.tile, self._next_row))
            if view.mask.any():
                by_tile[view.tile].append(self._hold(view))
        current = [_TileViews(tile, ids, self._views) for tile, ids in by_tile.items() if ids]
        for position, views in enumerate(current):
            for other in current[:position] + self._index:
                self._link(views, other)
        self._next_row += 1
        if self._next_row < len(self._grid):
            # Linking needs a view's cells in a later tile, or on the row just above one.
            reach = self._grid[self._next_row][0].row - 1
            self._close(lambda root: self._last_row[root] < reach)
            open_ids = {i for i, view in self._views.items() if view.row1 - 1 >= reach}
            kept = (views.keep(open_ids, self._views) for views in self._index + current)
            self._index = [views for views in kept if views is not None]
        else:
            self._close(lambda root: True)
            self._index = []

    def pop_finished(self):
        """The finished instances not returned yet, sorted by (row0, col0)."""
        finished = sorted(self._finished, key=lambda instance: (instance.row0, instance.col0))
        self._finished = []
        return finished

    def finish(self):
        """Close every group still held, then return pop_finished()."""
        self._close(lambda root: True)
        self._index = []
        self._next_row = len(self._grid)
        return self.pop_finished()

    def _hold(self, view):
        view_id = self._next_id
        self._next_id += 1
        self._views[view_id] = view
        self._parent[view_id] = view_id
        self._members[view_id] = [view_id]
        self._last_row[view_id] = view.row1 - 1
        return view_id

    def _root(self, view_id):
        while self._parent[view_id] != view_id:
            self._parent[view_id] = self._parent[self._parent[view_id]]
            view_id = self._parent[view_id]
        return view_id

    def _union(self, id_a, id_b):
        root_a, root_b = self._root(id_a), self._root(id_b)
        if root_a == root_b:
            return
        if len(self._members[root_a]) < len(self._members[root_b]):
            root_a, root_b = root_b, root_a
        self._parent[root_b] = root_a
        self._members[root_a] += self._members.pop(root_b)
        self._last_row[root_a] = max(self._last_row[root_a], self._last_row.pop(root_b))

    def _close(self, is_finished):
        for root in [root for root in self._members if is_finished(root)]:
            ids = self._members.pop(root)
            del self._last_row[root]
            views = [self._views[i] for i in ids]
            self._finished.append(_central_of(views, self._shape) if self._central
                                  else _union_of(views))
            for i in ids:
                del self._views[i]
                del self._parent[i]

    def _agree(self, intersection, count_a, count_b):
        union = count_a + count_b - intersection
        return (intersection >= self._iou * union
                or intersection >= self._ios * min(count_a, count_b))

    def _link(self, views_a, views_b):
        common = _meet(views_a.tile.box, views_b.tile.box)
        if common is not None:
            self._link_in_common_area(views_a, views_b, common)
            return
        seam = self._open_seam(views_a.tile, views_b.tile)
        if seam is not None:
            self._link_across_seam(views_a, views_b, *seam)

    def _link_in_common_area(self, views_a, views_b, common):
        index_a, index_b = views_a.meeting(common), views_b.meeting(common)
        if not index_a.size or not index_b.size:
            return
        box_a, box_b = views_a.boxes[index_a], views_b.boxes[index_b]
        lower = np.maximum(np.maximum(box_a[:, None, :2], box_b[None, :, :2]), common[:2])
        upper = np.minimum(np.minimum(box_a[:, None, 2:], box_b[None, :, 2:]), common[2:])
        candidates = np.all(lower < upper, axis=-1)
        if not self._cross_class:
            candidates &= views_a.classes[index_a][:, None] == views_b.classes[index_b][None, :]
        counts = {}
        for i, j in zip(*np.nonzero(candidates)):
            id_a, id_b = views_a.ids[index_a[i]], views_b.ids[index_b[j]]
            window = (*lower[i, j], *upper[i, j])
            view_a, view_b = self._views[id_a], self._views[id_b]
            intersection = np.count_nonzero(_cells(view_a, window) & _cells(view_b, window))
            if not intersection:
                continue
            for view_id in (id_a, id_b):
                if view_id not in counts:
                    counts[view_id] = _count(self._views[view_id], common)
            if self._agree(intersection, counts[id_a], counts[id_b]):
                self._union(id_a, id_b)

    def _open_seam(self, tile_a, tile_b):
        """(line_a, line_b) boxes: the last line of one tile and the first of the other.

        Only for tiles that touch along an edge that no tile of the grid
        covers (overlap = 0); otherwise None.
        """
        for first, second in ((tile_a, tile_b), (tile_b, tile_a)):
            if first.row_end == second.row:
                start, end = max(first.col, second.col), min(first.col_end, second.col_end)
                seam = second.row
                if start < end and not any(a < seam < b for a, b in self._row_spans):
                    return (seam - 1, start, seam, end), (seam, start, seam + 1, end)
            if first.col_end == second.col:
                start, end = max(first.row, second.row), min(first.row_end, second.row_end)
                seam = second.col
                if start < end and not any(a < seam < b for a, b in self._col_spans):
                    return (start, seam - 1, end, seam), (start, seam, end, seam + 1)
        return None

    def _link_across_seam(self, views_a, views_b, line_a, line_b):
        if _meet(views_a.tile.box, line_a) is None:
            views_a, views_b = views_b, views_a
        index_a, index_b = views_a.meeting(line_a), views_b.meeting(line_b)
        if not index_a.size or not index_b.size:
            return
        ids_a = [views_a.ids[i] for i in index_a]
        ids_b = [views_b.ids[i] for i in index_b]
        profile_a = np.stack([_cells(self._views[i], line_a).ravel() for i in ids_a])
        profile_b = np.stack([_cells(self._views[i], line_b).ravel() for i in ids_b])
        intersections = profile_a.astype(np.int64) @ profile_b.T.astype(np.int64)
        same = views_a.classes[index_a][:, None] == views_b.classes[index_b][None, :]
        count_a, count_b = profile_a.sum(axis=1), profile_b.sum(axis=1)
        for i, j in zip(*np.nonzero(same & (intersections > 0))):
            if self._agree(intersections[i, j], count_a[i], count_b[j]):
                self._union(ids_a[i], ids_b[j])


def _depth(tile, rows, cols, shape):
    """Cells from each cell of the rows x cols grid (region row and column numbers,
    broadcastable) to the nearest edge of `tile` that another tile continues (the
    region's border is no such edge; inf when the tile has none); -1 outside the tile."""
    depth = np.full(np.broadcast(rows, cols).shape, np.inf)
    if tile.row > 0:
        depth = np.minimum(depth, rows - tile.row)
    if tile.row_end < shape[0]:
        depth = np.minimum(depth, tile.row_end - 1 - rows)
    if tile.col > 0:
        depth = np.minimum(depth, cols - tile.col)
    if tile.col_end < shape[1]:
        depth = np.minimum(depth, tile.col_end - 1 - cols)
    inside = ((rows >= tile.row) & (rows < tile.row_end)
              & (cols >= tile.col) & (cols < tile.col_end))
    return np.where(inside, depth, -1.0)


def _central_of(views, shape):
    """One Instance: each cell of the group's box as the view decides whose tile holds
    that cell farthest from its inner edges (ties: the better score), so a tile's guess
    at its own edge gives way to a neighbour that sees the place from inside; highest
    score, class of the best-scoring view. The union where that leaves no cell."""
    if len(views) == 1:
        return _union_of(views)
    merged = _union_of(views)
    box = merged.box
    rows = np.arange(box[0], box[2])[:, None]
    cols = np.arange(box[1], box[3])[None, :]
    deepest = np.full(merged.mask.shape, -1.0)
    mask = np.zeros(merged.mask.shape, bool)
    for view in sorted(views, key=lambda v: v.score):  # a later view wins a tie
        depth = _depth(view.tile, rows, cols, shape)
        take = (depth >= 0) & (depth >= deepest)
        deepest = np.where(take, depth, deepest)
        mask = np.where(take, _cells(view, box), mask)
    if not mask.any():
        return merged
    y0, x0, y1, x1 = _tight_box(mask)
    return Instance(merged.class_id, merged.score, box[0] + y0, box[1] + x0,
                    mask[y0:y1, x0:x1].copy())


def _tight_box(mask):
    """(y0, x0, y1, x1) of the set cells of a non-empty 2-D mask, ends exclusive."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _union_of(views):
    """One Instance: union of the views' masks, their class, their highest score."""
    if len(views) == 1:
        view = views[0]
        return Instance(view.class_id, view.score, view.row0, view.col0, view.mask)
    row0, col0 = min(v.row0 for v in views), min(v.col0 for v in views)
    row1, col1 = max(v.row1 for v in views), max(v.col1 for v in views)
    mask = np.zeros((row1 - row0, col1 - col0), dtype=bool)
    for v in views:
        mask[v.row0 - row0:v.row1 - row0, v.col0 - col0:v.col1 - col0] |= v.mask
    best = max(views, key=lambda v: v.score)  # cross-class groups take the best class
    return Instance(best.class_id, best.score, row0, col0, mask)
