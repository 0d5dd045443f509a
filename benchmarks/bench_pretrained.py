#!/usr/bin/env python3
"""Pretrained weights against training from scratch, on real imagery, judged on held-out
blocks: the same number of steps on the Danish Sentinel-2 field parcels (3 bands,
UInt16, 10 m), once started from weights learnt on another real scene, once from random
weights.

The published COCO and ImageNet files cannot be downloaded on our machines, so the
"pretrained" start is a stand-in: a model trained here first on the SpaceNet Atlanta
buildings (1 band, UInt16, 0.5 m), through i.ann.maskrcnn.train like any user's model.
Fine-tuning takes it with -e (new heads for the new class) and its first-layer filters
widened to 3 bands (extra bands start as the mean filter). Both Danish runs use -s with
the same seed: the same held-out blocks of the chip grid (no held-out cell in any
training chip), whose mask AP50, AP75 and mAP the module reports after every epoch.

Everything runs through the modules in a temporary XY project (the scenes imported with
their own coordinates). Prints the CPU, the settings, each run's time and the held-out
mask AP per epoch, and the final and best figures side by side.

    python3 benchmarks/bench_pretrained.py [--pretrain-steps 350] [--steps 140]
        [--backbone resnet18] [--tile-size 128] [--seed 1]

About 15 minutes on 2 cores with the defaults. Run with the project's environment
(tools/setup.sh) first on PATH.
"""
import argparse
import json
import os
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
EPOCHS = 7  # from weights: heads 1 epoch, ResNet stage 4+ 2, all layers 4 (the module's plan)


def import_scenes():
    """SpaceNet as raster sn and areas buildings; Denmark as dk.1..3 and areas parcels;
    each with a column kind holding the one class name."""
    import grass.script as gs

    gs.run_command("r.in.gdal", flags="o", quiet=True, output="sn", input=os.path.join(
        REALDATA, "spacenet_atlanta", "sample_geotiff.tif"))
    gs.run_command("v.in.ogr", flags="o", quiet=True, output="buildings", input=os.path.join(
        REALDATA, "spacenet_atlanta", "geotiff_labels.geojson"))
    gs.run_command("r.in.gdal", flags="o", quiet=True, output="dk", input=os.path.join(
        REALDATA, "denmark_fields", "RGB_small.tif"))
    gs.run_command("v.in.ogr", flags="o", quiet=True, output="parcels", input=os.path.join(
        REALDATA, "denmark_fields", "marker2016_small.shp"))
    for vector, name in (("buildings", "building"), ("parcels", "field")):
        gs.run_command("v.db.addcolumn", map=vector, columns="kind text", quiet=True)
        gs.run_command("v.db.update", map=vector, column="kind", value=name, quiet=True)


def train(args, region, *flags, **options):
    """Run the module in the given region; (seconds, stderr). Fails loudly on an error."""
    import grass.script as gs

    gs.run_command("g.region", raster=region)
    common = {"backbone": args.backbone, "tile_size": args.tile_size,
              "overlap": args.tile_size // 4, "seed": args.seed, "epochs": EPOCHS,
              "rois_per_image": 32, "augment": "flip_rotate", "keep": 0}
    command = [TRAIN, *flags] + ["{}={}".format(k, v) for k, v in {**common, **options}.items()]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit("{} failed:\n{}".format(" ".join(command), result.stderr[-3000:]))
    return time.monotonic() - started, result.stderr


def history(logs, name):
    with open(os.path.join(logs, "mask_rcnn_{}_{:04d}.json".format(name, EPOCHS))) as stream:
        return json.load(stream)["history"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain-steps", type=int, default=350)
    parser.add_argument("--steps", type=int, default=140, help="steps of each Danish run")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--tile-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("CPU: {}".format(cpu_description()))
    print("settings: {} at tile {} (overlap {}), {} epochs; pretraining {} steps on SpaceNet "
          "Atlanta; {} steps on the Danish parcels for each start; seed {}".format(
              args.backbone, args.tile_size, args.tile_size // 4, EPOCHS,
              args.pretrain_steps, args.steps, args.seed), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_pretrained_") as folder:
        start_grass(folder)
        import_scenes()
        logs = os.path.join(folder, "logs")
        seconds, _ = train(args, "sn", input="sn", training_map="buildings",
                           class_column="kind", classes="building", name="atlanta",
                           logs=logs, steps_per_epoch=max(1, args.pretrain_steps // EPOCHS),
                           sampling="random")
        print("pretraining on SpaceNet: {:.0f} s".format(seconds), flush=True)
        start = os.path.join(logs, "mask_rcnn_atlanta_{:04d}.h5".format(EPOCHS))
        danish = {"input": "dk.1,dk.2,dk.3", "training_map": "parcels", "class_column": "kind",
                  "classes": "field", "logs": logs, "validation_steps": 50,
                  "steps_per_epoch": max(1, args.steps // EPOCHS)}
        runs = {}
        for name, flags, extra in (("pretrained", ("-s", "-e"), {"model": start}),
                                   ("scratch", ("-s",), {})):
            seconds, _ = train(args, "dk.1", *flags, name=name, **danish, **extra)
            runs[name] = history(logs, name)
            print("{}: {:.0f} s; held-out mask AP50 / AP75 / mAP per epoch: {}".format(
                name, seconds, ", ".join("{:.3f}/{:.3f}/{:.3f}".format(
                    e["val_AP50"], e["val_AP75"], e["val_mAP"]) for e in runs[name])),
                flush=True)
    print("\n| start | AP50 (last) | AP75 (last) | mAP (last) | best mAP (epoch) |")
    print("| --- | --- | --- | --- | --- |")
    for name, entries in runs.items():
        best = max(entries, key=lambda e: e["val_mAP"])
        print("| {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} ({}) |".format(
            name, entries[-1]["val_AP50"], entries[-1]["val_AP75"], entries[-1]["val_mAP"],
            best["val_mAP"], best["epoch"]))


if __name__ == "__main__":
    main()
