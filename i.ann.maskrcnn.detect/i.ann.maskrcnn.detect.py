#!/usr/bin/env python3
############################################################################
#
# MODULE:       i.ann.maskrcnn.detect
# PURPOSE:      Detect objects in imagery with a trained Mask R-CNN model
# COPYRIGHT:    (C) 2026 the i.ann.maskrcnn authors
#               This program is free software under the GNU General Public
#               License (>=v2). Read the file COPYING that comes with GRASS
#               for details.
#
############################################################################

# %module
# % description: Detects objects in imagery with a Mask R-CNN model and writes them as vector maps.
# % keyword: imagery
# % keyword: artificial neural network
# % keyword: deep learning
# % keyword: instance segmentation
# % keyword: object detection
# % keyword: vector
# %end

# %flag
# % key: e
# % description: Georeferencing of the files in images_directory is external (world file or .aux.xml)
# % guisection: Input
# %end

# %flag
# % key: o
# % label: Square the outlines (buildings): edges along the object's main direction and at right angles to it
# % guisection: Output
# %end

# %flag
# % key: t
# % label: Test-time flips: average each object's mask over the tile and its flips west-east and north-south
# % description: Finer outlines at three times the network's time
# % guisection: Output
# %end

# %flag
# % key: r
# % label: Detect at the model's training resolution, on a resampled copy of the region
# % description: The region and the input maps stay as they are; objects come out in map coordinates
# % guisection: Input
# %end

# %option G_OPT_R_INPUTS
# % key: input
# % label: Raster maps to detect in, one per band of the model
# % required: no
# % guisection: Input
# %end

# %option G_OPT_R_INPUTS
# % key: band1
# % label: Raster maps used as the first band
# % description: Several maps (comma-separated) for several images
# % required: no
# % guisection: Input
# %end

# %option G_OPT_R_INPUTS
# % key: band2
# % label: Raster maps used as the second band
# % description: Several maps (comma-separated) for several images
# % required: no
# % guisection: Input
# %end

# %option G_OPT_R_INPUTS
# % key: band3
# % label: Raster maps used as the third band
# % description: Several maps (comma-separated) for several images
# % required: no
# % guisection: Input
# %end

# %option G_OPT_I_GROUP
# % key: group
# % label: Imagery group whose raster maps are the bands, in the group's order
# % description: Instead of input: the model's band order is the group's (i.group lists it)
# % required: no
# % guisection: Input
# %end

# %option G_OPT_I_SUBGROUP
# % key: subgroup
# % label: Subgroup of the group whose raster maps are the bands, in its order
# % required: no
# % guisection: Input
# %end

# %option G_OPT_M_DIR
# % key: images_directory
# % label: Directory with georeferenced images to detect in
# % required: no
# % guisection: Input
# %end

# %option
# % key: images_format
# % type: string
# % label: File name suffix of the images in images_directory
# % description: For example jpg, png, tif
# % required: no
# % guisection: Input
# %end

# %option G_OPT_F_INPUT
# % key: model
# % label: Trained model (.h5 file)
# % required: yes
# % guisection: Model
# %end

# %option
# % key: classes
# % type: string
# % label: Names of classes
# % description: In the order of the class ids the model was trained with; needed for a model without a model card (.json beside it)
# % required: no
# % multiple: yes
# % guisection: Model
# %end

# %option G_OPT_V_OUTPUT
# % key: output
# % label: Vector map of the detected objects
# % description: Keep empty for one map per class, named after the class
# % required: no
# % guisection: Output
# %end

# %option
# % key: output_type
# % type: string
# % label: Type of output features
# % options: area,point
# % answer: area
# % multiple: yes
# % guisection: Output
# %end

# %option
# % key: tile_size
# % type: integer
# % label: Size of the tiles the region is cut into (cells)
# % options: 64-
# % answer: 512
# % guisection: Tiling
# %end

# %option
# % key: overlap
# % type: integer
# % label: Overlap of neighbouring tiles (cells)
# % description: Objects cut by tile edges are merged across the overlap
# % options: 0-
# % answer: 64
# % guisection: Tiling
# %end

# %option
# % key: batch_size
# % type: integer
# % label: Number of tiles run through the network at once
# % options: 1-
# % answer: 1
# % guisection: Tiling
# %end

# %option
# % key: precision
# % type: string
# % label: Numeric precision of the network
# % description: float32: the same results on every CPU; bfloat16: faster on CPUs with native bfloat16 (AVX512_BF16, AMX), scores and outlines may differ slightly; auto: bfloat16 on such CPUs, else float32; int8: backbone, FPN and RPN in 8-bit integers by ONNX Runtime on CPUs with VNNI (fastest; calibrated on tiles of the region, the first run of a model and tile size pays a minute of set-up, kept for later runs), the heads as auto
# % options: float32,bfloat16,auto,int8
# % answer: float32
# % guisection: Tiling
# %end

# %option G_OPT_M_NPROCS
# % key: nprocs
# % type: integer
# % label: Number of CPU threads of TensorFlow
# % description: 0: as many as the machine has cores. The arithmetic of each step runs on nprocs threads, at most 2 steps at once
# % options: 0-
# % answer: 0
# % guisection: Tiling
# %end

# %option G_OPT_MEMORYMB
# % key: memory
# % type: integer
# % label: Memory for the rasters' cells read and written (MB)
# % description: Rows of tiles are read in pieces, and batches formed, within it (same objects); the network's own memory comes on top
# % options: 1-
# % answer: 300
# % guisection: Tiling
# %end

# %option
# % key: score_threshold
# % type: double
# % label: Minimum score of a detection
# % description: Keep empty for the model's (0.7 for models of the 2018 addon)
# % options: 0-1
# % guisection: Output
# %end

# %option
# % key: nms_threshold
# % type: double
# % label: Overlap (IoU) above which the weaker of two detections of a class is dropped
# % description: Keep empty for the model's (0.3 for models of the 2018 addon)
# % options: 0-1
# % guisection: Output
# %end

# %option G_OPT_V_INPUT
# % key: reference
# % label: Reference areas to assess the detections against
# % description: Per class precision, recall, F1, AP50, AP75 and mAP (COCO) in the region
# % required: no
# % guisection: Accuracy
# %end

# %option G_OPT_DB_COLUMN
# % key: reference_column
# % label: Column of the reference areas holding their class names
# % answer: class
# % required: no
# % guisection: Accuracy
# %end

# %option G_OPT_V_FIELD
# % key: reference_layer
# % label: Layer of the reference map holding its areas' categories and attributes
# % answer: 1
# % guisection: Accuracy
# %end

# %option G_OPT_DB_WHERE
# % key: reference_where
# % label: WHERE condition selecting the reference areas (SQL, without WHERE)
# % description: For example: class = 'building' AND year >= 2020
# % guisection: Accuracy
# %end

# %option G_OPT_F_OUTPUT
# % key: report
# % label: JSON file to write the accuracy figures to
# % required: no
# % guisection: Accuracy
# %end

# %option
# % key: min_area
# % type: double
# % label: Minimum area of an object (map units squared)
# % description: Smaller objects are dropped; keep empty for 4 cells of the region
# % options: 0-
# % required: no
# % guisection: Output
# %end

# %option
# % key: smoothing
# % type: string
# % label: Smoothing or simplification of the outlines (a v.generalize method)
# % description: none keeps the cell edges
# % options: none,douglas,lang,reduction,reumann,boyle,sliding_averaging,distance_weighting,chaiken,hermite,snakes
# % answer: none
# % guisection: Output
# %end

# %option
# % key: smoothing_threshold
# % type: double
# % label: Threshold of the smoothing method (map units)
# % description: v.generalize's threshold; about one or two cells
# % options: 0-
# % required: no
# % guisection: Output
# %end

# %option G_OPT_R_OUTPUT
# % key: instances
# % label: Raster map of object ids (the categories of the vector map), null elsewhere
# % required: no
# % guisection: Output
# %end

# %option G_OPT_R_OUTPUT
# % key: scores
# % label: Raster map of the score of the object covering each cell, null elsewhere
# % required: no
# % guisection: Output
# %end

# %rules
# % required: input, band1, images_directory, group
# % exclusive: input, band1, images_directory, group
# % requires: subgroup, group
# % requires_all: band1, band2, band3
# % requires_all: images_directory, images_format
# % requires: images_format, images_directory
# % requires: -e, images_directory
# % requires: report, reference
# % requires: reference_where, reference
# %end

import os
import sys

import grass.script as gs


def find_library():
    """Put maskrcnnlib on sys.path: the source tree first, then the installed addon."""
    source_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [source_root]
    installed = gs.utils.get_lib_path(modname="i.ann.maskrcnn", libname="maskrcnnlib")
    if installed:
        candidates += installed.split(os.pathsep)
    for path in candidates:
        if os.path.isfile(os.path.join(path, "maskrcnnlib", "__init__.py")):
            sys.path.insert(0, path)
            return path
    gs.fatal(_("Cannot find the maskrcnnlib library of i.ann.maskrcnn (looked in: {})").format(
        ", ".join(candidates)))


def split_list(value):
    return [item.strip() for item in value.split(",")] if value else []


def check_options(options, flags):
    """Reject values the parser cannot check; return the class names."""
    bands = [split_list(options[key]) for key in ("band1", "band2", "band3")]
    if len({len(maps) for maps in bands}) != 1:
        gs.fatal(_("band1, band2 and band3 must list the same number of raster maps "
                   "(got {}, {} and {})").format(*[len(maps) for maps in bands]))
    for name in bands[0] + bands[1] + bands[2]:
        if not gs.find_file(name, element="cell")["fullname"]:
            gs.fatal(_("Raster map <{}> not found").format(name))
    if options["images_directory"] and not os.path.isdir(options["images_directory"]):
        gs.fatal(_("Directory <{}> does not exist").format(options["images_directory"]))
    if not os.path.isfile(options["model"]):
        gs.fatal(_("Model file <{}> does not exist").format(options["model"]))
    classes = split_list(options["classes"])
    band_inputs = [key for key in ("input", "band1", "group", "images_directory")
                   if options[key]]
    if len(band_inputs) != 1:
        gs.fatal(_("Give the bands one way: input=, band1/band2/band3, group= (with "
                   "subgroup=) or images_directory= (given: {})").format(
                       ", ".join(band_inputs) or _("none")))
    if options["subgroup"] and not options["group"]:
        gs.fatal(_("subgroup= needs group="))
    if options["group"] and not gs.find_file(options["group"], element="group")["fullname"]:
        gs.fatal(_("Imagery group <{}> not found").format(options["group"]))
    for name in split_list(options["input"]):
        if not gs.find_file(name, element="cell")["fullname"]:
            gs.fatal(_("Raster map <{}> not found").format(name))
    if options["smoothing"] not in ("", "none") and not options["smoothing_threshold"]:
        gs.fatal(_("smoothing={} needs smoothing_threshold (map units, e.g. one or two "
                   "cells)").format(options["smoothing"]))
    if options["smoothing"] in ("", "none") and options["smoothing_threshold"]:
        gs.fatal(_("smoothing_threshold needs a smoothing method"))
    if options["instances"] and options["instances"] == options["scores"]:
        gs.fatal(_("instances and scores must be two different raster maps"))
    if any(not name for name in classes):
        gs.fatal(_("Empty class name in classes=<{}>").format(options["classes"]))
    if len(set(classes)) != len(classes):
        gs.fatal(_("Two or more classes have the same name: {}").format(options["classes"]))
    return classes


def make_job(options, flags, classes):
    from maskrcnnlib.detect import DetectJob

    if options["images_directory"] or options["group"]:
        images = []  # the group's rasters: resolved by the library
    elif options["input"]:
        images = [split_list(options["input"])]
    else:
        images = [list(maps) for maps in zip(*(split_list(options[key])
                                                for key in ("band1", "band2", "band3")))]
    return DetectJob(
        model=options["model"], images=images, group=options["group"] or None,
        subgroup=options["subgroup"] or None, output=options["output"] or None,
        classes=classes or None, output_type=options["output_type"].split(","),
        tile_size=int(options["tile_size"]), overlap=int(options["overlap"]),
        batch_size=int(options["batch_size"]),
        score_threshold=float(options["score_threshold"]) if options["score_threshold"]
        else None,
        nms_threshold=float(options["nms_threshold"]) if options["nms_threshold"] else None,
        overwrite=gs.overwrite(), history=" ".join(sys.argv),
        images_directory=options["images_directory"] or None,
        images_format=options["images_format"] or None, external=flags["e"],
        reference=options["reference"] or None,
        reference_column=options["reference_column"] or "class",
        reference_layer=options["reference_layer"] or "1",
        reference_where=options["reference_where"] or None,
        report=options["report"] or None,
        min_area=float(options["min_area"]) if options["min_area"] else None,
        smoothing=options["smoothing"] or "none",
        smoothing_threshold=float(options["smoothing_threshold"])
        if options["smoothing_threshold"] else None,
        orthogonal=flags["o"], instances=options["instances"] or None,
        scores=options["scores"] or None, resample=flags["r"],
        nprocs=int(options["nprocs"]), memory=int(options["memory"]), flips=flags["t"],
        precision=options["precision"] or "float32")


def main(options, flags):
    classes = check_options(options, flags)
    find_library()
    from maskrcnnlib import compilecache
    from maskrcnnlib.errors import MaskRCNNError
    from maskrcnnlib.quiet import import_tensorflow
    from maskrcnnlib.detect import run_detect_job
    from maskrcnnlib.tiling import check_tiling

    try:
        check_tiling(int(options["tile_size"]), int(options["overlap"]))
        compilecache.enable()  # before TensorFlow reads its XLA flags
        import_tensorflow()  # TensorFlow's own logs kept off the output (unless --verbose)
        run_detect_job(make_job(options, flags, classes), message=gs.message, percent=gs.percent,
                       warning=gs.warning)
    except MaskRCNNError as error:
        gs.fatal(str(error))


if __name__ == "__main__":
    sys.exit(main(*gs.parser()))
