#!/usr/bin/env python3
"""Chips of a fixed grid against windows drawn at random, on real imagery, judged on
held-out blocks: i.ann.maskrcnn.train from scratch on one bundled real scene with
sampling=grid and with sampling=random, the same steps, seed and augmentation (by
default flip_rotate,radiometric in both, so only the sampling differs).

Both runs use -s with the same seed, so they hold out the same blocks of the chip grid
and are judged on the same grid chips inside them (the module's held-out mask AP50,
AP75 and mAP after every epoch). Grid sampling trains on the grid chips that touch no
held-out cell; random sampling draws a window of tile_size at a random position that
touches none at every step.

The scenes, the GRASS setup and the shared settings come from bench_pretrained.py,
whose scratch run is this benchmark's random run with the same arguments (--arms grid
runs only the grid one, to pair it with a bench_pretrained run). With --start, both
runs fine-tune a model with -e instead of starting from random weights; with the
stand-in that bench_pretrained trains (--keep-standin), the random run is
bench_pretrained's fine-tuned run.

    python3 benchmarks/bench_sampling.py [--target spacenet] [--steps 1050] [--epochs 7]
        [--seed 4] [--augment flip_rotate,radiometric] [--arms grid,random]
        [--start model.h5]
"""
import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_pretrained import (add_common_arguments, cpu_description, held_out_summary,  # noqa: E402
                              history, import_scenes, per_epoch, print_table, report,
                              start_grass, train)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, steps=1050)
    parser.add_argument("--arms", default="grid,random",
                        help="the sampling= values to run, in this order")
    parser.add_argument("--start", metavar="H5",
                        help="fine-tune this model (with -e) instead of training from scratch")
    args = parser.parse_args()
    arms = args.arms.split(",")
    if not arms or any(arm not in ("grid", "random") for arm in arms):
        parser.error("--arms takes grid and/or random")
    print("CPU: {}".format(cpu_description()))
    print("load average at start: {}".format(" ".join(
        "{:.2f}".format(value) for value in os.getloadavg())))
    print("settings: {} at tile {} (overlap {}), {} epochs, augment={}, {}; "
          "{} steps on {} for each sampling ({}); seed {}".format(
              args.backbone, args.tile_size, args.tile_size // 4, args.epochs, args.augment,
              "from {} (-e)".format(args.start) if args.start else "from scratch",
              args.steps, args.target, ", ".join(arms), args.seed), flush=True)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_sampling_") as folder:
        start_grass(folder)
        import_scenes()
        logs = os.path.join(folder, "logs")
        for arm in arms:
            start = {"model": args.start} if args.start else {}
            seconds, _ = train(args, args.target, *(("-e",) if start else ()), name=arm,
                               logs=logs, sampling=arm, **start,
                               steps_per_epoch=per_epoch(args.steps, args.epochs))
            label = "sampling={}".format(arm)
            runs[label] = (seconds, history(logs, arm, args.epochs))
            report(label, seconds, runs[label][1])
        print("held out on {}: {}".format(args.target, held_out_summary(logs)))
    print_table(runs)


if __name__ == "__main__":
    main()
