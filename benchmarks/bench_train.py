#!/usr/bin/env python3
"""Mask R-CNN training step on the CPU: ours against torchvision's and matterport's.

Three configurations (--configs; all by default):
  r50-256-b1   ResNet-50-FPN, 256 x 256, batch 1 (the 2018 defaults' scale)
  r50-512-b2   ResNet-50-FPN, 512 x 512, batch 2
  r18-128-b2   ResNet-18-FPN, 128 x 128, batch 2 (the README's demo)

Each engine runs in its own worker process and Python environment, as in
bench_model.py: ours (maskrcnnlib) in ours, torchvision in its venv (created when
missing), matterport's engine (its TF2 port on tf_keras, a patched temporary copy
of --matterport-path) in its environment; the product never imports them. Every
engine gets the same thread count (--threads) and the same work where the engines
allow: the same 1 or 2 synthetic scenes (tests/support/shapes.py drawn at the image
size, 3 to 6 objects each: the same gt instances), used at their size; 3 classes
(background + 2); 64 training ROIs per image (at most a third positive); 256 RPN
anchors per image; 2000 proposals after NMS; 28 x 28 masks; one anchor size per
FPN level, 32..512 at 512 px and scaled with the image (the objects are); frozen
batch norm; every layer trainable; SGD, learning rate 0.001, momentum 0.9, each
gradient clipped to norm 5, weight decay 1e-4. Ours and matterport load the same
weights (tests/fixtures/parity_weights.py, seed 20181, written by our worker from
our layout); torchvision keeps its seeded random initialisation, its batch-norm
statistics set from the scenes (worker_torch.calibrate_batch_norm).

What one timed step is, for each engine (wall seconds):
- ours: one step of trainer.fit() as i.ann.maskrcnn.train runs it
  (maskrcnnlib.train): the trainer built by model.training.build_trainer in the
  module's precision (default auto: bfloat16 on a CPU with AVX512_BF16 or AMX,
  float32 elsewhere; --precision float32 forces it) and compile_trainer'd in the CPU
  placement's strategy scope, set_trainable_stage "all", input through
  replica_datasets' pipeline (augmented_iterator + pipeline.training_dataset);
  timed by a callback from batch begin to batch end (Keras' train function: the
  next batch from the iterator, train_step, the loss trackers). The pipeline's one
  batch is made once and kept (cache), so its RPN anchor targets are not timed.
- matterport: keras_model.train_on_batch(batch) after its own set_trainable(".*")
  and compile() (its five loss layers and L2 term, SGD with clipnorm), on one batch
  that its data_generator made beforehand (RPN anchor targets in numpy, not timed);
  train_on_batch's conversion of the numpy batch to tensors is inside the step, as
  in its fit loop.
- torchvision: model(images, targets) in training mode, the summed losses'
  backward, clipping, optimizer step: its reference loop. Its forward includes its
  transform, RPN anchor matching and ROI sampling: the anchor matching is work that
  ours and matterport do in their input pipelines instead (the "input" note of each
  engine is its input preparation per batch, timed apart: ours replica_datasets'
  live pipeline, matterport its data_generator, torchvision the tensor conversion).
Differences of design that stay: matterport runs its mask head on all 64 ROI rows
(zero padded), ours and torchvision on the positive ROIs only; ours and matterport
sample three times the positives as ROIs (the rest is padding), torchvision fills
64 with negatives; torchvision keeps the top 2000 RPN scores per FPN level before
NMS, ours and matterport 6000 over all levels; matterport pads ground truth to its
MAX_GT_INSTANCES (100), ours to the batch's largest count.

matterport has no ResNet-18: for r18-128-b2 it gets one through its own
config.BACKBONE / COMPUTE_BACKBONE_SHAPE hooks (worker_matterport.resnet18_backbone:
our ResNet-18's layers and names, built from matterport's layers), so it loads the
same weights as ours.

Per configuration the workers start and warm up (reported apart), then --runs
rounds ask each engine for one timed step, the order rotating; the medians make the
ratios. Prints a table per configuration, then the CPU (lscpu's model name, AVX2
and AVX-512 flags), the thread counts, the median seconds per step of each engine
and, for each configuration, `train_step ours/matterport R` and
`train_step ours/torchvision R` (R < 1: ours is faster).

It takes about 5 minutes at --runs 5 on a quiet 2-core AMD EPYC with AVX-512 (2 of
them setting up and warming up the nine workers), 6 to 7 at --runs 11.

    python3 benchmarks/bench_train.py [--configs r50-256-b1,r50-512-b2,r18-128-b2]
        [--runs 7] [--threads N] [--quick] [--deterministic] [--precision P]
        [--matterport-path /tmp/mrcnn-tf2] [--matterport-python /tmp/mpvenv/bin/python]
        [--torch-venv DIR] [--python PY] [--engines ours,torchvision,matterport]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# the driver's machinery (standard library only): workers, rounds, load figures
from bench_model import (Worker, add_environment_options, alternate,  # noqa: E402
                         busy_cpu_seconds, cpu_model, ensure_torch_venv, load_average,
                         own_cpu_seconds, print_table)

# name: (backbone, image side in pixels, images per step, what it stands for)
CONFIGS = {
    "r50-256-b1": ("resnet50", 256, 1, "ResNet-50, 256x256, batch 1: the 2018 defaults' scale"),
    "r50-512-b2": ("resnet50", 512, 2, "ResNet-50, 512x512, batch 2"),
    "r18-128-b2": ("resnet18", 128, 2, "ResNet-18, 128x128, batch 2: the demo"),
}
ENGINES = ("ours", "torchvision", "matterport")


def anchor_scales(size):
    """One anchor size per FPN level (P2..P6): 32..512 at 512 px, scaled with the image."""
    return [max(1, scale * size // 512) for scale in (32, 64, 128, 256, 512)]


def cpu_description():
    """lscpu's model name, the CPU count and the AVX2 / AVX-512 flags."""
    name = None
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next((line.split(":", 1)[1].strip() for line in listing.splitlines()
                     if line.startswith("Model name:")), None)
    except OSError:
        pass
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), ":").split(
                ":", 1)[1].split())
    except OSError:
        pass
    avx512 = sorted(flag[6:].strip("_") for flag in flags if flag.startswith("avx512"))
    return "{} ({} CPUs; avx2 {}; avx512 {})".format(
        name or cpu_model(), os.cpu_count(), "yes" if "avx2" in flags else "no",
        "yes: " + " ".join(avx512) if avx512 else "no")


# ---------------------------------------------------------------- measuring

def start_workers(name, logdir, weights, torch_python):
    """The engines' workers of one configuration, set up and warmed up:
    ([workers], {engine: train_setup answer}). Ours first: it writes the weights."""
    backbone, size, batch, _ = CONFIGS[name]
    shared = {"batch": batch, "backbone": backbone, "anchor_scales": anchor_scales(size),
              "warmup": ARGS.warmup, "input_batches": ARGS.input_batches}
    plan = [
        ("ours", ARGS.python, "worker_ours.py", [size, weights],
         {"weights": weights, "deterministic": ARGS.deterministic,
          "precision": ARGS.precision}),
        ("torchvision", torch_python, "worker_torch.py", [size, -1], {}),
        ("matterport", ARGS.matterport_python, "worker_matterport.py",
         [size, weights, os.path.abspath(ARGS.matterport_path)], {"weights": weights}),
    ]
    workers, setups = [], {}
    try:
        for engine, python, script, args, own in plan:
            if engine not in ARGS.engines:
                continue
            worker = Worker(engine, python, script, args, ARGS.threads, logdir)
            workers.append(worker)
            setup = setups[engine] = worker.request("train_setup", **shared, **own)
            print("  {}: set up in {:.1f}s, warm-up steps {}, input {:.3f}s a batch, gt "
                  "instances {}{}".format(
                      engine, setup["setup_s"], ["%.2f" % t for t in setup["warmup_s"]],
                      setup["input_s"], setup["gt_instances"], weights_note(setup)),
                  flush=True)
    except BaseException:
        for worker in workers:
            worker.close()
        raise
    return workers, setups


def weights_note(setup):
    if setup.get("weights_loaded"):
        return "; {} weight layers loaded; precision {} ({})".format(
            setup["weights_loaded"], setup["precision"], setup["policy"])
    if setup.get("weights_checked"):
        return "; {} weights checked equal to ours".format(setup["weights_checked"])
    return ""


def measure(name, logdir, torch_python):
    """One configuration: {"setups", "times", "last"} (times: {engine: [seconds]})."""
    print("\n{}: {}".format(name, CONFIGS[name][3]), flush=True)
    os.makedirs(logdir, exist_ok=True)
    weights = os.path.join(logdir, "parity_weights.h5")
    try:
        workers, setups = start_workers(name, logdir, weights, torch_python)
        try:
            counts = {engine: setup["gt_instances"] for engine, setup in setups.items()}
            if len({str(c) for c in counts.values()}) > 1:
                print("  WARNING: the engines got different gt instances: {}".format(counts))
            print("  training step, {} rounds:".format(ARGS.runs), flush=True)
            times, last = alternate(workers, "train", ARGS.runs)
        finally:
            for worker in workers:
                worker.close()
    finally:
        if os.path.exists(weights):
            os.remove(weights)  # up to 180 MB; the logs stay
    return {"setups": setups, "times": times, "last": last}


# ------------------------------------------------------------------ output

def report(results, threads_line):
    """A table per configuration, and the engines' versions."""
    for name, found in results.items():
        batch = CONFIGS[name][2]
        rows = []
        for engine, times in found["times"].items():
            setup = found["setups"][engine]
            rows.append((engine, setup["setup_s"],
                         "/".join("%.2f" % t for t in setup["warmup_s"]),
                         statistics.median(times), min(times),
                         batch / statistics.median(times), len(times),
                         "input {:.3f} s/batch; loss {:.3f}".format(
                             setup["input_s"], found["last"][engine]["loss"])))
        print_table("training step {}: {}; threads {} (load s: the worker's setup)".format(
            name, CONFIGS[name][3], threads_line), rows, "img/s")
    versions = {engine: setup.get("versions", {}) for found in results.values()
                for engine, setup in found["setups"].items()}
    print("\nversions: " + "; ".join("{}: {}".format(engine, ", ".join(
        "{} {}".format(k, v) for k, v in packages.items()))
        for engine, packages in versions.items()))


def summary(results, threads_line):
    """The CPU, the threads, each engine's median seconds per step and the ratios."""
    print("\nCPU: " + cpu_description())
    print("threads: " + threads_line)
    medians = {name: {engine: statistics.median(times)
                      for engine, times in found["times"].items()}
               for name, found in results.items()}
    for name, seconds in medians.items():
        print("{} ({}): median s per step: {}".format(name, CONFIGS[name][3], ", ".join(
            "{} {:.3f}".format(engine, s) for engine, s in seconds.items())))
    for name, seconds in medians.items():
        for peer in ("matterport", "torchvision"):
            if peer in seconds:
                print("train_step ours/{} {:.3f}  {}".format(
                    peer, seconds["ours"] / seconds[peer], name))


def main():
    start, busy_start, own_start = time.time(), busy_cpu_seconds(), own_cpu_seconds()
    logdir = tempfile.mkdtemp(prefix="bench-train-")
    threads_line = ("{0} per engine (TF intra-op and inter-op {0}, torch {0} and interop "
                    "{0}){1}; ours' precision {2}".format(
                        ARGS.threads, "; ours with TF op determinism"
                        if ARGS.deterministic else "", ARGS.precision or "the default"))
    print("bench_train: {}; CPU: {}; {} rounds; load average {}; logs in {}".format(
        ", ".join(ARGS.configs), cpu_description(), ARGS.runs, load_average(), logdir),
        flush=True)
    torch_python = ensure_torch_venv(ARGS.torch_venv, ARGS.torch_packages) \
        if "torchvision" in ARGS.engines else None
    results = {name: measure(name, os.path.join(logdir, name), torch_python)
               for name in ARGS.configs}
    report(results, threads_line)
    elapsed = time.time() - start
    busy_end = busy_cpu_seconds()
    others = None if busy_start is None or busy_end is None else max(
        0.0, busy_end - busy_start - (own_cpu_seconds() - own_start))
    share = None if others is None else 100 * others / (elapsed * os.cpu_count())
    print("\n(bench_train took {:.0f} s{}{})".format(elapsed, "" if others is None else (
        "; other processes used {:.0f} CPU-s meanwhile, {:.0f}% of the {} CPUs".format(
            others, share, os.cpu_count())),
        ": the figures are disturbed" if share is not None and share > 5 else ""))
    summary(results, threads_line)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help="comma-separated configurations, of: " + ", ".join(CONFIGS))
    ap.add_argument("--runs", type=int, default=7,
                    help="timed rounds per configuration, one step per engine each (7)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="threads of every engine (default: the CPUs this process may "
                         "use, %(default)s)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 rounds, 1 warm-up step, 2 input batches")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per engine (2)")
    ap.add_argument("--input-batches", type=int, default=8,
                    help="batches of each engine's input preparation timed (8)")
    ap.add_argument("--deterministic", action="store_true",
                    help="ours with TF op determinism, as i.ann.maskrcnn.train with seed=")
    ap.add_argument("--precision", choices=("auto", "float32", "mixed"), default=None,
                    help="ours' precision (default: the module's, auto: bfloat16 on CPUs "
                         "with AVX512_BF16 or AMX, float32 elsewhere)")
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help="comma-separated engines; ours is always measured")
    ap.add_argument("--matterport-path", default="/tmp/mrcnn-tf2",
                    help="folder holding matterport's mrcnn/ package (its TF2 port; "
                         "tests/fixtures/matterport/README.md)")
    add_environment_options(ap)
    args = ap.parse_args()
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown or not args.configs:
        ap.error("unknown configuration(s) {}; choose from {}".format(
            ", ".join(unknown), ", ".join(CONFIGS)))
    args.engines = {"ours"} | {e for e in args.engines.split(",") if e}
    if args.engines - set(ENGINES):
        ap.error("unknown engine(s): " + ", ".join(sorted(args.engines - set(ENGINES))))
    if args.quick:
        args.runs, args.warmup, args.input_batches = 2, 1, 2
    if args.runs < 1 or args.threads < 1 or args.warmup < 1 or args.input_batches < 1:
        ap.error("--runs, --threads, --warmup and --input-batches must be positive")
    if "matterport" in args.engines and not os.path.isdir(
            os.path.join(args.matterport_path, "mrcnn")):
        ap.error("no mrcnn/ in --matterport-path {} (see tests/fixtures/matterport/"
                 "README.md), or leave matterport out with --engines "
                 "ours,torchvision".format(args.matterport_path))
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    main()
