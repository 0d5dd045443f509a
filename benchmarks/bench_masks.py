#!/usr/bin/env python3
"""Where mask accuracy is lost: per stage of detection, on a seam scene and real imagery.

A model is trained once through i.ann.maskrcnn.train (per --mask-sizes value) on a
synthetic scene of the suite's kind: class-coloured squares (class 1) and disks
(class 2) on noise, 1024 x 1024 cells, a third of the objects placed across the edges
of the detection tiles (tile 256, overlap 48). Then, on another scene of the same kind,
the same tiles and network as i.ann.maskrcnn.detect runs are replayed here, stage by
stage, and compared with the true objects:

  molded    the network's m x m mask (probability >= 0.5) against the true object cut
            to the predicted box and resized to m x m as training targets are made;
  unmolded  that mask resized into the box in the tile, against the true cells in the
            tile (a view of a seam object in a tile that cuts it is compared with the
            cut object);
  merged    the instances of the seam merger (tiling.SeamMerger, as the module merges),
            against the whole objects of the region, with each of its mask rules
            (union: the union of an object's views; central: the view of the tile that
            sees it whole, farthest from that tile's inner edges);
  flips     (--flips, in the replay only) the module's -t: each view's mask averaged
            with those of the same object in the tile flipped west-east and
            north-south (maskrcnnlib.flips), through the stages above;
  vector    i.ann.maskrcnn.detect's own run: the vector map rasterized back (v.to.rast
            use=cat), against the whole objects (writer: the module's reference= figures,
            computed on its cells before vectorization); --module-flags t runs it with -t.

For each view (a detection in one tile) matched to a true object (IoU >= 0.5 in the
tile) it also prints what the box and the mask resolution allow: the true object
squeezed into the predicted box at 28 x 28 and at 56 x 56 and resized back ("ceiling"),
the same in the true box, and the box IoU. Objects are "on a seam" when some tile
holds part but not all of them. AP50, AP75 and mAP@[.5:.95] come from evaluate.py
(views: each tile an image; merged and vector: the region as one image).

--realdata does the same on the bundled SpaceNet Atlanta scene (1 band, 0.5 m):
trained on its northern part, measured on its southern part (as the detect manual's
figure, tools/manual_figure_realdata.py).

    python3 benchmarks/bench_masks.py [--size 1024] [--steps 300] [--backbone resnet18]
        [--mask-sizes 28,56] [--realdata] [--keep DIR]

Run with the project's environment (tools/setup.sh) first on PATH. Small settings for a
quick look: --size 512 --steps 60.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tools")]
from bench_detect import start_grass  # noqa: E402
from bench_train import cpu_description  # noqa: E402

TRAIN = os.path.join(ROOT, "i.ann.maskrcnn.train", "i.ann.maskrcnn.train.py")
DETECT = os.path.join(ROOT, "i.ann.maskrcnn.detect", "i.ann.maskrcnn.detect.py")
REALDATA = os.path.join(ROOT, "tests", "fixtures", "realdata", "spacenet_atlanta")
CLASSES = ("square", "disk")
GROUPS = ("inside", "seam")


# ------------------------------------------------------------------ the synthetic scene
def tile_edges(size, tile_size, overlap):
    """Region rows (or columns) where a tile starts or ends inside the region."""
    from maskrcnnlib.tiling import tile_origins

    starts = tile_origins(size, tile_size, overlap)
    return sorted({s for s in starts if s > 0} | {s + tile_size for s in starts
                                                  if s + tile_size < size})


def seam_scene(rng, size, tile_size, overlap, count, radius, seam_share=1 / 3):
    """Image uint8 [size, size, 3] and instance ids int32 [size, size] (0: background),
    with classes {id: class id}. Squares and disks of radius in `radius`, 3 cells apart;
    about seam_share of them centred near a tile edge (crossing it), the others crossing
    none."""
    from support.shapes import CLASS_COLORS

    edges = np.array(tile_edges(size, tile_size, overlap))
    image = rng.normal(90, 12, (size, size, 3))
    ids = np.zeros((size, size), np.int32)
    taken = np.zeros((size, size), bool)
    classes, seams = {}, 0
    for _ in range(200 * count):
        if len(classes) == count:
            break
        r = int(rng.integers(radius[0], radius[1] + 1))
        centre = rng.integers(r + 1, size - r - 1, size=2)
        on_seam = seams < round(count * seam_share)
        if on_seam:  # one axis centred within r - 2 cells of an edge
            axis = int(rng.integers(0, 2))
            centre[axis] = int(rng.choice(edges)) + int(rng.integers(-r + 2, r - 1))
            if not r + 1 <= centre[axis] < size - r - 1:
                continue
        crosses = [((edges > c - r) & (edges <= c + r)).any() for c in centre]
        if any(crosses) != on_seam:
            continue
        cy, cx = (int(c) for c in centre)
        window = (slice(cy - r - 3, cy + r + 4), slice(cx - r - 3, cx + r + 4))
        if taken[window].any():
            continue
        taken[window] = True
        yy, xx = np.mgrid[cy - r:cy + r + 1, cx - r:cx + r + 1]
        class_id = int(rng.integers(1, 3))
        shape = np.ones_like(yy, bool) if class_id == 1 else \
            (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        box = (slice(cy - r, cy + r + 1), slice(cx - r, cx + r + 1))
        ids[box][shape] = len(classes) + 1
        image[box][shape] = np.array(CLASS_COLORS[class_id]) + rng.uniform(-15, 15, 3)
        classes[len(classes) + 1] = class_id
        seams += on_seam
    return np.clip(image, 0, 255).astype(np.uint8), ids, classes


def write_scene(prefix, image, ids, classes):
    """Bands <prefix>_0.. and areas <prefix>_truth (column kind) in the current region."""
    import grass.script as gs
    from grass.script import array as garray

    bands = []
    for band in range(image.shape[2]):
        raster = garray.array(dtype=np.int32)
        raster[...] = image[:, :, band]
        raster.write("{}_{}".format(prefix, band), overwrite=True, quiet=True)
        bands.append("{}_{}".format(prefix, band))
    raster = garray.array(dtype=np.int32)
    raster[...] = ids
    raster.write(prefix + "_ids", null=0, overwrite=True, quiet=True)
    truth = prefix + "_truth"
    gs.run_command("r.to.vect", flags="v", input=prefix + "_ids", output=truth, type="area",
                   quiet=True, overwrite=True)
    gs.run_command("v.db.addcolumn", map=truth, columns="kind text", quiet=True)
    for class_id, name in enumerate(CLASSES, start=1):
        cats = [str(i) for i, c in classes.items() if c == class_id]
        for start in range(0, len(cats), 200):
            gs.run_command("v.db.update", map=truth, column="kind", value=name, quiet=True,
                           where="cat in ({})".format(",".join(cats[start:start + 200])))
    return bands, truth


# ------------------------------------------------------------------ the module runs
def run(module, *flags, **options):
    """A module script of this tree; (seconds, stdout). Exits on failure."""
    command = [sys.executable, module, *flags] + ["{}={}".format(k, v)
                                                  for k, v in options.items()]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit("{} failed:\n{}".format(" ".join(command), result.stderr[-3000:]))
    return time.monotonic() - started, result.stdout


def train(args, logs, name, bands, truth, classes, mask_size):
    """Train through the module; (seconds, weights). With --reuse, a model of this name
    already in logs (--keep) is taken as it is (0 seconds)."""
    weights = os.path.join(logs, "mask_rcnn_{}_{:04d}.h5".format(name, args.epochs))
    if args.reuse and os.path.isfile(weights):
        return 0.0, weights
    steps = max(1, args.steps // args.epochs)
    seconds, _ = run(TRAIN, input=",".join(bands), training_map=truth, class_column="kind",
                     classes=",".join(classes), logs=logs, name=name, backbone=args.backbone,
                     tile_size=args.train_tile, overlap=args.train_tile // 4,
                     sampling="random", augment="flip_rotate", epochs=args.epochs,
                     steps_per_epoch=steps, images_per_gpu=args.images_per_gpu,
                     rois_per_image=32, seed=args.seed, keep=1,
                     learning_rate=args.learning_rate, mask_size=mask_size,
                     nprocs=args.nprocs)
    return seconds, weights


def detect_with_module(args, weights, bands, truth, output, report):
    """i.ann.maskrcnn.detect over the region; (seconds, figures of its reference= report)."""
    options = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
    flags = ["-" + flag for flag in args.module_flags]
    seconds, _ = run(DETECT, "--overwrite", *flags, input=",".join(bands), model=weights,
                     output=output, tile_size=args.tile_size, overlap=args.overlap,
                     reference=truth, reference_column="kind", report=report,
                     nprocs=args.nprocs, **options)
    with open(report) as stream:
        return seconds, json.load(stream)


# ------------------------------------------------------------------ measuring
def iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def box_of(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def ceiling(truth, box, side):
    """IoU with truth [h, w] of truth squeezed into box at side x side and pasted back,
    as a perfect mask head of that size would give in that box."""
    from maskrcnnlib.model.molding import MASK_THRESHOLD, _resize_mask, mini_masks

    y1, x1, y2, x2 = box
    small = mini_masks(truth[:, :, None], np.array([box]), (side, side))[:, :, 0]
    pasted = np.zeros_like(truth)
    pasted[y1:y2, x1:x2] = _resize_mask(small.astype(np.float32), (y2 - y1, x2 - x1)) \
        >= MASK_THRESHOLD
    return iou(pasted, truth)


def box_iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


class Truth:
    """The true objects of the region: ids int [rows, cols] (0: none), {id: class id},
    and which are on a seam of the tile grid."""

    def __init__(self, ids, classes, grid):
        self.ids, self.classes = ids, classes
        self.cells = np.bincount(ids.ravel(), minlength=max(classes) + 1)
        self.seam = {}
        for tile in (t for row in grid for t in row):
            inside = np.bincount(ids[tile.row:tile.row_end, tile.col:tile.col_end].ravel(),
                                 minlength=len(self.cells))
            for i in np.flatnonzero((inside > 0) & (inside < self.cells)):
                self.seam[int(i)] = True
        self.group = {i: "seam" if self.seam.get(i) else "inside" for i in classes}


def overlaps_with(truth, found_ids):
    """{(found id, true id): cells in common} of two id grids of the region."""
    both = (found_ids > 0) & (truth.ids > 0)
    base = int(truth.ids.max()) + 1
    keys, counts = np.unique(found_ids[both].astype(np.int64) * base + truth.ids[both],
                             return_counts=True)
    return {tuple(divmod(int(k), base)): int(c) for k, c in zip(keys, counts)}


def per_object_iou(truth, found_cells, overlaps):
    """{true id: best IoU with any found object}; found_cells {found id: cells}."""
    best = {i: 0.0 for i in truth.classes}
    for (f, t), common in overlaps.items():
        value = common / (found_cells[f] + truth.cells[t] - common)
        best[t] = max(best[t], value)
    return best


def region_ap(truth, found, overlaps):
    """evaluate_overlaps of found {id: (class id, score, cells)} against the truth."""
    from maskrcnnlib.evaluate import evaluate_overlaps

    order = sorted(found)
    index = {f: k for k, f in enumerate(order)}
    refs = sorted(truth.classes)
    ref_index = {t: k for k, t in enumerate(refs)}
    figures = evaluate_overlaps(
        [found[f] for f in order], [(truth.classes[t], int(truth.cells[t])) for t in refs],
        {(index[f], ref_index[t]): c for (f, t), c in overlaps.items()},
        class_ids=sorted(set(truth.classes.values())))
    return {k: figures[k] for k in ("AP50", "AP75", "mAP")}


def soft_detections(detector, images):
    """Per image: (boxes int [N, 4] tile pixels, class ids [N], scores [N], soft masks
    float32 [H, W, N]: each probability map resized into its box, zero elsewhere (the
    module's masks are these >= 0.5), rows of the network's output kept, m x m masks)."""
    from maskrcnnlib.model.molding import _resize_mask, _to_original_pixels

    outputs, molded, windows = detector.raw(images)
    results = []
    for index, image in enumerate(images):
        detections, probabilities = outputs[0][index], outputs[1][index]
        padding = detections[:, 4] == 0
        count = int(np.argmax(padding)) if padding.any() else len(detections)
        boxes = _to_original_pixels(detections[:count, :4], molded[index].shape,
                                    windows[index], image.shape)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        kept = np.flatnonzero((area > 0) & (np.arange(count) < len(probabilities)))
        class_ids = detections[kept, 4].astype(np.int32)
        soft = np.zeros(image.shape[:2] + (len(kept),), np.float32)
        for k, (row, class_id) in enumerate(zip(kept, class_ids)):
            y1, x1, y2, x2 = boxes[row]
            soft[y1:y2, x1:x2, k] = _resize_mask(
                np.asarray(probabilities[row, :, :, class_id], np.float32), (y2 - y1, x2 - x1))
        results.append((boxes[kept], class_ids, detections[kept, 5], soft,
                        [probabilities[row, :, :, c] for row, c in zip(kept, class_ids)]))
    return results


def replay(weights, image, truth, grid, args):
    """Run the tiles through the network as the module does; (view records, {variant:
    {mask rule: merged instances}}, {variant: AP of the views, each tile an image}).
    Variants: "plain" (the module's masks) and, with args.flips, "flips"."""
    from maskrcnnlib.detect import DetectJob, detection_config
    from maskrcnnlib.evaluate import ImageInstances, evaluate
    from maskrcnnlib.flips import detect_with_flips
    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.model.molding import MASK_THRESHOLD, mini_masks
    from maskrcnnlib.tiling import MASK_RULES, SeamMerger, instances_from_tile

    config = detection_config(DetectJob(model=weights, images=[], tile_size=args.tile_size,
                                        score_threshold=args.score_threshold))
    detector = Detector(config)
    detector.load_weights(weights)
    side = config.mask_shape[0]
    shape = truth.ids.shape
    variants = ("plain", "flips") if args.flips else ("plain",)
    mergers = {(v, rule): SeamMerger(grid, cross_class=True, masks=rule)
               for v in variants for rule in MASK_RULES}
    merged = {v: {rule: [] for rule in MASK_RULES} for v in variants}
    predictions = {v: [] for v in variants}
    views, references = [], []
    for row in grid:
        found = {v: [] for v in variants}
        for tile in row:
            tile_image = np.zeros((args.tile_size, args.tile_size, image.shape[2]), np.float32)
            tile_image[:tile.height, :tile.width] = image[tile.row:tile.row_end,
                                                          tile.col:tile.col_end]
            boxes, class_ids, scores, soft, small = soft_detections(detector, [tile_image])[0]
            results = {"plain": (soft >= MASK_THRESHOLD, class_ids, scores)}
            if args.flips:  # the module's -t
                flipped = detect_with_flips(detector, [tile_image])[0]
                results["flips"] = (flipped["masks"], flipped["class_ids"], flipped["scores"])
            tile_ids = truth.ids[tile.row:tile.row_end, tile.col:tile.col_end]
            present = [int(i) for i in np.unique(tile_ids) if i]
            references.append(ImageInstances(
                np.stack([tile_ids == i for i in present], -1) if present
                else np.zeros(tile_ids.shape + (0,), bool),
                [truth.classes[i] for i in present]))
            for variant, (tile_masks, ids, values) in results.items():
                tile_masks = tile_masks[:tile.height, :tile.width]
                predictions[variant].append(ImageInstances(tile_masks, ids, values))
                found[variant] += instances_from_tile(
                    tile, tile_masks, ids, values, core_margin=args.overlap // 2,
                    region_shape=shape)
            for k in range(len(boxes)):
                views.append(view_record(results["plain"][0][:tile.height, :tile.width, k],
                                         boxes[k], small[k], tile_ids, present, truth, side,
                                         mini_masks))
        for (variant, rule), merger in mergers.items():
            merger.add_row(found[variant])
            merged[variant][rule] += merger.pop_finished()
    for (variant, rule), merger in mergers.items():
        merged[variant][rule] += merger.finish()
    return views, merged, {v: evaluate(predictions[v], references) for v in variants}


def view_record(mask, box, probability, tile_ids, present, truth, side, mini_masks):
    """The stage figures of one view (a detection in one tile), None when it matches no
    true object at IoU >= 0.5 in the tile."""
    h, w = mask.shape
    y1, x1, y2, x2 = (int(v) for v in box)
    box = (y1, x1, min(y2, h), min(x2, w))
    best, best_iou = None, 0.5
    for i in present:
        value = iou(mask, tile_ids == i)
        if value >= best_iou:
            best, best_iou = i, value
    if best is None or box[2] <= box[0] or box[3] <= box[1]:
        return None
    cut = tile_ids == best
    true_box = box_of(cut)
    target = mini_masks(cut[:, :, None], np.array([box]), (side, side))[:, :, 0]
    return {"group": truth.group[best], "cut": bool(np.count_nonzero(cut) < truth.cells[best]),
            "molded": iou(probability >= 0.5, target), "unmolded": best_iou,
            "box": box_iou(box, true_box),
            "ceiling28": ceiling(cut, box, 28), "ceiling56": ceiling(cut, box, 56),
            "ceiling28_true_box": ceiling(cut, true_box, 28),
            "ceiling56_true_box": ceiling(cut, true_box, 56)}


def merged_figures(truth, merged):
    """Per-object IoU and AP of the seam merger's instances (overlaps as they come)."""
    overlaps, found = {}, {}
    for n, instance in enumerate(merged, start=1):
        window = truth.ids[instance.row0:instance.row1, instance.col0:instance.col1]
        hit = window[instance.mask]
        for t, c in zip(*np.unique(hit[hit > 0], return_counts=True)):
            overlaps[(n, int(t))] = int(c)
        found[n] = (instance.class_id, instance.score, instance.area)
    cells = {n: f[2] for n, f in found.items()}
    return per_object_iou(truth, cells, overlaps), region_ap(truth, found, overlaps)


def vector_figures(truth, output):
    """Per-object IoU and AP of the module's vector map, rasterized back."""
    import grass.script as gs
    from grass.script import array as garray

    gs.run_command("v.to.rast", input=output, output=output + "_cells", use="cat",
                   type="area", quiet=True, overwrite=True)
    found_ids = np.nan_to_num(np.asarray(garray.array(output + "_cells"))).astype(np.int64)
    rows = gs.read_command("v.db.select", map=output, columns="cat,class_id,score",
                           flags="c", separator=",").split()
    cells = np.bincount(found_ids.ravel())
    found = {int(c): (int(k), float(s), int(cells[int(c)]) if int(c) < len(cells) else 0)
             for c, k, s in (line.split(",") for line in rows)}
    found = {f: v for f, v in found.items() if v[2]}
    overlaps = overlaps_with(truth, found_ids)
    return per_object_iou(truth, {f: v[2] for f, v in found.items()}, overlaps), \
        region_ap(truth, found, overlaps)


def mean_iou(values, threshold=0.5):
    """(mean IoU of the objects found at >= threshold, how many)."""
    kept = [v for v in values if v >= threshold]
    return (float(np.mean(kept)) if kept else float("nan")), len(kept)


def measure(label, args, weights, bands, truth_map, classes, output):
    """Every stage's figures of one model on the current region; prints and returns them."""
    import grass.script as gs
    from grass.script import array as garray

    from maskrcnnlib.tiling import tile_grid

    region = gs.region()
    image = np.dstack([np.asarray(garray.array(b)) for b in bands]).astype(np.float32)
    gs.run_command("v.to.rast", input=truth_map, output=truth_map + "_cells", use="cat",
                   type="area", quiet=True, overwrite=True)
    ids = np.nan_to_num(np.asarray(garray.array(truth_map + "_cells"))).astype(np.int64)
    present = [int(i) for i in np.unique(ids) if i]
    classes = {i: classes[i] for i in present}
    grid = tile_grid(region["rows"], region["cols"], args.tile_size, args.overlap)
    truth = Truth(ids, classes, grid)
    started = time.monotonic()
    views, merged, view_ap = replay(weights, image, truth, grid, args)
    replay_seconds = time.monotonic() - started
    merged = {(variant, rule): merged_figures(truth, instances)
              for variant, rules in merged.items() for rule, instances in rules.items()}
    module_seconds, report = detect_with_module(
        args, weights, bands, truth_map, output, os.path.join(args.work, output + ".json"))
    vector_iou, vector_ap = vector_figures(truth, output)
    result = {"label": label, "objects": {g: sum(truth.group[i] == g for i in classes)
                                          for g in GROUPS},
              "views": views, "view_ap": {v: {k: figures[k] for k in ("AP50", "AP75", "mAP")}
                                          for v, figures in view_ap.items()},
              "merged": merged, "vector_iou": vector_iou,
              "vector_ap": vector_ap, "group": truth.group,
              "writer_ap": {k: report[k] for k in ("AP50", "AP75", "mAP")},
              "seconds": {"replay": replay_seconds, "module": module_seconds},
              "module_flags": args.module_flags}
    print_result(result)
    return result


# ------------------------------------------------------------------ printing
FLIPS = {"plain": "", "flips": ", test-time flips"}
VIEW_FIGURES = ("molded", "unmolded", "box", "ceiling28", "ceiling56", "ceiling28_true_box",
                "ceiling56_true_box")


def print_result(result):
    print("\n### {}".format(result["label"]))
    print("objects: {inside} inside one tile, {seam} on seams".format(**result["objects"]))
    print("\nviews matched at IoU >= 0.5 in their tile: mean IoU per stage "
          "(ceiling: a perfect m x m mask in that box)\n")
    print("| views | n | " + " | ".join(VIEW_FIGURES) + " |")
    print("| --- | --- |" + " --- |" * len(VIEW_FIGURES))
    kinds = (("inside objects", lambda v: v["group"] == "inside"),
             ("seam objects, whole in the tile", lambda v: v["group"] == "seam" and not v["cut"]),
             ("seam objects, cut by the tile", lambda v: v["group"] == "seam" and v["cut"]))
    matched = [v for v in result["views"] if v is not None]
    for name, test in kinds:
        chosen = [v for v in matched if test(v)]
        print("| {} | {} | {} |".format(name, len(chosen), " | ".join(
            "{:.3f}".format(np.mean([v[k] for v in chosen])) if chosen else "-"
            for k in VIEW_FIGURES)))
    print("({} views matched no object)".format(len(result["views"]) - len(matched)))
    print("\nobjects: mean IoU of those found at IoU >= 0.5 (how many); AP over all objects\n")
    print("| stage | inside objects | seam objects | AP50 | AP75 | mAP |")
    print("| --- | --- | --- | --- | --- | --- |")
    stages = [("views (tiles as images){}".format(FLIPS[v]), None, ap)
              for v, ap in result["view_ap"].items()]
    stages += [("merged: {}{}".format(rule, FLIPS[variant]), *figures)
               for (variant, rule), figures in result["merged"].items()]
    stages += [("writer (module's reference=)", None, result["writer_ap"]),
               ("vector (rasterized back)", result["vector_iou"], result["vector_ap"])]
    for stage, ious, ap in stages:
        cells = []
        for group in GROUPS:
            if ious is None:
                cells.append("-")
                continue
            mean, n = mean_iou([v for i, v in ious.items() if result["group"][i] == group])
            cells.append("{:.3f} ({}/{})".format(mean, n, result["objects"][group]))
        print("| {} | {} | {:.3f} | {:.3f} | {:.3f} |".format(
            stage, " | ".join(cells), ap["AP50"], ap["AP75"], ap["mAP"]))
    print("\nseconds: replay {replay:.0f}, module {module:.0f} (flags: {flags})".format(
        flags=result["module_flags"] or "none", **result["seconds"]), flush=True)


# ------------------------------------------------------------------ the scenes
def synthetic(args, logs):
    import grass.script as gs

    gs.run_command("g.region", n=args.size, s=0, w=0, e=args.size, res=1)
    rng = np.random.default_rng(args.seed)
    scenes = {}
    for prefix in ("train", "test"):
        image, ids, classes = seam_scene(rng, args.size, args.tile_size, args.overlap,
                                         args.objects, args.radius)
        scenes[prefix] = write_scene(prefix, image, ids, classes) + (classes,)
    print("synthetic: {0}x{0} cells, {1} objects a scene (radius {2[0]}-{2[1]} cells)".format(
        args.size, len(scenes["test"][2]), args.radius), flush=True)
    results = []
    for mask_size in args.mask_sizes:
        name = "synthetic{}".format(mask_size)
        seconds, weights = train(args, logs, name, *scenes["train"][:2], CLASSES, mask_size)
        print("trained {} (mask_size {}) in {:.0f} s{}".format(
            name, mask_size, seconds, " (reused)" if not seconds else ""), flush=True)
        bands, truth, classes = scenes["test"]
        results.append(measure("synthetic seam scene, mask_size {}".format(mask_size), args,
                               weights, bands, truth, classes, "found_" + name))
    return results


def realdata(args, logs):
    import grass.script as gs

    from manual_figure_realdata import DETECT_REGION, TRAIN_REGION

    gs.run_command("r.in.gdal", flags="o", quiet=True, output="sn", overwrite=True,
                   input=os.path.join(REALDATA, "sample_geotiff.tif"))
    gs.run_command("v.in.ogr", flags="o", quiet=True, output="buildings", overwrite=True,
                   input=os.path.join(REALDATA, "geotiff_labels.geojson"))
    gs.run_command("v.db.addcolumn", map="buildings", columns="kind text", quiet=True)
    gs.run_command("v.db.update", map="buildings", column="kind", value="building",
                   quiet=True)
    cats = gs.read_command("v.category", input="buildings", option="print").split()
    classes = {int(c): 1 for c in cats}
    results = []
    for mask_size in args.mask_sizes:
        name = "spacenet{}".format(mask_size)
        gs.run_command("g.region", **TRAIN_REGION)
        seconds, weights = train(args, logs, name, ["sn"], "buildings", ("building",),
                                 mask_size)
        print("trained {} (mask_size {}) in {:.0f} s".format(name, mask_size, seconds),
              flush=True)
        gs.run_command("g.region", **DETECT_REGION)
        results.append(measure("SpaceNet Atlanta, southern part, mask_size {}".format(
            mask_size), args, weights, ["sn"], "buildings", classes, "found_" + name))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="cells a side of the scenes")
    parser.add_argument("--objects", type=int, default=120, help="objects a scene")
    parser.add_argument("--radius", default="8,20", help="smallest,largest half-side")
    parser.add_argument("--tile-size", type=int, default=256, help="detection tiles")
    parser.add_argument("--overlap", type=int, default=48)
    parser.add_argument("--train-tile", type=int, default=128, help="training windows")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--images-per-gpu", type=int, default=2, help="windows a step")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--mask-sizes", default="28", help="models to train: 28, 56 or both")
    parser.add_argument("--realdata", action="store_true", help="also the SpaceNet scene")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--flips", action="store_true",
                        help="also measure test-time flips (detect's -t) in the replay")
    parser.add_argument("--module-flags", default="",
                        help="flags of the module's detection run, e.g. t (test-time flips)")
    parser.add_argument("--score-threshold", type=float,
                        help="detection's score threshold (default: the model's)")
    parser.add_argument("--nprocs", type=int, default=0, help="threads (0: all cores)")
    parser.add_argument("--keep", metavar="DIR", help="keep the logs (models) in DIR")
    parser.add_argument("--reuse", action="store_true",
                        help="take the models already in --keep DIR instead of training")
    args = parser.parse_args()
    from maskrcnnlib.quiet import import_tensorflow
    from maskrcnnlib.threads import limit_threads

    import_tensorflow()
    limit_threads(args.nprocs)
    args.radius = [int(v) for v in args.radius.split(",")]
    args.mask_sizes = [int(v) for v in args.mask_sizes.split(",")]
    print("CPU: {}".format(cpu_description()))
    print("load average at start: {}".format(" ".join(
        "{:.2f}".format(v) for v in os.getloadavg())))
    print("settings: {} trained {} steps ({} epochs) of {} random {}-cell windows "
          "(augment flip_rotate, learning rate {}), seed {}; detection tiles {} overlap {}"
          .format(args.backbone, args.steps, args.epochs, args.images_per_gpu,
                  args.train_tile, args.learning_rate, args.seed, args.tile_size,
                  args.overlap), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_masks_") as folder:
        args.work = folder
        start_grass(folder)
        logs = args.keep or os.path.join(folder, "logs")
        if not args.no_synthetic:
            synthetic(args, logs)
        if args.realdata:
            realdata(args, logs)


if __name__ == "__main__":
    main()
