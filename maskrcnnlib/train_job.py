"""One training run as i.ann.maskrcnn.train describes it: data, model settings, output.

The module turns its options into a TrainJob and calls run_train_job. The job is
prepared here, each step once (logs directory, datasets, normalization, anchors,
the Config, resume checks, device placement); maskrcnnlib.train.train then runs
the training loop with what was prepared, and never imports this module.
"""
import csv
import os
import re
from dataclasses import dataclass, field

import numpy as np

from maskrcnnlib.config import Config, default_pixel_mean
from maskrcnnlib.errors import DatasetError, TrainingError
from maskrcnnlib.modelcard import config_for_weights, read_card


@dataclass
class TrainJob:
    classes: list  # None: from the class column (GRASS maps) or the mask names (directory)
    logs: str
    name: str
    dataset_dir: str = None  # the directory layout, or:
    bands: list = None  # raster maps (one per band) with
    training_map: str = None  # vector areas and
    class_column: str = None  # their class names
    layer: str = "1"  # training_map's layer
    where: str = None  # SQL condition selecting its training areas
    tile_size: int = 256
    overlap: int = 32
    chips_directory: str = None
    initial_weights: str = None
    exclude_heads: bool = False
    hold_out: bool = False  # -s: hold out blocks of the grid (GRASS maps) or images
    validation_map: str = None  # vector areas to validate on (GRASS maps; implies holding out)
    sampling: str = "grid"  # GRASS maps: "grid" chips or "random" windows at each step
    train_bn: bool = False
    no_resize: bool = False
    # the network's settings: their defaults are Config's (one home)
    epochs: int = Config.epochs
    steps_per_epoch: int = Config.steps_per_epoch
    validation_steps: int = Config.validation_steps
    rois_per_image: int = Config.train_rois_per_image
    images_per_gpu: int = Config.images_per_gpu
    gpu_count: int = Config.gpu_count
    accumulation_steps: int = Config.accumulation_steps
    precision: str = Config.precision
    mini_mask_size: list = field(default_factory=list)
    # side of the mask head's output (MASK_SIZES) for a new model; a resumed one keeps its own
    mask_size: int = 2 * Config.mask_pool_size
    images_min_dim: int = Config.image_min_dim
    images_max_dim: int = Config.image_max_dim
    backbone: str = Config.backbone
    learning_rate: float = Config.learning_rate
    seed: int = None
    augment: bool = False  # True/False, or a list of augment.KINDS
    anchor_scales: list = None
    keep: int = 5  # epoch checkpoints kept (the last ones); 0: all
    patience: int = 0  # epochs without a better validation mask mAP before stopping; 0: never
    overwrite: bool = False  # --overwrite: chips_directory may be replaced
    nprocs: int = 0  # TensorFlow's CPU threads (maskrcnnlib.threads); 0: all cores
    writes: bool = True  # False on a worker other than the chief (TF_CONFIG)
    normalization: dict = None  # set by make_config: how pixel values were normalized
    area: object = None  # set by load_data from GRASS maps: the windows.TrainingArea
    # MB the training area's rasters may take in memory; larger ones are read from disk
    # a window at a time (None: grassio.chips.AREA_MEMORY_MB)
    memory: int = None
    held: object = None  # set by split: the held-out cells (closed with the area)


def prepare_logs(logs):
    """Create the logs directory; TrainingError when it cannot be written."""
    try:
        os.makedirs(logs, exist_ok=True)
        probe = os.path.join(logs, ".write_test_{}".format(os.getpid()))
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise TrainingError("Cannot write in the logs directory {}: {}".format(
            logs, error.strerror or error)) from error


CHECKPOINT_NAME = re.compile(r"mask_rcnn_(?P<name>.+)_(?P<epoch>\d{4}|best)\.(?:h5|json)\Z")


def run_files(logs, name):
    """[(epoch number, or None for the best checkpoint, path)] of the checkpoints and
    cards of the run <name> in logs, and (None, path) of its CSV log."""
    found = []
    for entry in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        match = CHECKPOINT_NAME.match(entry)
        if match and match.group("name") == name:
            epoch = match.group("epoch")
            found.append((None if epoch == "best" else int(epoch), os.path.join(logs, entry)))
        elif entry == "mask_rcnn_{}.csv".format(name):
            found.append((None, os.path.join(logs, entry)))
    return found


def resumed_epoch(job):
    """The epoch of job.initial_weights when it is a checkpoint of this run (same logs,
    same name), else None."""
    if not job.initial_weights or not os.path.isfile(job.initial_weights) \
            or job.exclude_heads:  # -e: a new run from those weights
        return None
    match = CHECKPOINT_NAME.match(os.path.basename(job.initial_weights))
    same_folder = os.path.realpath(os.path.dirname(os.path.abspath(job.initial_weights))) \
        == os.path.realpath(job.logs)
    if not (match and same_folder and match.group("name") == job.name
            and match.group("epoch") != "best"):
        return None
    return int(match.group("epoch"))


def earlier_run(job):
    """What of an earlier run of the same name in logs this run replaces: [paths] to
    remove (empty when there is none, or when this run goes on from its last checkpoint).

    A run never replaces another unasked: without --overwrite, TrainingError. With it,
    the earlier run's checkpoints, cards and CSV log go (going on from an earlier epoch
    of it: the later epochs and the best checkpoint go, the CSV keeps the epochs before).
    """
    files = run_files(job.logs, job.name)
    resumed = resumed_epoch(job)
    later = [path for epoch, path in files if epoch is not None and
             (resumed is None or epoch > resumed)]
    if not files or (resumed is not None and not later):
        return []
    if not job.overwrite:
        checkpoints = [path for epoch, path in files if epoch is not None
                       and path.endswith(".h5")]
        if not checkpoints:
            raise TrainingError("{} already holds files of a run named <{}> ({}): give "
                                "--overwrite to replace them, or another name".format(
                                    job.logs, job.name, os.path.basename(files[0][1])))
        raise TrainingError(
            "{} already holds a run named <{}> ({}): give --overwrite to replace it, another "
            "name, or model={} to go on with it".format(
                job.logs, job.name, os.path.basename(max(checkpoints)), max(checkpoints)))
    if resumed is None:
        return [path for _, path in files]
    return later + [path for epoch, path in files if epoch is None
                    and not path.endswith(".csv")]


def remove_earlier_run(job, doomed, message):
    """Remove what earlier_run() found, once this run is ready to start."""
    if not doomed:
        return
    resumed = resumed_epoch(job)
    if resumed is not None:
        truncate_csv(os.path.join(job.logs, "mask_rcnn_{}.csv".format(job.name)), resumed)
    for path in doomed:
        os.remove(path)
    message("--overwrite: removed {} files of the earlier run <{}> from {}".format(
        len(doomed), job.name, job.logs))


def truncate_csv(path, epochs):
    """Keep the header and the rows of the first `epochs` epochs of a CSV log."""
    if not os.path.isfile(path):
        return
    with open(path) as stream:
        rows = list(csv.reader(stream))
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]] + [row for row in rows[1:] if row and int(float(row[column])) < epochs]
    with open(path, "w", newline="") as stream:
        csv.writer(stream).writerows(kept)


class Subset:
    """Some images of a dataset, same interface (len, load, image_ids)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)
        self.image_ids = [dataset.image_ids[i] for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def load(self, index):
        return self.dataset.load(self.indices[index])


def load_data(job, message):
    """(dataset, band_names, summary) from the directory or from GRASS maps.

    From GRASS maps the dataset is a windows.GridChips over the training area
    (job.area keeps the area for split)."""
    from maskrcnnlib.dataset.directory import (DirectoryDataset, default_ids,
                                               write_directory_dataset)

    card = read_card(job.initial_weights) if job.classes is None and job.initial_weights \
        and not job.exclude_heads else None
    if card:  # going on from one of our checkpoints: its classes, in its order
        job.classes = list(card["classes"])
        message("Classes from the model card of {} (ids 1..{} in this order): {}".format(
            job.initial_weights, len(job.classes), ",".join(job.classes)))
    if job.dataset_dir:
        if job.validation_map:
            raise DatasetError("validation_map needs training from GRASS maps (input=); "
                               "a directory dataset holds out whole images with -s")
        if job.classes is None:
            from maskrcnnlib.dataset.directory import classes_in_directory

            job.classes = classes_in_directory(job.dataset_dir)
            message("Classes from the mask file names of {} (ids 1..{} in this order): {}"
                    .format(job.dataset_dir, len(job.classes), ",".join(job.classes)))
        dataset = DirectoryDataset(job.dataset_dir, job.classes)
        return dataset, [], {"source": "directory", "path": os.path.abspath(job.dataset_dir),
                             "images": len(dataset)}
    from maskrcnnlib.dataset.windows import GridChips
    from maskrcnnlib.grassio.chips import AREA_MEMORY_MB, read_training_area

    job.area, summary = read_training_area(
        job.bands, job.training_map, job.class_column, job.classes, job.tile_size,
        job.overlap, seed=job.seed, layer=job.layer, where=job.where, memory=job.memory)
    if not summary["area_in_memory"]:
        message("The training area ({} x {} cells) is read from disk a window at a time "
                "(it takes more than memory={} MB)".format(
                    summary["region_rows"], summary["region_cols"], job.memory or
                    AREA_MEMORY_MB))
    if job.classes is None:
        job.classes = list(summary["classes"])
        message("Classes from column <{}> of <{}> (ids 1..{} in this order): {}".format(
            job.class_column, job.training_map, len(job.classes), ",".join(job.classes)))
    if not job.area.chosen:
        raise DatasetError("No training chips with objects in the current region")
    dataset = GridChips(job.area, job.area.chosen)
    if job.chips_directory and job.writes:
        write_directory_dataset(job.chips_directory, (dataset.load(i) for i in
                                                      range(len(dataset))),
                                job.classes, ids=default_ids(len(dataset)),
                                overwrite=job.overwrite)
        message("Training chips written to {}".format(job.chips_directory))
    return dataset, list(job.bands), dict(summary, source="grass")


def split(job, dataset):
    """(training, validation or None).

    Directory dataset: -s holds out 10 % of the images. GRASS maps: -s holds out blocks
    of the chip grid (windows.held_out_blocks), validation_map the cells in its areas;
    validation takes the grid chips wholly inside held cells, training what touches
    none (job.sampling: grid chips or random windows). With sampling=random and nothing
    held out, random windows over the whole area. The held-out ids (and blocks) go to
    logs/held_out.txt.
    """
    area = job.area
    if area is None:
        return split_images(job, dataset)
    from maskrcnnlib.dataset import windows

    if not (job.hold_out or job.validation_map):
        if job.sampling != "random":
            return dataset, None
        everywhere = windows.allowed_origins(None, area.rows, area.cols, job.tile_size)
        return windows.RandomWindows(area, everywhere, len(dataset)), None
    blocks = []
    if job.validation_map:
        from maskrcnnlib.grassio.chips import read_validation_areas

        held = job.held = read_validation_areas(job.validation_map, streamed=area.streamed)
    else:
        has_objects = windows.grid_has_objects(area)
        chosen_blocks = windows.held_out_blocks(has_objects.shape, has_objects, seed=job.seed)
        held, blocks = windows.block_cells(area, chosen_blocks)
    try:
        training, validation = windows.split_area(area, held, job.sampling)
    except DatasetError as error:
        source = "validation_map <{}>".format(job.validation_map) if job.validation_map \
            else "-s (held-out blocks)"
        raise DatasetError("{}: {}".format(source, error)) from error
    if job.writes:
        write_held_out(job, validation, [area.extent(*block) for block in blocks])
    return training, validation


def write_held_out(job, validation, extents):
    """logs/held_out.txt: one validation image id a line; held-out blocks (or the
    validation map) as comment lines first."""
    with open(os.path.join(job.logs, "held_out.txt"), "w") as stream:
        if job.validation_map:
            stream.write("# validation areas: {}\n".format(job.validation_map))
        for number, extent in enumerate(extents, 1):
            stream.write("# block {}: north={!r} south={!r} east={!r} west={!r}\n".format(
                number, *extent))
        stream.writelines("{}\n".format(image_id) for image_id in validation.image_ids)


def split_images(job, dataset):
    """-s on a directory dataset: 10 % of the images held out, whole."""
    if not job.hold_out:
        return dataset, None
    from maskrcnnlib.dataset.directory import split_holdout

    kept, held = split_holdout(list(range(len(dataset))), share=0.1, seed=job.seed)
    if not held or not kept:
        raise DatasetError("-s needs at least 2 images to hold one out, got {}".format(
            len(dataset)))
    validation = Subset(dataset, held)
    if job.writes:
        write_held_out(job, validation, [])
    return Subset(dataset, kept), validation


def write_windows(job, training):
    """logs/training_windows.txt: the first windows drawn at random (region row and col
    of their north-west cell, and their extent in map coordinates)."""
    drawn = getattr(training, "drawn", None)
    if not drawn or not job.writes:
        return
    with open(os.path.join(job.logs, "training_windows.txt"), "w") as stream:
        stream.write("row\tcol\tnorth\tsouth\teast\twest\n")
        for row, col in drawn:
            extent = training.area.extent(row, col, *training.area.window_size(row, col))
            stream.write("{}\t{}\t{!r}\t{!r}\t{!r}\t{!r}\n".format(row, col, *extent))


def base_config(job, bands):
    """Config from the job, or from the checkpoint being resumed.

    One of our checkpoints (it has a card) resumes, unless -e asks for new heads: then,
    as from any other weights file, a new run starts from its weights (epoch 1).
    """
    card = read_card(job.initial_weights) if job.initial_weights else None
    if card and not job.exclude_heads:
        config = config_for_weights(job.initial_weights)
        if config.class_names and list(config.class_names) != list(job.classes):
            raise TrainingError("{} was trained on classes {}, classes= gives {}: use -e to "
                                "start a new run from its weights with new heads".format(
                                    job.initial_weights, ",".join(config.class_names),
                                    ",".join(job.classes)))
        if config.bands != bands:
            raise TrainingError("{} takes {} bands, the training data has {}".format(
                job.initial_weights, config.bands, bands))
        return config, True
    config = Config(num_classes=len(job.classes) + 1, class_names=list(job.classes),
                    backbone=job.backbone, bands=bands)
    if job.initial_weights:
        from maskrcnnlib.model.weights import inspect_h5

        facts = inspect_h5(job.initial_weights)
        if facts.get("bands") and facts["bands"] > bands:
            raise TrainingError("{} takes {} bands, the training data has {}".format(
                job.initial_weights, facts["bands"], bands))
        if not job.exclude_heads and facts.get("num_classes") not in (None,
                                                                      len(job.classes) + 1):
            raise TrainingError(
                "{} holds {} classes (plus background), classes= names {}: use -e to "
                "train its heads anew".format(job.initial_weights, facts["num_classes"] - 1,
                                              len(job.classes)))
        config.backbone = facts.get("backbone") or config.backbone
    return config, False


def expects_8_bit(card):
    """Whether weights expect 8-bit values minus the mean pixel: files without a card
    (matterport's, COCO, ImageNet) do, and so do our models trained that way (or with
    the percentile stretch); our models trained on standardized bands do not."""
    if not card:
        return True
    method = (card.get("normalization") or {}).get("method")
    if method:
        return method != "mean and standard deviation"
    return all(value == 1.0 for value in card["config"]["pixel_std"])  # older cards


# sides of the mask head's output: 28 is matterport's (its files and mask_rcnn_coco.h5 were
# trained with it), 56 pools 28 x 28 features per box for finer outlines of large objects
MASK_SIZES = (28, 56)


def mask_head_size(mask_size):
    """(mask_pool_size, mask_shape) of a mask head whose masks are mask_size cells a side
    (the head upsamples its pooled features once by 2); TrainingError for other sizes."""
    if mask_size not in MASK_SIZES:
        raise TrainingError("mask_size must be one of {}, got {!r}".format(
            " or ".join(str(size) for size in MASK_SIZES), mask_size))
    return mask_size // 2, [mask_size, mask_size]


def make_config(job, dataset, band_names):
    """The validated Config of this run."""
    image = np.asarray(dataset.load(0)[0])
    bands = image.shape[2] if image.ndim == 3 else 1
    config, resumed = base_config(job, bands)
    config.name = job.name
    config.band_names = band_names or config.band_names
    config.epochs, config.steps_per_epoch = job.epochs, job.steps_per_epoch
    config.validation_steps, config.learning_rate = job.validation_steps, job.learning_rate
    config.images_per_gpu, config.gpu_count = job.images_per_gpu, job.gpu_count
    config.accumulation_steps, config.precision = job.accumulation_steps, job.precision
    if resumed:
        return config.validate()
    config.train_rois_per_image = job.rois_per_image
    config.mask_pool_size, config.mask_shape = mask_head_size(job.mask_size)
    config.use_mini_mask = bool(job.mini_mask_size)
    if job.mini_mask_size:
        size = list(job.mini_mask_size)
        config.mini_mask_shape = size * 2 if len(size) == 1 else size
    config.image_min_dim, config.image_max_dim = job.images_min_dim, job.images_max_dim
    if job.bands and not job.no_resize:
        # Chips from GRASS maps are used at their size (cells keep their resolution),
        # padded to a multiple of 64, not scaled into images_max_dim squares.
        side = -(-job.tile_size // 64) * 64
        config.image_min_dim, config.image_max_dim = job.tile_size, side
    if job.no_resize:
        side = image.shape[0]
        if image.shape[0] != image.shape[1] or side % 64:
            raise DatasetError("-n needs square images with sides divisible by 64, the "
                               "first image is {}x{}".format(*image.shape[:2]))
        config.resize_mode, config.image_min_dim, config.image_max_dim = "none", side, side
    config.train_bn = None if job.train_bn else False
    from maskrcnnlib.dataset.radiometry import normalization

    config.pixel_mean, config.pixel_std, job.normalization = normalization(
        dataset, bands, pretrained_rgb=bool(job.initial_weights) and bands <= 3
        and expects_8_bit(read_card(job.initial_weights)), rgb_mean=default_pixel_mean(3))
    config.validate()
    if job.anchor_scales:
        config.rpn_anchor_scales = list(job.anchor_scales)
    else:
        from maskrcnnlib.dataset.anchors_fit import fit_anchor_scales

        config.rpn_anchor_scales = list(fit_anchor_scales(dataset, config))
    return config.validate()


PRETRAINED_BACKBONES = {"coco": "resnet101", "imagenet": "resnet50"}


def use_pretrained(job, message, percent):
    """model=coco or model=imagenet (and no file of that name): the published file,
    from the cache or downloaded, in job.initial_weights. COCO's class heads are
    always trained anew (-e)."""
    from maskrcnnlib import pretrained

    name = job.initial_weights
    if name not in PRETRAINED_BACKBONES or os.path.exists(name):
        return
    if job.backbone != PRETRAINED_BACKBONES[name]:
        raise TrainingError("model={} holds {} weights: add backbone={}".format(
            name, PRETRAINED_BACKBONES[name], PRETRAINED_BACKBONES[name]))
    if not os.path.exists(pretrained.cached_path(name)):
        message("Downloading {} into {} (once; later runs use it from there)".format(
            pretrained.download_url(pretrained.PRETRAINED[name]), pretrained.cache_dir()))

    def progress(done, total):
        if total:
            percent(done, total, 5)

    if name == "coco":
        job.initial_weights = pretrained.pretrained_file("coco", progress)
        job.exclude_heads = True
        message("Starting from matterport's COCO weights ({}); the class heads are trained "
                "anew for {}".format(job.initial_weights, ",".join(job.classes)))
    else:
        job.initial_weights = pretrained.imagenet_backbone_file(progress)
        message("Starting from ImageNet weights for the ResNet-50 backbone ({})".format(
            job.initial_weights))


def run_train_job(job, message=print, percent=lambda *a: None):
    """Train as the job says; returns maskrcnnlib.train.TrainingResult.

    With TF_CONFIG (several machines), only the chief writes into logs (and
    chips_directory); the other workers write nothing.
    """
    from maskrcnnlib.distribute import is_chief

    from maskrcnnlib.threads import limit_threads

    threads = limit_threads(job.nprocs)  # before TensorFlow runs anything
    if threads:
        message("nprocs={}: TensorFlow computes on {} threads, {} steps at once".format(
            job.nprocs, *threads))
    job.writes = is_chief()
    doomed = []
    if job.writes:
        prepare_logs(job.logs)
        doomed = earlier_run(job)
    try:
        return prepared_run(job, doomed, message, percent)
    finally:
        close_area(job)


def prepared_run(job, doomed, message, percent):
    """run_train_job once the logs are checked: data, settings, training."""
    dataset, band_names, summary = load_data(job, message)
    use_pretrained(job, message, percent)
    config = make_config(job, dataset, band_names)
    training, validation = split(job, dataset)
    # TensorFlow's devices only once the data is known good
    from maskrcnnlib.distribute import training_placement
    from maskrcnnlib.train import train

    placement = training_placement(config.gpu_count)
    message(placement.description)

    message("Training on {} images ({} held out), {} bands, classes {}, anchor scales {}"
            .format(len(training), len(validation) if validation else 0, config.bands,
                    ",".join(config.class_names),
                    ",".join(str(s) for s in config.rpn_anchor_scales)))
    extra = {"training_data": summary, "seed": job.seed, "augment": job.augment}
    if job.area is not None:
        extra["sampling"] = job.sampling
    if job.normalization:
        extra["normalization"] = job.normalization
    remove_earlier_run(job, doomed, message)
    try:
        return train(config, training, job.logs, job.name, placement,
                     validation_data=validation, initial_weights=job.initial_weights,
                     exclude_heads=job.exclude_heads, seed=job.seed, augment=job.augment,
                     card_extra=extra, message=message, keep=job.keep,
                     patience=job.patience, percent=percent)
    finally:
        write_windows(job, training)


def close_area(job):
    """Let go of the training area (and the held-out cells): their files on disk go."""
    for cells in (job.held, job.area):
        if cells is not None:
            cells.close()
    job.held = job.area = None
