"""Map names in the current mapset: temporary names, whether a map is there, removal.

Every map the library makes for its own use is named by ``temporary_name`` (so
a leftover is recognised by its ``tmp_maskrcnn_`` prefix) and removed with
``remove_maps`` whatever happens.
"""
import os
import uuid

import grass.script as gs

TEMPORARY_PREFIX = "tmp_maskrcnn_"
# g.list/g.remove types and the g.findfile element they are stored as
ELEMENTS = {"raster": "cell", "vector": "vector"}


def temporary_name(purpose):
    """A map name no other run or process picks: prefix, purpose, process id, random part."""
    return "{}{}_{}_{}".format(TEMPORARY_PREFIX, purpose, os.getpid(), uuid.uuid4().hex[:12])


def exists_here(kind, name):
    """Whether a map ``name`` of ``kind`` ("raster" or "vector") is in the current mapset."""
    return bool(gs.find_file(name, element=ELEMENTS[kind], mapset=".")["fullname"])


def remove_maps(kind, names):
    """Remove those of the maps ``names`` (of ``kind``) that are in the current mapset."""
    existing = [name for name in names if exists_here(kind, name)]
    if existing:
        gs.run_command("g.remove", flags="f", type=kind, name=existing, quiet=True)
