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
# % label: Hold out about 10 % for validation and save the list in the logs directory
# % description: From raster maps: whole blocks of chips, and no training chip touches them; from a directory: whole images
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
# % required: no
# % guisection: Input
# %end

# %option G_OPT_R_INPUTS
# % key: input
# % label: Raster maps to train from, one per band
# % description: Instead of training_dataset: the current region is cut into chips
# % required: no
# % guisection: Input
# %end

# %option G_OPT_I_GROUP
# % key: group
# % label: Imagery group whose raster maps are the bands, in the group's order
# % description: Instead of input: the model card records the group's rasters as the band order
# % required: no
# % guisection: Input
# %end

# %option G_OPT_I_SUBGROUP
# % key: subgroup
# % label: Subgroup of the group whose raster maps are the bands, in its order
# % required: no
# % guisection: Input
# %end

# %option G_OPT_V_INPUT
# % key: training_map
# % label: Vector map with training areas (one area per object)
# % required: no
# % guisection: Input
# %end

# %option G_OPT_V_FIELD
# % key: layer
# % label: Layer of training_map holding the areas' categories and attributes
# % answer: 1
# % guisection: Input
# %end

# %option G_OPT_DB_WHERE
# % key: where
# % label: WHERE condition selecting the training areas of training_map (SQL, without WHERE)
# % description: For example: class IN ('building', 'shed') AND checked = 1
# % guisection: Input
# %end

# %option G_OPT_DB_COLUMN
# % key: class_column
# % label: Column of training_map with the class name of each area
# % required: no
# % guisection: Input
# %end

# %option
# % key: tile_size
# % type: integer
# % label: Size of training chips cut from the raster maps (cells)
# % options: 64-
# % answer: 256
# % guisection: Input
# %end

# %option
# % key: overlap
# % type: integer
# % label: Overlap of neighbouring training chips (cells)
# % options: 0-
# % answer: 32
# % guisection: Input
# %end

# %option G_OPT_V_INPUT
# % key: validation_map
# % label: Vector map with areas held out for validation
# % description: Instead of -s: chips wholly inside the areas validate, chips touching them do not train
# % required: no
# % guisection: Input
# %end

# %option
# % key: sampling
# % type: string
# % label: Training windows cut from the raster maps
# % description: grid: the fixed chips of the tile grid; random: windows of tile_size at random positions at every step
# % options: grid,random
# % answer: grid
# % guisection: Input
# %end

# %option G_OPT_M_DIR
# % key: chips_directory
# % label: Directory where the training chips are also written in the dataset layout
# % description: For reuse with training_dataset
# % required: no
# % guisection: Input
# %end

# %option G_OPT_F_INPUT
# % key: model
# % label: Initial weights: an .h5 file, or coco or imagenet
# % description: coco: matterport's mask_rcnn_coco.h5 (ResNet-101), imagenet: ResNet-50 backbone weights; both downloaded once into ~/.cache/i.ann.maskrcnn/weights. Empty: train from scratch
# % required: no
# % guisection: Model
# %end

# %option
# % key: classes
# % type: string
# % label: Names of classes
# % description: The order defines the class ids (1, 2, ...). Empty: the class_column values of the training areas in the region (from a directory: the classes in the mask file names), sorted; going on from a checkpoint: its classes
# % required: no
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
# % label: Number of GPUs to use (per machine)
# % description: 0 trains on the CPU; the default 1 also runs on the CPU where no GPU is visible. Several machines: set TF_CONFIG (see the manual)
# % options: 0-
# % answer: 1
# % guisection: Training
# %end

# %option
# % key: accumulation_steps
# % type: integer
# % label: Steps whose gradients are averaged before the weights change
# % description: Reaches a batch of images_per_gpu x GPUs x accumulation_steps images with the memory of images_per_gpu
# % options: 1-
# % answer: 1
# % guisection: Training
# %end

# %option
# % key: precision
# % type: string
# % label: Numeric precision of training
# % description: auto: bfloat16 on CPUs with native bfloat16 (AVX512_BF16, AMX), else float32; mixed: float16 on GPUs, bfloat16 on the CPU; weights stay float32
# % options: auto,float32,mixed
# % answer: auto
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
# % key: mask_size
# % type: integer
# % label: Side of the masks the mask head predicts for new models (cells of the box)
# % description: 28 (the default, as the 2018 models and mask_rcnn_coco.h5) or 56 (finer outlines of large objects, more computation in the mask head); a resumed run keeps its model's
# % options: 28,56
# % answer: 28
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

# %option G_OPT_M_NPROCS
# % key: nprocs
# % type: integer
# % label: Number of CPU threads of TensorFlow
# % description: 0: as many as the machine has cores. The arithmetic of each step runs on nprocs threads, at most 2 steps at once
# % options: 0-
# % answer: 0
# % guisection: Training
# %end

# %option G_OPT_MEMORYMB
# % key: memory
# % type: integer
# % label: Memory for the training area's rasters (MB)
# % description: A region whose bands and objects take more is read from disk a window at a time (same chips, same training)
# % options: 1-
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
# % key: learning_rate
# % type: double
# % label: Learning rate
# % description: Starting from a model, the last stage (all layers) uses a tenth of it
# % answer: 0.001
# % guisection: Training
# %end

# %option
# % key: keep
# % type: integer
# % label: Number of the last epoch checkpoints to keep
# % description: Older ones are removed as training goes on (0: keep all). With -s, the best epoch by validation mask mAP is also kept as mask_rcnn_<name>_best.h5
# % answer: 5
# % options: 0-
# % guisection: Output
# %end

# %option
# % key: patience
# % type: integer
# % label: Stop after this many epochs without a better validation mask mAP
# % description: Needs -s; 0: never stop early
# % answer: 0
# % options: 0-
# % guisection: Training
# %end

# %option
# % key: seed
# % type: integer
# % label: Seed of the random generators
# % description: The same seed and data give the same training run
# % guisection: Training
# %end

# %option
# % key: augment
# % type: string
# % label: Augmentation of training images
# % description: flip_rotate: random flips and rotations by 90 degrees (masks stay aligned); radiometric: random brightness, contrast and per-band gain (small ranges, see the manual)
# % options: none,flip_rotate,radiometric
# % multiple: yes
# % answer: none
# % guisection: Training
# %end

# %option
# % key: anchor_scales
# % type: integer
# % label: Anchor sizes of the five pyramid levels (cells of the resized image)
# % description: Keep empty to fit them to the sizes of the training objects
# % key_desc: size
# % options: 1-
# % multiple: yes
# % guisection: Model
# %end

# %option
# % key: backbone
# % type: string
# % label: Backbone architecture
# % description: resnet18 and resnet34 are lighter choices for CPUs
# % options: resnet50,resnet101,resnet18,resnet34
# % answer: resnet101
# % guisection: Model
# %end

# %rules
# % required: training_dataset, input, group
# % exclusive: training_dataset, input, group
# % requires_all: input, training_map, class_column
# % requires_all: group, training_map, class_column
# % requires: training_map, input, group
# % requires: subgroup, group
# % requires: where, training_map
# % requires: chips_directory, input, group
# % requires: validation_map, input, group
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


def int_list(value):
    return [int(v) for v in value.split(",")] if value else []


def check_options(options, flags):
    """Reject values the parser cannot check; return the class names."""
    if options["training_dataset"] and not os.path.isdir(options["training_dataset"]):
        gs.fatal(_("Training dataset directory <{}> does not exist").format(
            options["training_dataset"]))
    if options["model"] and not os.path.isfile(options["model"]) \
            and options["model"] not in ("coco", "imagenet"):
        gs.fatal(_("Initial weights file <{}> does not exist (give an .h5 file, or coco or "
                   "imagenet)").format(options["model"]))
    band_inputs = [key for key in ("training_dataset", "input", "group") if options[key]]
    if len(band_inputs) != 1:
        gs.fatal(_("Give the training data one way: training_dataset=, input= or group= "
                   "(with subgroup=) (given: {})").format(", ".join(band_inputs) or _("none")))
    if options["subgroup"] and not options["group"]:
        gs.fatal(_("subgroup= needs group="))
    if options["group"] and not gs.find_file(options["group"], element="group")["fullname"]:
        gs.fatal(_("Imagery group <{}> not found").format(options["group"]))
    # no classes=: from the data (see the classes option)
    classes = [name.strip() for name in options["classes"].split(",")] \
        if options["classes"] else None
    if classes and any(not name for name in classes):
        gs.fatal(_("Empty class name in classes=<{}>").format(options["classes"]))
    if classes and len(set(classes)) != len(classes):
        gs.fatal(_("Two or more classes have the same name: {}").format(options["classes"]))
    if int(options["patience"]) and not (flags["s"] or options["validation_map"]):
        gs.fatal(_("patience needs -s or validation_map: a held-out validation set to judge "
                   "the epochs by"))
    augment = options["augment"].split(",")
    if "none" in augment and len(augment) > 1:
        gs.fatal(_("augment=none cannot be combined with {}").format(options["augment"]))
    if len(int_list(options["mini_mask_size"])) > 2:
        gs.fatal(_("mini_mask_size takes one value (square) or two (height,width)"))
    min_dim, max_dim = int(options["images_min_dim"]), int(options["images_max_dim"])
    if max_dim % 64:
        gs.fatal(_("images_max_dim must be a multiple of 64, got {}").format(max_dim))
    if min_dim > max_dim:
        gs.fatal(_("images_min_dim ({}) is larger than images_max_dim ({})").format(
            min_dim, max_dim))
    if options["anchor_scales"] and len(int_list(options["anchor_scales"])) != 5:
        gs.fatal(_("anchor_scales takes 5 sizes, one per pyramid level"))
    return classes


def band_list(options):
    """The band rasters: input=, or the group's (subgroup's) rasters in its order."""
    if options["group"]:
        from maskrcnnlib.grassio.rasters import group_rasters

        bands = group_rasters(options["group"], options["subgroup"] or None)
        gs.message(_("Bands of {}<{}>: {}").format(
            _("subgroup <{}> of group ").format(options["subgroup"]) if options["subgroup"]
            else _("group "), options["group"], ",".join(bands)))
        return bands
    return options["input"].split(",") if options["input"] else None


def make_job(options, flags, classes):
    from maskrcnnlib.train_job import TrainJob

    return TrainJob(
        classes=classes, logs=options["logs"], name=options["name"],
        dataset_dir=options["training_dataset"] or None,
        bands=band_list(options),
        training_map=options["training_map"] or None,
        class_column=options["class_column"] or None,
        layer=options["layer"] or "1", where=options["where"] or None,
        tile_size=int(options["tile_size"]), overlap=int(options["overlap"]),
        chips_directory=options["chips_directory"] or None,
        initial_weights=options["model"] or None, exclude_heads=flags["e"],
        hold_out=flags["s"], validation_map=options["validation_map"] or None,
        sampling=options["sampling"], train_bn=flags["b"], no_resize=flags["n"],
        epochs=int(options["epochs"]), steps_per_epoch=int(options["steps_per_epoch"]),
        validation_steps=int(options["validation_steps"]),
        rois_per_image=int(options["rois_per_image"]),
        images_per_gpu=int(options["images_per_gpu"]),
        gpu_count=int(options["gpu_count"]),
        accumulation_steps=int(options["accumulation_steps"]),
        precision=options["precision"],
        mini_mask_size=int_list(options["mini_mask_size"]),
        mask_size=int(options["mask_size"]),
        images_min_dim=int(options["images_min_dim"]),
        images_max_dim=int(options["images_max_dim"]), backbone=options["backbone"],
        learning_rate=float(options["learning_rate"]),
        seed=int(options["seed"]) if options["seed"] else None,
        keep=int(options["keep"]), patience=int(options["patience"]),
        augment=[kind for kind in options["augment"].split(",") if kind != "none"] or False,
        anchor_scales=int_list(options["anchor_scales"]) or None,
        overwrite=gs.overwrite(), nprocs=int(options["nprocs"]),
        memory=int(options["memory"]))


def main(options, flags):
    classes = check_options(options, flags)
    find_library()
    from maskrcnnlib.errors import MaskRCNNError
    from maskrcnnlib.quiet import import_tensorflow
    from maskrcnnlib.tiling import check_tiling
    from maskrcnnlib.train_job import run_train_job

    try:
        check_tiling(int(options["tile_size"]), int(options["overlap"]))
        import_tensorflow()  # TensorFlow's own logs kept off the output (unless --verbose)
        result = run_train_job(make_job(options, flags, classes), message=gs.message,
                               percent=gs.percent)
    except MaskRCNNError as error:
        gs.fatal(str(error))
    if result.checkpoints:
        gs.message(_("Last checkpoint: {}").format(result.checkpoints[-1]))


if __name__ == "__main__":
    sys.exit(main(*gs.parser()))
