#!/usr/bin/env python3
############################################################################
#
# MODULE:       i.ann.maskrcnn.train
# PURPOSE:      Train a Mask R-CNN model for instance segmentation of imagery
# COPYRIGHT:    (C) 2026 the i.ann.maskrcnn authors
#               This program is free software under the GNU General Public
#               License (>=v2). Read the file COPYING that comes with GRASS
#               for details.
#
############################################################################

# %module
# % description: Trains a Mask R-CNN model for instance segmentation of imagery.
# % keyword: imagery
# % keyword: artificial neural network
# % keyword: deep learning
# % keyword: instance segmentation
# % keyword: object detection
# % keyword: training
# %end

# %flag
# % key: e
# % description: Initial weights were trained on other classes: exclude the heads
# % guisection: Model
# %end

# %flag
# % key: s
# % description: Hold out 10 % of images and save their list in the logs directory
# % guisection: Training
# %end

# %flag
# % key: b
# % description: Also train batch normalization layers (not recommended for small batches)
# % guisection: Model
# %end

# %flag
# % key: n
# % description: No resizing or padding of images (images must have sides divisible by 64)
# % guisection: Images
# %end

# %option G_OPT_M_DIR
# % key: training_dataset
# % label: Directory with the training dataset
# % description: One folder per image: <id>/<id>.jpg and one mask per instance <id>/<id>-<class>-<n>.png
# % required: yes
# % guisection: Input
# %end

# %option G_OPT_F_INPUT
# % key: model
# % label: Initial weights (.h5 file)
# % description: Keep empty to train from scratch
# % required: no
# % guisection: Model
# %end

# %option
# % key: classes
# % type: string
# % label: Names of classes
# % description: The order defines the class ids (1, 2, ...)
# % required: yes
# % multiple: yes
# % guisection: Input
# %end

# %option G_OPT_M_DIR
# % key: logs
# % label: Directory where the trained models (checkpoints) are saved
# % required: yes
# % guisection: Output
# %end

# %option
# % key: name
# % type: string
# % label: Name of the output models
# % description: Checkpoints are named mask_rcnn_<name>_<epoch>.h5
# % required: yes
# % guisection: Output
# %end

# %option
# % key: epochs
# % type: integer
# % label: Number of epochs
# % options: 1-
# % answer: 200
# % guisection: Training
# %end

# %option
# % key: steps_per_epoch
# % type: integer
# % label: Steps per epoch
# % options: 1-
# % answer: 3000
# % guisection: Training
# %end

# %option
# % key: rois_per_image
# % type: integer
# % label: Number of ROIs trained per image
# % options: 1-
# % answer: 64
# % guisection: Training
# %end

# %option
# % key: images_per_gpu
# % type: integer
# % label: Number of images per GPU
# % description: A bigger number trains faster but needs more GPU memory
# % options: 1-
# % answer: 1
# % guisection: Training
# %end

# %option
# % key: gpu_count
# % type: integer
# % label: Number of GPUs to use
# % options: 0-
# % answer: 1
# % guisection: Training
# %end

# %option
# % key: mini_mask_size
# % type: integer
# % label: Size of mini masks (height,width)
# % description: Keep empty to use full-sized masks; mini masks save memory at the expense of precision
# % key_desc: height,width
# % options: 1-
# % multiple: yes
# % guisection: Training
# %end

# %option
# % key: validation_steps
# % type: integer
# % label: Number of validation steps
# % description: A bigger number gives a more accurate estimate of the model's precision
# % options: 1-
# % answer: 100
# % guisection: Training
# %end

# %option
# % key: images_min_dim
# % type: integer
# % label: Minimum length of image sides
# % description: Images are resized so that their shorter side is at least this long
# % options: 1-
# % answer: 256
# % guisection: Images
# %end

# %option
# % key: images_max_dim
# % type: integer
# % label: Maximum length of image sides
# % description: Images are resized so that their longer side is at most this long (a multiple of 64)
# % options: 64-
# % answer: 1280
# % guisection: Images
# %end

# %option
# % key: backbone
# % type: string
# % label: Backbone architecture
# % options: resnet50,resnet101
# % answer: resnet101
# % guisection: Model
# %end

# %rules
# % requires: -e, model
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


def check_options(options, flags):
    """Reject values the parser cannot check; return the class names."""
    if not os.path.isdir(options["training_dataset"]):
        gs.fatal(_("Training dataset directory <{}> does not exist").format(
            options["training_dataset"]))
    if options["model"] and not os.path.isfile(options["model"]):
        gs.fatal(_("Initial weights file <{}> does not exist").format(options["model"]))
    classes = [name.strip() for name in options["classes"].split(",")]
    if any(not name for name in classes):
        gs.fatal(_("Empty class name in classes=<{}>").format(options["classes"]))
    if len(set(classes)) != len(classes):
        gs.fatal(_("Two or more classes have the same name: {}").format(options["classes"]))
    if options["mini_mask_size"] and len(options["mini_mask_size"].split(",")) > 2:
        gs.fatal(_("mini_mask_size takes one value (square) or two (height,width)"))
    min_dim, max_dim = int(options["images_min_dim"]), int(options["images_max_dim"])
    if max_dim % 64:
        gs.fatal(_("images_max_dim must be a multiple of 64, got {}").format(max_dim))
    if min_dim > max_dim:
        gs.fatal(_("images_min_dim ({}) is larger than images_max_dim ({})").format(
            min_dim, max_dim))
    return classes


def main(options, flags):
    check_options(options, flags)
    find_library()
    import maskrcnnlib

    gs.fatal(_("Training is not built yet in i.ann.maskrcnn {}: the options are valid, "
               "but this version cannot train a model").format(maskrcnnlib.__version__))


if __name__ == "__main__":
    sys.exit(main(*gs.parser()))
