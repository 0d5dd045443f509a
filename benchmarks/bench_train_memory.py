#!/usr/bin/env python3
"""Peak memory of i.ann.maskrcnn.train against the size of the training area.

The module trains, as users run it, in a temporary XY project from GRASS maps: a
synthetic 3-band scene (squares and disks on an 80-cell grid, noise between them; the
scene of bench_detect.py) and its objects as vector areas (r.to.vect of the objects,
class in column value), over training areas of base x base cells, 2x and 4x the side
(1x, 4x and 16x the cells). Each run: ResNet-18, tile 128, -s (held-out blocks),
sampling=random, a few steps. Measured per run: wall time and the peak resident memory
of the module's process (ru_maxrss of the waited-for children of a wrapper: the largest
process of its tree). Printed: per size the median over the repeats, and the peak of
each size over the base size's (goal: 16x area within 1.3x).

--module runs other copies of the module too (e.g. a checkout of an earlier version),
alternating with this one at every size and repeat; --memory passes memory= (MB the
training area may take in memory) where the module has that option.

    python3 benchmarks/bench_train_memory.py [--base 1280] [--repeats 1] [--steps 4]
        [--module other/i.ann.maskrcnn.train/i.ann.maskrcnn.train.py] [--memory 300]

Run with the project's environment (tools/setup.sh) first on PATH.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from bench_detect import HALF, RADIUS, SPACING, WRAPPER, make_scene, start_grass  # noqa: E402
from bench_train import cpu_description  # noqa: E402

TRAIN = os.path.join(ROOT, "i.ann.maskrcnn.train", "i.ann.maskrcnn.train.py")


def make_objects(size):
    """Vector areas of the scene's objects (column value: 1 squares, 2 disks)."""
    import grass.script as gs

    r = "((row() - 1) % {s} - {h})".format(s=SPACING, h=HALF)
    c = "((col() - 1) % {s} - {h})".format(s=SPACING, h=HALF)
    kind = "((int((row() - 1) / {s}) + int((col() - 1) / {s})) % 2)".format(s=SPACING)
    raster, vector = "objects{}".format(size), "objects{}_areas".format(size)
    gs.mapcalc("{o} = if({k} == 0 && abs({r}) <= {R} && abs({c}) <= {R}, 1, "
               "if({k} == 1 && {r} * {r} + {c} * {c} <= {R2}, 2, null()))".format(
                   o=raster, k=kind, r=r, c=c, R=RADIUS, R2=RADIUS * RADIUS),
               overwrite=True, quiet=True)
    gs.run_command("r.to.vect", input=raster, output=vector, type="area", quiet=True,
                   overwrite=True)
    return vector


def has_option(module, key):
    text = subprocess.run([sys.executable, module, "--interface-description"],
                          capture_output=True, text=True).stdout
    return 'name="{}"'.format(key) in text


def run(module, bands, vector, logs, args, memory):
    command = [sys.executable, module, "-s", "--overwrite", "input=" + ",".join(bands),
               "training_map=" + vector, "class_column=value", "classes=1,2",
               "logs=" + logs, "name=bench", "backbone=resnet18", "tile_size=128",
               "overlap=32", "epochs=1", "steps_per_epoch={}".format(args.steps),
               "validation_steps=2", "rois_per_image=32", "sampling=random", "seed=1",
               "keep=0"]
    if memory is not None:
        command.append("memory={}".format(memory))
    log = os.path.join(logs, "module.log")
    os.makedirs(logs, exist_ok=True)
    out = subprocess.run([sys.executable, "-c", WRAPPER, log] + command, capture_output=True,
                         text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["rc"]:
        with open(log) as stream:
            raise SystemExit("{} failed:\n{}".format(" ".join(command), stream.read()[-3000:]))
    with open(log) as stream:
        result["streamed"] = "a window at a time" in stream.read()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=1280, help="side of the base area (cells)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--module", action="append", default=[],
                        help="another copy of i.ann.maskrcnn.train.py to alternate with")
    parser.add_argument("--memory", type=int, default=None,
                        help="memory= (MB) for the modules that have it")
    args = parser.parse_args()
    modules = [TRAIN] + [os.path.abspath(m) for m in args.module]
    sizes = [args.base, 2 * args.base, 4 * args.base]
    print("CPU: {}".format(cpu_description()))
    print("settings: areas {} cells square; ResNet-18, tile 128, overlap 32, -s, "
          "sampling=random, {} steps; {} repeat(s); memory={}".format(
              ", ".join(str(s) for s in sizes), args.steps, args.repeats,
              args.memory if args.memory is not None else "(the module's default)"),
          flush=True)
    peaks = {(m, s): [] for m in modules for s in sizes}
    seconds = {(m, s): [] for m in modules for s in sizes}
    streamed = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_memory_") as folder:
        start_grass(folder)
        import grass.script as gs

        scenes = {}
        for size in sizes:
            started = time.monotonic()
            bands = make_scene(size)  # also sets the region to the scene
            scenes[size] = (bands, make_objects(size))
            print("scene {0} x {0}: {1:.0f} s".format(size, time.monotonic() - started),
                  flush=True)
        memory_option = {m: has_option(m, "memory") for m in modules}
        for repeat in range(args.repeats):
            for size in sizes:
                gs.run_command("g.region", raster=scenes[size][0][0])
                for number, module in enumerate(modules):
                    memory = args.memory if memory_option[module] else None
                    logs = os.path.join(folder, "logs{}_{}".format(number, size))
                    result = run(module, *scenes[size], logs, args, memory)
                    peaks[module, size].append(result["peak_kib"] / 1024.0)
                    seconds[module, size].append(result["seconds"])
                    streamed[module, size] = result["streamed"]
                    print("module {} area {}: {:.0f} MB peak, {:.0f} s{}".format(
                        number, size, result["peak_kib"] / 1024.0, result["seconds"],
                        ", area read from disk" if result["streamed"] else ""), flush=True)
    print("\n| module | area (cells) | area rasters (MB) | read from disk | peak RSS (MB, "
          "median) | / base | time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for number, module in enumerate(modules):
        base = statistics.median(peaks[module, sizes[0]])
        for size in sizes:
            peak = statistics.median(peaks[module, size])
            print("| {} | {} x {} ({}x) | {:.0f} | {} | {:.0f} | {:.2f} | {:.0f} |".format(
                number, size, size, (size // sizes[0]) ** 2, size * size * 16 / 2 ** 20,
                "yes" if streamed[module, size] else "no", peak, peak / base,
                statistics.median(seconds[module, size])))
    for number, module in enumerate(modules):
        print("module {}: {}".format(number, module))


if __name__ == "__main__":
    main()
