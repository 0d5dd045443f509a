#!/usr/bin/env python3
"""Training and detection throughput per replica count (tf.distribute), and scaling
efficiency = throughput(n) / (n x throughput(1)).

Replicas are the visible GPUs when there are at least --replicas of them (--devices
gpu), otherwise logical devices the CPU is split into (--devices cpu, the default
without GPUs). On logical CPU devices all replicas share the same cores, so the
ideal there is efficiency 1/n (the same images/s at every n): the figure then
measures what distribution costs, not what it gains. On GPUs the ideal is 1.

Each replica count runs in its own process (devices are set before TensorFlow
starts), trains --steps timed steps after --warmup steps (ResNet-50-FPN,
--images-per-replica images of --size pixels per replica, frozen batch
normalization, random weights), then detects in --tiles tiles (the same seeded
random weights at every replica count).
The last line is `training efficiency at N replicas: E`.

    python3 benchmarks/bench_scaling.py [--replicas 2] [--size 256] [--steps 5]
        [--warmup 2] [--images-per-replica 1] [--tiles 8] [--devices cpu|gpu]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(args):
    """One replica count: prints a JSON line with images/s of training and detection."""
    sys.path.insert(0, REPO)
    sys.path.insert(0, os.path.join(REPO, "tests"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from maskrcnnlib import distribute

    if args.devices == "cpu":
        devices = distribute.split_cpu(args.max_replicas)[:args.count]
    else:
        devices = ["/gpu:{}".format(i) for i in range(args.count)]
        distribute.allow_memory_growth()
    import numpy as np

    from maskrcnnlib.config import Config
    from maskrcnnlib.dataset.directory import ArrayDataset
    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.model.training import make_optimizer
    from maskrcnnlib.train import _build_trainer, replica_datasets
    from support.shapes import shapes_scene

    config = Config(num_classes=3, class_names=["square", "disk"], backbone="resnet50",
                    image_min_dim=args.size, image_max_dim=args.size,
                    images_per_gpu=args.images_per_replica, train_bn=False).validate()
    rng = np.random.default_rng(1)
    scenes = [shapes_scene(rng, size=args.size, count=(3, 6),
                           radius=(args.size // 32, args.size // 12)) for _ in range(8)]

    scenes = ArrayDataset(scenes, classes=["square", "disk"])

    placement = distribute.Placement(distribute.strategy_for_devices(devices), args.count,
                                     "bench", devices=devices)
    with placement.strategy.scope():
        trainer = _build_trainer(config, 1, placement)
        trainer.compile(optimizer=make_optimizer(config), jit_compile=False)
    dataset = replica_datasets(placement.strategy, scenes, config, 1, False)
    trainer.fit(dataset, epochs=1, steps_per_epoch=args.warmup, verbose=0)
    started = time.perf_counter()
    trainer.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
    train_seconds = time.perf_counter() - started
    train_images = args.steps * args.images_per_replica * args.count

    # the same weights at every replica count (what is found drives the mask work)
    import tempfile

    import keras

    keras.utils.set_random_seed(1)
    weights = os.path.join(tempfile.mkdtemp(), "detector.h5")
    Detector(config).save_weights(weights)
    detector = Detector(config, devices=devices)
    detector.load_weights(weights)
    batch = [scenes.load(i % len(scenes))[0]
             for i in range(args.count * args.images_per_replica)]
    detector.detect(batch)  # warm-up
    started, done = time.perf_counter(), 0
    while done < args.tiles:
        detector.detect(batch)
        done += len(batch)
    detect_seconds = time.perf_counter() - started
    print(json.dumps({"replicas": args.count, "devices": devices,
                      "train_images_per_s": train_images / train_seconds,
                      "detect_images_per_s": done / detect_seconds}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--images-per-replica", type=int, default=1)
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--devices", choices=("cpu", "gpu"), default=None)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.devices is None:
        gpus = subprocess.run(
            [sys.executable, "-c", "import tensorflow as tf; "
             "print(len(tf.config.list_physical_devices('GPU')))"],
            capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        count = int(gpus.stdout.strip().splitlines()[-1]) if gpus.returncode == 0 else 0
        args.devices = "gpu" if count >= args.replicas else "cpu"
    if args.worker is not None:
        args.count, args.max_replicas = args.worker, args.replicas
        return worker(args)

    results = []
    for count in range(1, args.replicas + 1):
        command = [sys.executable, os.path.abspath(__file__), "--worker", str(count)] + [
            "--{}={}".format(k.replace("_", "-"), v) for k, v in vars(args).items()
            if k not in ("worker",)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit("replicas={}: {}".format(count, run.stderr[-2000:]))
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print("{} ({} cores), {} devices, ResNet-50-FPN {}x{}, {} image(s) per replica"
          .format(platform.processor() or platform.machine(), os.cpu_count(),
                  args.devices.upper(), args.size, args.size, args.images_per_replica))
    print("{:>8} {:>16} {:>10} {:>16} {:>10}".format(
        "replicas", "train images/s", "efficiency", "detect images/s", "efficiency"))
    first = results[0]
    for result in results:
        n = result["replicas"]
        result["train_efficiency"] = result["train_images_per_s"] / (
            n * first["train_images_per_s"])
        result["detect_efficiency"] = result["detect_images_per_s"] / (
            n * first["detect_images_per_s"])
        print("{:>8} {:>16.3f} {:>10.2f} {:>16.3f} {:>10.2f}".format(
            n, result["train_images_per_s"], result["train_efficiency"],
            result["detect_images_per_s"], result["detect_efficiency"]))
    last = results[-1]
    print("detection efficiency at {} replicas: {:.2f}".format(
        last["replicas"], last["detect_efficiency"]))
    print("training efficiency at {} replicas: {:.2f}".format(
        last["replicas"], last["train_efficiency"]))


if __name__ == "__main__":
    main()
