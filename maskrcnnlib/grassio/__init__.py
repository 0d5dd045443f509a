"""The only place where maskrcnnlib reads or writes GRASS rasters and vectors.

One module per concern; import the module you need (this file imports none):

* ``region``:  the current computational region, windows of it, overlap with it;
* ``maps``:    map names in the current mapset (temporary names, removal);
* ``rasters``: raster maps found, checked against the region, read in windows
  and as strips of tiles for detection;
* ``areas``:   vector areas with a class column, checked and rasterized (training
  chips and detect's reference areas);
* ``chips``:   training chips cut from bands and areas;
* ``writer``:  detected instances written as a vector map.

Everything works in the *current computational region* (the user's
``g.region``, or a temporary region the caller set with
``gs.use_temp_region()`` / ``GRASS_REGION``) and never changes it: windows
smaller than the region are read by handing each command its own
``GRASS_REGION`` in a copied environment. The MASK is neither created nor
removed; like every GRASS raster read, reads honour it (masked cells read as
null).

Coordinate order, stated once for the whole package:

* a region, a window or a chip has ``rows`` x ``cols`` cells; row 0 is the
  northern edge (rows grow southwards), column 0 the western edge (columns
  grow eastwards);
* an image array is ``[y, x, band]`` with ``y`` = GRASS row and ``x`` = GRASS
  column, so ``image[r, c]`` is the cell whose centre is at
  east = west + (c + 0.5) * ewres, north = north - (r + 0.5) * nsres;
* a window or chip origin ``(row, col)`` is the region row/column of its
  top-left cell.

Errors are raised as :mod:`maskrcnnlib.errors` exceptions; nothing here calls
``gs.fatal``.
"""
