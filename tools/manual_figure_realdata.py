#!/usr/bin/env python3
"""The detect manual's real-imagery example: SpaceNet buildings in Atlanta.

Imports the bundled SpaceNet 4 scene (tests/fixtures/realdata/spacenet_atlanta:
900 x 900 cells, 1 band UInt16, 0.5 m, EPSG:32616, 43 building outlines) into a
new GRASS project in its own coordinate reference system, trains a small model
with i.ann.maskrcnn.train on the northern part of the scene (29 buildings), runs
i.ann.maskrcnn.detect on the southern part (14 buildings, no cell of which the
model trained on) with the buildings as reference at several score thresholds,
prints the accuracy tables the module prints, and draws the imagery (2nd to 98th
percentile stretched) with the detections at the threshold with the best F1
(yellow) and the reference outlines (cyan) of the southern part into a PNG. The split line runs between buildings,
so no building is cut by it.

    python3 tools/manual_figure_realdata.py [--png i.ann.maskrcnn.detect/i_ann_maskrcnn_detect_realdata.png]
        [--steps 2400] [--epochs 8] [--thresholds 0.5,0.7,0.8,0.9] [--work DIR]
        [--model CHECKPOINT]

Run with the project's environment (tools/setup.sh) first on PATH; it runs the
modules of this source tree. --steps 20 --epochs 1 times the steps. Everything
but the PNG (and --work, when given) lives in a temporary directory.
ImageNet or COCO weights cannot be downloaded on the machines that made the
manual's figure: the model starts from random weights.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENE = os.path.join(ROOT, "tests", "fixtures", "realdata", "spacenet_atlanta")
TRAIN = os.path.join(ROOT, "i.ann.maskrcnn.train", "i.ann.maskrcnn.train.py")
DETECT = os.path.join(ROOT, "i.ann.maskrcnn.detect", "i.ann.maskrcnn.detect.py")
# the scene spans n=3725139 s=3724689 w=733601 e=734051; no building crosses SPLIT
NORTH, SOUTH, WEST, EAST, SPLIT = 3725139, 3724689, 733601, 734051, 3724922
TRAIN_REGION = {"n": NORTH, "s": SPLIT, "w": WEST, "e": EAST, "res": 0.5}
DETECT_REGION = {"n": SPLIT, "s": SOUTH, "w": WEST, "e": EAST, "res": 0.5}


def start_grass(folder):
    """A GRASS project in the scene's CRS, made the session of this process."""
    gisbase = subprocess.run(["grass", "--config", "path"], capture_output=True,
                             text=True, check=True).stdout.strip()
    sys.path.insert(0, os.path.join(gisbase, "etc", "python"))
    project = os.path.join(folder, "grassdata", "atlanta")
    subprocess.run(["grass", "-e", "-c", os.path.join(SCENE, "sample_geotiff.tif"), project],
                   check=True, capture_output=True)
    import grass.script.setup as gsetup

    gsetup.init(os.path.join(project, "PERMANENT"), grass_path=gisbase)
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                          os.environ["PATH"]])


def import_scene():
    """Raster atlanta (UInt16), areas buildings with a column class = 'building',
    and atlanta_stretched: the 2nd to 98th percentile on 0..255, for the figure."""
    import grass.script as gs

    gs.run_command("r.in.gdal", input=os.path.join(SCENE, "sample_geotiff.tif"),
                   output="atlanta", quiet=True)
    gs.run_command("v.in.ogr", input=os.path.join(SCENE, "geotiff_labels.geojson"),
                   output="buildings", quiet=True)
    gs.run_command("v.db.addcolumn", map="buildings", columns="class text", quiet=True)
    gs.run_command("v.db.update", map="buildings", column="class", value="building",
                   quiet=True)
    gs.run_command("g.region", raster="atlanta")
    stats = gs.parse_command("r.univar", flags="ge", map="atlanta", percentile="2,98")
    low, high = float(stats["percentile_2"]), float(stats["percentile_98"])
    gs.mapcalc("atlanta_stretched = round(max(0, min(255, (atlanta - {low}) * 255.0 / "
               "({high} - {low}))))".format(low=low, high=high), quiet=True)


def run(module, *flags, **options):
    """Run a module script of this tree; (seconds, stdout, stderr); exits on failure."""
    command = [sys.executable, module, *flags] + [
        "{}={}".format(key, value) for key, value in options.items()]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit("{} failed:\n{}".format(" ".join(command), result.stderr[-3000:]))
    return time.monotonic() - started, result.stdout, result.stderr


def accuracy_table(stdout):
    """The module's accuracy table: the lines from 'Accuracy against' on."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Accuracy against"))
    return "\n".join(line for line in lines[start:] if line.strip())


def reference_count():
    """Buildings whose centroid lies in the detection part."""
    import grass.script as gs

    centroids = gs.read_command("v.out.ascii", input="buildings", type="centroid",
                                format="point", separator=",").splitlines()
    return sum(SOUTH <= float(line.split(",")[1]) <= SPLIT for line in centroids if line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--png", default=os.path.join(
        ROOT, "i.ann.maskrcnn.detect", "i_ann_maskrcnn_detect_realdata.png"))
    parser.add_argument("--steps", type=int, default=2400, help="training steps in all")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--tile-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--thresholds", default="0.5,0.7,0.8,0.9",
                        help="score_threshold of the detection runs; the figure shows "
                        "the detections at the one with the best F1")
    parser.add_argument("--model", help="detect with this checkpoint instead of training")
    parser.add_argument("--precision", default="float32",
                        help="precision= of the detection runs (float32, bfloat16, auto, "
                        "int8): the accuracy of each on real imagery")
    parser.add_argument("--work", help="keep the project, logs and maps here")
    args = parser.parse_args()
    thresholds = [float(value) for value in args.thresholds.split(",")]
    png = os.path.abspath(args.png)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print("CPU: {} ({} logical CPUs); load average {}".format(
        re.search(r"Model name:\s*(.*)", cpu).group(1).strip(), os.cpu_count(),
        " ".join("{:.2f}".format(v) for v in os.getloadavg())), flush=True)
    with tempfile.TemporaryDirectory(prefix="manual_figure_") as temporary:
        folder = os.path.abspath(args.work) if args.work else temporary
        os.makedirs(folder, exist_ok=True)
        start_grass(folder)
        import grass.script as gs

        import_scene()
        print("reference buildings in the detection part: {}".format(reference_count()))
        logs = os.path.join(folder, "logs")
        model = os.path.join(logs, "mask_rcnn_atlanta_{:04d}.h5".format(args.epochs))
        if args.model:
            model = os.path.abspath(args.model)
        else:
            train(args, logs)
        gs.run_command("g.region", **DETECT_REGION)
        found = {}  # threshold: (map, F1)
        for threshold in thresholds:
            output = "found_{:02d}".format(round(100 * threshold))
            report = os.path.join(folder, output + ".json")
            seconds, stdout, _ = run(
                DETECT, "--overwrite", input="atlanta", model=model, output=output,
                tile_size=args.tile_size, overlap=args.tile_size // 4,
                score_threshold=threshold, reference="buildings", report=report,
                nprocs=2, precision=args.precision)
            with open(report) as stream:
                found[threshold] = (output, json.load(stream)["F1"])
            print("\ndetect score_threshold={} ({:.0f} s):\n{}".format(
                threshold, seconds, accuracy_table(stdout)), flush=True)
        lowest = found[thresholds[0]][0]
        for threshold in thresholds[1:]:
            where = "score >= {}".format(threshold)
            kept = gs.read_command("v.db.select", map=lowest, columns="cat", where=where,
                                   flags="c").split()
            own = gs.read_command("v.db.select", map=found[threshold][0], columns="cat",
                                  flags="c").split()
            print("objects of {} with {}: {}; the run at score_threshold={} found {}".format(
                lowest, where, len(kept), threshold, len(own)))
        # the figure: the best F1, the higher threshold on a tie
        shown_threshold = max(thresholds, key=lambda t: (found[t][1], t))
        shown = found[shown_threshold][0]
        sys.path.insert(0, HERE)
        from demo_job import draw

        draw(png, ["atlanta_stretched"] * 3, shown, pixels_per_cell=1,
             outlines=[("buildings", None, "cyan"), (shown, None, "yellow")])
        from PIL import Image

        # 62 greys and the two outline colours exactly, so that thin lines keep them
        palette = Image.new("P", (1, 1))
        palette.putpalette([v for g in range(62) for v in (g * 255 // 61,) * 3] +
                           [255, 255, 0, 0, 255, 255] + [0, 0, 0] * 192)
        Image.open(png).convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) \
            .save(png, optimize=True)
        print("\nfigure ({} at score_threshold {}, the best F1): {} ({} KB)".format(
            shown, shown_threshold, png, os.path.getsize(png) // 1024))


def train(args, logs):
    """Train on the northern part; prints the time."""
    import grass.script as gs

    gs.run_command("g.region", **TRAIN_REGION)
    per_epoch = max(1, args.steps // args.epochs)
    seconds, _, _ = run(
        TRAIN, input="atlanta", training_map="buildings", class_column="class",
        logs=logs, name="atlanta", backbone="resnet18", tile_size=args.tile_size,
        overlap=args.tile_size // 4, sampling="random", images_min_dim=args.tile_size,
        images_max_dim=args.tile_size, epochs=args.epochs, steps_per_epoch=per_epoch,
        images_per_gpu=2, rois_per_image=32, learning_rate=args.learning_rate,
        augment="flip_rotate,radiometric", seed=1, keep=1, nprocs=2)
    print("training: {} epochs of {} steps (ResNet-18, tile {}), {:.0f} s ({:.2f} s a step)"
          .format(args.epochs, per_epoch, args.tile_size, seconds,
                  seconds / (args.epochs * per_epoch)), flush=True)


if __name__ == "__main__":
    main()
