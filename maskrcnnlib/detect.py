"""The detection pipeline i.ann.maskrcnn.detect calls: rasters in, vector map out.

The current region is cut into tiles (maskrcnnlib.tiling); tiles stream by rows
from GRASS (only one strip of rows is in memory), run through the network in
batches, objects cut by tile seams are merged (SeamMerger) and finished objects
are written as they come (grassio.writer.InstanceWriter), so memory does not grow with
the raster. Null cells never become objects; wholly null tiles are skipped.
"""
import contextlib
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from maskrcnnlib.errors import DetectionError
from maskrcnnlib.modelcard import config_for_weights, read_card

# default min_area, in cells of the region: an object of fewer is speckle of the mask
MIN_AREA_CELLS = 4

# On a CPU the Detector can compile its dense part with XLA and Winograd convolutions
# (maskrcnnlib.model.inference): each 512 x 512 tile then takes 0.12 to 0.2 s less
# (ResNet-18 to ResNet-101 with the default 256-channel pyramid, 2 cores), but the
# first tile waits 3 to 7 s longer with compilecache's cache of an earlier run and 7
# to 11 s without. Compiling pays from 25 to 60 such tiles (docs/benchmarks.md; a
# smaller pyramid gains less per tile, in proportion to its channels: tile_work);
# below COMPILE_FROM_TILES the network runs as a plain graph. The environment
# variable overrides it (0: always).
COMPILE_FROM_TILES = 40
# precision=int8: tiles of the region its activations' ranges are calibrated on
CALIBRATION_TILES = 8
INT8_ORIGINS = {"made": "exported, calibrated and quantized the model",
                "export cached": "calibrated and quantized the model (export cached)",
                "cached": "the int8 model of an earlier run with these tiles"}
COMPILE_VARIABLE = "MASKRCNN_COMPILE_FROM_TILES"


@dataclass
class DetectJob:
    model: str
    images: list  # one list of raster names (one per band) per image
    group: str = None  # or an imagery group: its rasters (group order) are the bands
    subgroup: str = None  # of one of its subgroups
    output: str = None  # None: one map per class, named after it (2018 behaviour)
    classes: list = None  # rename the model's classes by order; needed without a card
    output_type: list = field(default_factory=lambda: ["area"])
    tile_size: int = 512
    overlap: int = 64
    batch_size: int = 1
    score_threshold: float = None  # None: the model's
    nms_threshold: float = None
    overwrite: bool = False
    history: str = None
    images_directory: str = None  # image files to detect in, instead of images
    images_format: str = None  # their file name suffix (jpg, png, tif...)
    external: bool = False  # their georeferencing: world file or .aux.xml (flag -e)
    reference: str = None  # vector areas to assess the detections against
    reference_column: str = "class"  # its column of class names
    reference_layer: str = "1"  # its layer
    reference_where: str = None  # SQL condition selecting its reference areas
    report: str = None  # JSON file for the accuracy figures
    min_area: float = None  # map units squared; None: MIN_AREA_CELLS cells of the region
    smoothing: str = "none"  # or a v.generalize method (grassio.writer.SMOOTHING_METHODS)
    smoothing_threshold: float = None  # its threshold, map units
    orthogonal: bool = False  # -o: square the outlines (buildings)
    instances: str = None  # raster of object ids (the vector's categories)
    scores: str = None  # raster of the score of the object covering each cell
    resample: bool = False  # -r: detect on a copy of the region at the model's resolution
    nprocs: int = 0  # TensorFlow's CPU threads (maskrcnnlib.threads); 0: all cores
    memory: int = 300  # MB for the pixel buffers: strips, tiles, batches, raster strips
    flips: bool = False  # -t: masks averaged over each tile and its two flips (maskrcnnlib.flips)
    precision: str = "float32"  # or "bfloat16", "auto" (detection_precision), "int8"


def detection_config(job):
    """The Config to detect with: the model's, molding tiles at their own resolution.

    A model with a card detects at the resolution of the region (tiles padded to a
    multiple of 64). A card-less matterport file keeps the 2018 tool's molding
    (768 px squares), so that it finds what the 2018 tool found.
    """
    config = config_for_weights(job.model, job.classes)
    if read_card(job.model) is not None:
        config.resize_mode = "square"
        config.image_min_dim = job.tile_size
        config.image_max_dim = -(-job.tile_size // 64) * 64
        config.image_min_scale = 0.0
    if job.score_threshold is not None:
        config.detection_min_confidence = job.score_threshold
    if job.nms_threshold is not None:
        config.detection_nms_threshold = job.nms_threshold
    config.images_per_gpu, config.gpu_count = job.batch_size, 1
    return config.validate()


def _batches(items, size):
    """Consecutive groups of at most `size` items sharing one image shape."""
    group = []
    for item in items:
        if group and (len(group) == size or group[0][1].shape != item[1].shape):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _padded(image, size):
    """image [h, w, bands] zero-padded south and east to [size, size, bands]."""
    if size is None or image.shape[:2] == (size, size):
        return image
    out = np.zeros((size, size, image.shape[2]), image.dtype)
    out[:image.shape[0], :image.shape[1]] = image
    return out


def _as_8bit(image):
    """image as uint8 when all its values are integers in 0..255, else unchanged.

    The 2018 tool fed 8-bit images, and matterport's resizing truncates the
    resized pixels back to the input's dtype: the same tile as float32 keeps the
    fractions and gives (slightly) different detections.
    """
    if image.size and image.min() >= 0 and image.max() <= 255 \
            and np.array_equal(image, np.round(image)):
        return image.astype(np.uint8)
    return image


def detect_tile_row(detector, tiles, batch_size, region_shape, core_margin=0, pad_to=None,
                    eight_bit=False, flips=False):
    """Instances (region coordinates) of one row of tiles.

    tiles: [(tile, image [h, w, bands], valid bool [h, w])]; wholly invalid tiles
    are skipped. pad_to: tiles smaller than this (at a region edge) are zero-padded
    to it, as training chips were, so every tile runs at the region's resolution.
    eight_bit: tiles of 8-bit values go to the network as uint8 (see _as_8bit; for
    2018 models, which resize each tile). flips: each mask averaged over the tile and
    its two flips (maskrcnnlib.flips; three times the network's work).
    Returns (instances, tiles run).
    """
    from maskrcnnlib.flips import detect_with_flips
    from maskrcnnlib.tiling import instances_from_tile

    instances, run = [], 0
    todo = [(tile, _padded(_as_8bit(image) if eight_bit else image, pad_to), valid)
            for tile, image, valid in tiles if valid.any()]
    for group in _batches(todo, batch_size):
        images = [image for _, image, _ in group]
        results = detect_with_flips(detector, images) if flips else detector.detect(images)
        for (tile, _, valid), result in zip(group, results):
            height, width = valid.shape
            masks = result["masks"][:height, :width] & valid[:, :, None]
            instances += instances_from_tile(tile, masks, result["class_ids"],
                                             result["scores"], core_margin=core_margin,
                                             region_shape=region_shape)
        run += len(group)
    return instances, run


def _best_first(instances):
    """Instances by score, best first: where two overlap, the writer keeps the better."""
    return sorted(instances, key=lambda instance: -instance.score)


def detect_image(detector, bands, writer, job, message, percent, pad_to=None, source=None):
    """Run one image (its band rasters) over the region into writer.

    Several images share one writer: where they overlap, the objects of the first
    keep their cells. pad_to: see detect_tile_row. source: the objects' ``source``.
    Each row of tiles is read and run in pieces whose pixel buffers fit in
    job.memory MB (grassio.rasters.tile_pieces); a batch never spans two pieces.
    The pieces change what is held at once, not what is found.
    """
    from maskrcnnlib.grassio.rasters import read_tile_rows, tile_pieces
    from maskrcnnlib.grassio.region import region_info
    from maskrcnnlib.tiling import SeamMerger, tile_grid

    region = region_info()
    shape = (region["rows"], region["cols"])
    grid = tile_grid(region["rows"], region["cols"], job.tile_size, job.overlap)
    # a view cut by a tile edge may get another class than the whole view next door;
    # each cell of an object from the tile that sees it farthest from its edges
    # (docs/benchmarks.md, bench_masks.py: mask mAP 0.640 -> 0.667 against the union)
    merger = SeamMerger(grid, cross_class=True, masks="central")
    done, total = 0, sum(len(row) for row in grid)
    pieces = [(index, piece) for index, row in enumerate(grid)
              for piece in tile_pieces(row, len(bands), memory_bytes(job), pad_to)]
    if len(pieces) > len(grid):
        message("memory={} MB: rows of tiles are read in pieces of at most {} tiles".format(
            job.memory, max(len(piece) for _, piece in pieces)))
    instances = []
    read = read_tile_rows(bands, (piece for _, piece in pieces))
    for position, ((index, _), tiles) in enumerate(zip(pieces, read)):
        # views wholly within half the overlap of a shared edge: the neighbour sees them whole
        found, _ = detect_tile_row(detector, tiles, job.batch_size * detector.replicas,
                                   shape, core_margin=job.overlap // 2, pad_to=pad_to,
                                   eight_bit=pad_to is None, flips=job.flips)
        instances += found
        done += len(tiles)
        percent(done, total, 2)
        if position + 1 < len(pieces) and pieces[position + 1][0] == index:
            continue  # more of this row to come
        merger.add_row(instances)
        instances = []
        writer.add(_best_first(merger.pop_finished()), source=source)
        # rows above every object still open (and above the next tile row) are final
        if merger.first_open_row is not None:
            writer.flush_until(merger.first_open_row)
    writer.add(_best_first(merger.finish()), source=source)
    message("{} tiles done".format(total))


def memory_bytes(job):
    """job.memory (MB) in bytes; None when no cap is set (memory None or 0)."""
    return int(job.memory) * 2 ** 20 if job.memory else None


def run_detect_job(job, message=print, percent=lambda *a: None, warning=print,
                   output=print):
    """Detect as the job says; returns a Counter of objects per class name.

    output: takes the lines of the accuracy table (reference=); standard output by
    default, where GRASS modules print tables (messages would reflow the columns).

    Everything that can be checked is checked before the slow parts (model
    loading, importing image files): inputs, model, band counts, output names.
    Image files (job.images_directory) are imported for the run into temporary
    rasters limited to the region, and removed afterwards.
    """
    from maskrcnnlib.grassio.rasters import check_rasters, images_in_region
    from maskrcnnlib.grassio.writer import InstanceWriter
    from maskrcnnlib.threads import limit_threads

    if job.memory is not None and job.memory < 0:
        raise DetectionError("memory must be 0 (no cap) or more MB, got {}".format(job.memory))
    compile_threshold()  # a bad MASKRCNN_COMPILE_FROM_TILES fails before the slow parts
    threads = limit_threads(job.nprocs)  # before TensorFlow runs anything
    if threads:
        message("nprocs={}: TensorFlow computes on {} threads, {} steps at once".format(
            job.nprocs, *threads))
    if job.images_directory:
        from maskrcnnlib.imagefiles import ImportedImages, list_images

        paths = list_images(job.images_directory, job.images_format)
        config = detection_config(job)
    else:
        if job.group:
            from maskrcnnlib.grassio.rasters import group_rasters

            job.images = [group_rasters(job.group, job.subgroup, error=DetectionError)]
            message("Bands of {} <{}>: {}".format(
                "subgroup <{}> of group".format(job.subgroup) if job.subgroup else "group",
                job.group, ",".join(job.images[0])))
        for bands in job.images:
            check_rasters(bands, error=DetectionError)
        config = detection_config(job)
        for bands in job.images:
            if len(bands) != config.bands:
                raise DetectionError("{} takes {} bands, {} given ({})".format(
                    job.model, config.bands, len(bands), ",".join(bands)))
        images = images_in_region(job.images, warning)
        # the user's names, before any copy
        sources = [bands[0] for bands in images] if not job.group else [
            job.group + ("/" + job.subgroup if job.subgroup else "")]
    classes = list(config.class_names)
    message("Classes ({}; ids 1..{} in this order): {}".format(
        "classes=" if job.classes else "the model card of {}".format(job.model),
        len(classes), ",".join(classes)))
    min_area = _min_area(job)
    with contextlib.ExitStack() as stack:
        images = _fit_to_model(job, config, None if job.images_directory else images,
                               stack, message)
        reference = None
        if job.reference:
            from maskrcnnlib import accuracy

            if job.report:
                accuracy.check_report_path(job.report, job.overwrite)
            reference = stack.enter_context(
                accuracy.ReferenceAreas(job.reference, job.reference_column, classes,
                                        layer=job.reference_layer,
                                        where=job.reference_where))
        writer = InstanceWriter(job.output, classes, output_type=tuple(job.output_type),
                                overwrite=job.overwrite, per_class=job.output is None,
                                history=job.history, min_area=min_area,
                                smoothing=None if job.smoothing == "none" else job.smoothing,
                                smoothing_threshold=job.smoothing_threshold,
                                orthogonal=job.orthogonal, instances=job.instances,
                                scores=job.scores, memory_bytes=memory_bytes(job))
        try:
            if job.images_directory:
                with ImportedImages(paths, external=job.external, band_count=config.bands,
                                    warning=warning) as imported:
                    message("{} of {} images overlap the region".format(
                        len(imported.images), len(paths)))
                    _detect(job, config, imported.images, writer, message, percent,
                            imported.sources)
            else:
                _detect(job, config, images, writer, message, percent, sources)
            figures = accuracy.assess(writer, reference) if reference else None
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
    # what was written: where detections overlap, the better-scoring one keeps the
    # cells (see grassio.writer.InstanceWriter)
    counts = Counter(writer.counts())
    if writer.duplicates:
        message("{} detections dropped: most of their cells belong to a better-scoring "
                "object".format(writer.duplicates))
    if writer.small:
        message("{} detections dropped: smaller than min_area={:g}".format(
            writer.small, min_area))
    for name in classes:
        message("{}: {} objects".format(name, counts.get(name, 0)))
    if not written:
        warning("No objects detected")
    if figures is not None:
        if not any(values["references"] for values in figures["classes"].values()):
            warning("No reference area of <{}> lies in the region".format(job.reference))
        for line in accuracy.table(figures, job.reference):
            output(line)
        if job.report:
            accuracy.write_report(job.report, figures, {
                "reference": job.reference, "reference_column": job.reference_column,
                "reference_layer": job.reference_layer, "reference_where": job.reference_where,
                "model": os.path.abspath(job.model), "output": job.output,
                "iou_threshold_for_precision": 0.5, "max_detections": None})
    return counts


def _fit_to_model(job, config, images, stack, message):
    """Check the region and the bands against the model card (resolution, values);
    with job.resample, enter (on stack) a temporary region at the model's resolution
    holding resampled copies of the bands. Returns the images to detect in
    (None for images_directory runs, whose files are read through the region)."""
    from maskrcnnlib import inputcheck
    from maskrcnnlib.grassio.region import region_info

    card = read_card(job.model)
    training_res = inputcheck.training_resolution(card)
    if job.resample and training_res is None:
        raise DetectionError("-r needs the resolution {} was trained at, which its model "
                             "card does not record".format(job.model))
    region = region_info()
    region_res = (region["nsres"], region["ewres"])
    if not job.resample:
        inputcheck.check_resolution(region_res, training_res, job.model)
    training = inputcheck.training_statistics(card, config)
    if images and training:
        from maskrcnnlib.grassio.resample import band_samples

        for bands in images:
            inputcheck.check_statistics(band_samples(bands), training, bands, job.model)
    if not job.resample or inputcheck.resolution_ratio(region_res, training_res) < 1.000001:
        return images
    from maskrcnnlib.grassio.resample import model_resolution, rasters_to_region

    # raster outputs come out at the model's resolution; after a good run (and once the
    # user's region is back: the stack unwinds last in, first out) they go to the region's
    def rasters_back(kind, value, traceback):
        if kind is None:
            rasters_to_region([job.instances, job.scores], message)

    stack.push(rasters_back)
    resampled = stack.enter_context(model_resolution(images or [], training_res, message))
    return resampled if images else None


def _min_area(job):
    """min_area in map units squared: the job's, or MIN_AREA_CELLS cells of the region."""
    if job.min_area is not None:
        if job.min_area < 0:
            raise DetectionError("min_area must be 0 or more, got {}".format(job.min_area))
        return float(job.min_area)
    from maskrcnnlib.grassio.region import region_info

    region = region_info()
    return MIN_AREA_CELLS * region["nsres"] * region["ewres"]


def _on_gpu(devices):
    """True where the device names detection runs on include a GPU."""
    return any("GPU" in name.upper() for name in devices or ())


def detection_precision(precision, devices=None, flags=None):
    """(Detector precision, reason) for the job's precision= on this machine: "auto"
    is bfloat16 on a CPU with native bfloat16 (as training's precision=auto) and
    float32 on GPUs and other CPUs; "int8" (the dense part by ONNX Runtime, on the
    CPU) is refused where detection runs on GPUs. devices: the device names
    detection runs on."""
    from maskrcnnlib.model.training import compute_precision

    if precision not in ("float32", "bfloat16", "auto", "int8"):
        raise DetectionError("precision must be float32, bfloat16, auto or int8, "
                             "got {!r}".format(precision))
    if precision == "int8" and _on_gpu(devices):
        raise DetectionError("precision=int8 runs on the CPU; detection would run on {} "
                             "(hide the GPUs with CUDA_VISIBLE_DEVICES= to detect on the "
                             "CPU, or choose float32)".format(", ".join(devices)))
    if precision != "auto":
        return precision, "precision=" + precision
    policy, reason = compute_precision("auto", _on_gpu(devices), flags)
    return ("bfloat16" if policy == "mixed_bfloat16" else "float32"), reason


def compile_threshold(environ=None):
    """Tiles of 512 x 512 from which detection compiles on a CPU (COMPILE_VARIABLE or
    COMPILE_FROM_TILES)."""
    environ = os.environ if environ is None else environ
    text = environ.get(COMPILE_VARIABLE, "").strip()
    if not text:
        return COMPILE_FROM_TILES
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value >= 0:
        raise DetectionError("{} must be a number of tiles, 0 or more, got {!r}".format(
            COMPILE_VARIABLE, text))
    return value


def tile_work(config, tiles, flips):
    """What compiling gains over a run of tiles, in tiles of 512 x 512 of a model with
    the default 256-channel pyramid: each tile molds to a square of
    config.image_max_dim (square mode), runs three times with flips, and gains in
    proportion to its pyramid's channels (measured: a ResNet-18 with 64 channels
    gains 0.03 s per tile where one with 256 gains 0.12 s, docs/benchmarks.md)."""
    side = config.image_max_dim if config.resize_mode == "square" else 512
    return (tiles * (side / 512.0) ** 2 * (3 if flips else 1)
            * config.top_down_pyramid_size / 256.0)


def tiles_per_image(images, tile_size, overlap):
    """For each image in turn (a generator: one r.info per band, only as far as it is
    read), the tiles of the region's grid within the common extent of its bands'
    rasters (wholly null tiles inside it count too; detect_tile_row skips them)."""
    import grass.script as gs

    from maskrcnnlib.grassio.region import cells_within, region_info
    from maskrcnnlib.tiling import tile_grid, tiles_meeting

    region = region_info()
    grid = tile_grid(region["rows"], region["cols"], tile_size, overlap)
    for bands in images:
        infos = [gs.raster_info(name) for name in bands]
        common = (min(info["north"] for info in infos), max(info["south"] for info in infos),
                  min(info["east"] for info in infos), max(info["west"] for info in infos))
        yield tiles_meeting(grid, *cells_within(common, region))


def calibration_tiles(images, job, pad_to, count=CALIBRATION_TILES):
    """Up to `count` tiles with data, prepared as detect_tile_row prepares them: the
    images an int8 detector calibrates its activations' ranges on. The tiles are
    spread evenly over the region's grid (in reading order); each image (band list)
    in turn gives those of them where it has data, until there are `count`."""
    from maskrcnnlib.grassio.rasters import read_tile_rows
    from maskrcnnlib.grassio.region import region_info
    from maskrcnnlib.tiling import tile_grid

    region = region_info()
    tiles = [tile for row in tile_grid(region["rows"], region["cols"], job.tile_size,
                                       job.overlap) for tile in row]
    chosen = sorted(set(np.linspace(0, len(tiles) - 1, min(count, len(tiles)))
                        .round().astype(int)))
    samples = []
    for bands in images:
        for read in read_tile_rows(bands, ([tiles[i]] for i in chosen)):
            for _, image, valid in read:
                if valid.any() and len(samples) < count:
                    samples.append(_padded(_as_8bit(image) if pad_to is None else image,
                                           pad_to))
        if len(samples) == count:
            break
    return samples


def _detect(job, config, images, writer, message, percent, sources):
    """Load the model and detect in each image (band list) into writer; sources: the
    ``source`` text of each image."""
    from maskrcnnlib.distribute import detection_devices  # TensorFlow from here on
    from maskrcnnlib.model.inference import Detector

    devices = detection_devices()
    precision, reason = detection_precision(job.precision, devices)
    if precision == "int8":
        from maskrcnnlib.model.quantized import missing_packages

        if missing_packages():
            raise DetectionError("precision=int8 needs the Python packages {} (in "
                                 "requirements.txt): pip install them into the "
                                 "environment of {}".format(" and ".join(missing_packages()),
                                                            sys.executable))
    if precision == "int8":
        from maskrcnnlib.model.inference import INT8_NEEDS
        from maskrcnnlib.model.quantized import has_vnni
        from maskrcnnlib.model.training import cpu_flags

        if not has_vnni(cpu_flags()):
            raise DetectionError("precision=" + INT8_NEEDS)
    if precision == "int8" and config.resize_mode != "square":
        raise DetectionError("precision=int8 needs a model that molds every tile to one "
                             "shape (resize_mode square); <{}> has resize_mode {}".format(
                                 job.model, config.resize_mode))
    if job.precision != "float32" and precision != "int8":
        message("{}: the network computes in {}".format(reason, precision))
    compiled = None  # the Detector's choice: compiled on a CPU in square mode
    if not _on_gpu(devices) and precision == "float32" and config.resize_mode == "square":
        threshold, tiles = compile_threshold(), 0
        for count in tiles_per_image(images, job.tile_size, job.overlap):
            tiles += count
            if tile_work(config, tiles, job.flips) >= threshold:
                break  # enough to compile: the other images need not be counted
        else:
            compiled = False
            message("{} tiles: the network runs as a plain graph (compiling it pays from "
                    "about {} such tiles with this model; {}={:g}, in tiles of 512 x 512 "
                    "with a 256-channel pyramid)".format(
                        tiles, math.ceil(threshold / tile_work(config, 1, job.flips)),
                        COMPILE_VARIABLE, threshold))
    detector = Detector(config, devices=devices, precision=precision, compiled=compiled)
    if precision == "int8":
        message("precision=int8: backbone, FPN and RPN compute in 8-bit integers (ONNX "
                "Runtime), the heads in {}".format(
                    "bfloat16" if detector.policy == "mixed_bfloat16" else "float32"))
    if detector.replicas > 1:
        message("Detecting on {} GPUs, {} tiles each per step".format(
            detector.replicas, job.batch_size))
    if job.flips:
        message("-t: each tile also runs flipped west-east and north-south, and each "
                "object's mask is the mean of the three")
    detector.load_weights(job.model)
    # card-less (2018) models mold each tile as the 2018 tool molded its images;
    # ours pad edge tiles to tile_size as training chips were
    pad_to = None if read_card(job.model) is None else job.tile_size
    samples = calibration_tiles(images, job, pad_to) if precision == "int8" else []
    if samples:  # int8, and a tile has data (else nothing will run)
        started = time.perf_counter()
        detector.calibrate(samples)
        message("precision=int8: calibrated on {} tiles spread over the region; {} "
                "({:.0f} s)".format(len(samples), INT8_ORIGINS[detector.int8_origin],
                                    time.perf_counter() - started))
    for bands, source in zip(images, sources):
        detect_image(detector, bands, writer, job, message, percent, pad_to, source)
