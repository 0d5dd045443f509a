#!/usr/bin/env python3
"""Train a Mask R-CNN model on an orthophoto and detect buildings in it, without
starting GRASS: grass-session opens (or creates) the project."""
import os
import sys

from grass_session import Session

GISDB, PROJECT = "/data/grassdata", "town"
ADDONS = os.path.expanduser("~/.grass8/addons")  # where g.extension installed the toolset
BANDS = "ortho.red,ortho.green,ortho.blue"

new = not os.path.isdir(os.path.join(GISDB, PROJECT))
with Session(gisdb=GISDB, location=PROJECT, create_opts="EPSG:32633" if new else None):
    import grass.script as gs

    # grass-session sets GRASS 7's addon directory; the modules run with the
    # first python3 on PATH, which must be this one (it has TensorFlow)
    os.environ["GRASS_ADDON_BASE"] = ADDONS
    os.environ["PATH"] = os.pathsep.join([os.path.join(ADDONS, "scripts"),
                                          os.path.dirname(sys.executable),
                                          os.environ["PATH"]])
    if new:
        gs.run_command("r.import", input="/data/ortho.tif", output="ortho")
        gs.run_command("g.rename", raster="ortho.1,ortho.red,ortho.2,ortho.green,"
                                          "ortho.3,ortho.blue")
        gs.run_command("v.import", input="/data/footprints.gpkg", output="footprints")
    gs.run_command("g.region", vector="footprints", align="ortho.red")
    gs.run_command("i.ann.maskrcnn.train", input=BANDS, training_map="footprints",
                   class_column="type", classes="house,pool", logs="/data/logs",
                   name="buildings", backbone="resnet50", epochs=20, steps_per_epoch=500)
    gs.run_command("g.region", raster="ortho.red")
    gs.run_command("i.ann.maskrcnn.detect", input=BANDS,
                   model="/data/logs/mask_rcnn_buildings_0020.h5", output="buildings")
    print(gs.read_command("v.info", flags="t", map="buildings"))
