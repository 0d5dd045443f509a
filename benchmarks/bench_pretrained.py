#!/usr/bin/env python3
"""Pretrained weights against training from scratch, on real imagery, judged on held-out
blocks: the same number of steps on one bundled real scene, once started from weights
learnt on the other real scene, once from random weights.

The published COCO and ImageNet files cannot be downloaded on our machines, so the
"pretrained" start is a stand-in: a model trained here first on another real scene,
through i.ann.maskrcnn.train like any user's model. The default target is the SpaceNet
Atlanta buildings (1 band, UInt16, 0.5 m; small distinct objects), the default stand-in
is trained on the Danish Sentinel-2 parcels (10 m) reduced to one band, the mean of
their three (a start model may have fewer bands than the target, not more: extra bands
start as the mean filter). --pretrain-on spacenet --target denmark gives the first run's
scenes. Fine-tuning takes the stand-in with -e (new heads for the new class). The
pretraining and both target runs use -s with the same seed: held-out blocks of the chip
grid (no held-out cell in any training chip), whose mask AP50, AP75 and mAP the module
reports after every epoch; the two target runs hold out the same blocks.

Everything runs through the modules in a temporary XY project (the scenes imported with
their own coordinates). Prints the CPU, the settings, each run's time and the held-out
mask AP per epoch, and the last and best figures side by side. bench_sampling.py uses
the same scenes and settings.

    python3 benchmarks/bench_pretrained.py [--pretrain-on denmark_grey] [--target spacenet]
        [--pretrain-steps 1050] [--steps 1050] [--epochs 7] [--backbone resnet18]
        [--tile-size 128] [--seed 4] [--sampling random]
        [--augment flip_rotate,radiometric]

Seed 4 holds out a corner block of 4 x 4 chips of the SpaceNet scene with 11 of its 43
buildings (seed 1 holds out an edge block with 3). Run with the project's environment
(tools/setup.sh) first on PATH.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_detect import start_grass  # noqa: E402
from bench_train import cpu_description  # noqa: E402

REALDATA = os.path.join(ROOT, "tests", "fixtures", "realdata")
TRAIN = os.path.join(ROOT, "i.ann.maskrcnn.train", "i.ann.maskrcnn.train.py")

# region, bands, training areas (their column kind holds the class), class name
SCENES = {
    "spacenet": {"region": "sn", "input": "sn", "training_map": "buildings",
                 "classes": "building"},
    "denmark": {"region": "dk.1", "input": "dk.1,dk.2,dk.3", "training_map": "parcels",
                "classes": "field"},
    "denmark_grey": {"region": "dk.1", "input": "dk_grey", "training_map": "parcels",
                     "classes": "field"},
}


def import_scenes():
    """SpaceNet as raster sn and areas buildings; Denmark as dk.1..3, their mean dk_grey
    (UInt16 rounded) and areas parcels; each vector with a column kind holding the one
    class name."""
    import grass.script as gs

    gs.run_command("r.in.gdal", flags="o", quiet=True, output="sn", input=os.path.join(
        REALDATA, "spacenet_atlanta", "sample_geotiff.tif"))
    gs.run_command("v.in.ogr", flags="o", quiet=True, output="buildings", input=os.path.join(
        REALDATA, "spacenet_atlanta", "geotiff_labels.geojson"))
    gs.run_command("r.in.gdal", flags="o", quiet=True, output="dk", input=os.path.join(
        REALDATA, "denmark_fields", "RGB_small.tif"))
    gs.run_command("v.in.ogr", flags="o", quiet=True, output="parcels", input=os.path.join(
        REALDATA, "denmark_fields", "marker2016_small.shp"))
    gs.run_command("g.region", raster="dk.1")
    gs.run_command("r.mapcalc", quiet=True,
                   expression="dk_grey = round((dk.1 + dk.2 + dk.3) / 3.0)")
    for vector, name in (("buildings", "building"), ("parcels", "field")):
        gs.run_command("v.db.addcolumn", map=vector, columns="kind text", quiet=True)
        gs.run_command("v.db.update", map=vector, column="kind", value=name, quiet=True)


def add_common_arguments(parser, steps):
    """The settings every run of this benchmark and bench_sampling.py shares."""
    parser.add_argument("--target", choices=sorted(SCENES), default="spacenet",
                        help="the scene of the compared runs")
    parser.add_argument("--steps", type=int, default=steps, help="steps of each compared run")
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--tile-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--augment", default="flip_rotate,radiometric")
    parser.add_argument("--validation-steps", type=int, default=50)
    parser.add_argument("--module-logs", metavar="DIR",
                        help="also write each module run's messages into DIR/<run>.log")


def train(args, scene, *flags, **options):
    """Run the module on a scene (its region, bands, areas, class), -s and the common
    settings; (seconds, stderr). Fails loudly on an error."""
    import grass.script as gs

    data = dict(SCENES[scene])
    gs.run_command("g.region", raster=data.pop("region"))
    common = {"backbone": args.backbone, "tile_size": args.tile_size,
              "overlap": args.tile_size // 4, "seed": args.seed, "epochs": args.epochs,
              "rois_per_image": 32, "augment": args.augment, "keep": 0,
              "class_column": "kind", "validation_steps": args.validation_steps}
    command = [TRAIN, "-s", *flags] + ["{}={}".format(k, v) for k, v in
                                       {**common, **data, **options}.items()]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if args.module_logs:
        os.makedirs(args.module_logs, exist_ok=True)
        with open(os.path.join(args.module_logs, options["name"] + ".log"), "w") as stream:
            stream.write(result.stderr)
    if result.returncode:
        raise SystemExit("{} failed:\n{}".format(" ".join(command), result.stderr[-3000:]))
    return time.monotonic() - started, result.stderr


def history(logs, name, epochs):
    """The per-epoch history in the last epoch's model card."""
    with open(os.path.join(logs, "mask_rcnn_{}_{:04d}.json".format(name, epochs))) as stream:
        return json.load(stream)["history"]


def held_out_summary(logs):
    """'N chips in M blocks' of logs/held_out.txt (written by the last -s run)."""
    with open(os.path.join(logs, "held_out.txt")) as stream:
        lines = stream.read().splitlines()
    blocks = sum(line.startswith("# block") for line in lines)
    return "{} chips in {} block(s)".format(sum(not line.startswith("#") for line in lines),
                                            blocks)


def report(label, seconds, entries):
    print("{}: {:.0f} s; held-out mask AP50 / AP75 / mAP (validation loss) per epoch: {}"
          .format(label, seconds, ", ".join("{:.3f}/{:.3f}/{:.3f} ({:.3f})".format(
              e["val_AP50"], e["val_AP75"], e["val_mAP"], e["val_loss"]) for e in entries)),
          flush=True)


def print_table(runs):
    """runs: {label: (seconds, history)}; a markdown table of the last and best epochs,
    and the validation loss (more sensitive than AP while AP is near zero)."""
    print("\n| run | AP50 (last) | AP75 (last) | mAP (last) | best mAP (epoch) "
          "| best AP50 (epoch) | val loss (last) | lowest val loss (epoch) "
          "| train mask loss (last) | time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, (seconds, entries) in runs.items():
        best = max(entries, key=lambda e: e["val_mAP"])  # max keeps the earlier on a tie
        best50 = max(entries, key=lambda e: e["val_AP50"])
        lowest = min(entries, key=lambda e: e["val_loss"])
        last = entries[-1]
        print("| {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} ({}) | {:.3f} ({}) | {:.3f} "
              "| {:.3f} ({}) | {:.3f} | {:.0f} |".format(
                  label, last["val_AP50"], last["val_AP75"], last["val_mAP"],
                  best["val_mAP"], best["epoch"], best50["val_AP50"], best50["epoch"],
                  last["val_loss"], lowest["val_loss"], lowest["epoch"], last["mrcnn_mask"],
                  seconds))


def per_epoch(steps, epochs):
    return max(1, steps // epochs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, steps=1050)
    parser.add_argument("--pretrain-on", choices=sorted(SCENES), default="denmark_grey")
    parser.add_argument("--pretrain-steps", type=int, default=1050)
    parser.add_argument("--sampling", choices=("grid", "random"), default="random")
    parser.add_argument("--keep-standin", metavar="H5",
                        help="copy the stand-in (and its card) there, for bench_sampling --start")
    args = parser.parse_args()
    if args.pretrain_on.startswith(args.target):
        parser.error("--pretrain-on and --target must be different scenes")
    print("CPU: {}".format(cpu_description()))
    print("load average at start: {}".format(" ".join(
        "{:.2f}".format(value) for value in os.getloadavg())))
    print("settings: {} at tile {} (overlap {}), {} epochs, sampling={} augment={}; "
          "pretraining {} steps on {}; {} steps on {} for each start; seed {}".format(
              args.backbone, args.tile_size, args.tile_size // 4, args.epochs, args.sampling,
              args.augment, args.pretrain_steps, args.pretrain_on, args.steps, args.target,
              args.seed), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_pretrained_") as folder:
        start_grass(folder)
        import_scenes()
        logs = os.path.join(folder, "logs")
        seconds, _ = train(args, args.pretrain_on, name="standin", logs=logs,
                           steps_per_epoch=per_epoch(args.pretrain_steps, args.epochs),
                           sampling="random")
        print("held out in pretraining: {}".format(held_out_summary(logs)))
        report("pretraining on {} (the stand-in)".format(args.pretrain_on), seconds,
               history(logs, "standin", args.epochs))
        start = os.path.join(logs, "mask_rcnn_standin_{:04d}.h5".format(args.epochs))
        if args.keep_standin:
            shutil.copyfile(start, args.keep_standin)
            shutil.copyfile(start[:-3] + ".json", args.keep_standin[:-3] + ".json")
        target = {"logs": logs, "sampling": args.sampling,
                  "steps_per_epoch": per_epoch(args.steps, args.epochs)}
        runs = {}
        for label, name, flags, extra in (
                ("from the stand-in ({} steps), fine-tuned".format(args.pretrain_steps),
                 "pretrained", ("-e",), {"model": start}),
                ("from scratch", "scratch", (), {})):
            seconds, _ = train(args, args.target, *flags, name=name, **target, **extra)
            runs[label] = (seconds, history(logs, name, args.epochs))
            report(label, seconds, runs[label][1])
        print("held out on {}: {}".format(args.target, held_out_summary(logs)))
    print_table(runs)


if __name__ == "__main__":
    main()
