#!/usr/bin/env python3
"""The Winograd constants of model/winograd.py, measured on this CPU.

The detector's CPU path (model.inference.WinogradDense) computes a 3x3 stride-1 conv
by Winograd where the map has at least winograd.MIN_PIXELS cells, with F(6x6, 3x3)
on maps of at least LARGE_TILE_MIN_SIDE cells a side with LARGE_TILE_MIN_DEPTH input
channels or more, F(4x4, 3x3) elsewhere. Those thresholds were measured on one CPU;
this script measures, under XLA as the detector runs them (kernels transformed
beforehand, a batch of one), the direct convolution against F(4x4) and F(6x6) for
the maps around each threshold, alternating the three in every round, and prints
medians, the fastest per map and what the constants would be on this CPU.

    python3 benchmarks/bench_winograd.py [--runs 15] [--threads 2]

Run on a quiet machine with the project's environment (tools/setup.sh) first on
PATH; record the printed CPU with the figures (docs/benchmarks.md).
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from _bench_common import limit_threads  # noqa: E402
from bench_train import cpu_description  # noqa: E402

# (side, input channels, output channels, convs a round): the maps of a ResNet/FPN/RPN
# at 256 to 1024 molded pixels around the thresholds
CASES = [
    (8, 512, 512, 3), (16, 512, 512, 3), (32, 256, 256, 6),
    (64, 128, 128, 4), (64, 256, 512, 1), (96, 128, 128, 2), (96, 256, 256, 1),
    (128, 64, 64, 3), (128, 256, 256, 1), (128, 256, 512, 1), (256, 256, 256, 1),
]


def runners(side, depth, filters, convs):
    """{name: () -> None} running `convs` convs of one map each way under XLA."""
    import numpy as np
    import tensorflow as tf

    from maskrcnnlib.model import winograd

    rng = np.random.default_rng(side + depth)
    image = tf.constant(rng.normal(size=(1, side, side, depth)).astype("float32"))
    kernels = [tf.constant(rng.normal(size=(3, 3, depth, filters)).astype("float32") / 30)
               for _ in range(convs)]
    found = {}

    def direct(x):
        return [tf.nn.conv2d(x, k, 1, "SAME") for k in kernels]

    found["direct"] = tf.function(direct, jit_compile=True)
    for m in (4, 6):
        transformed = [tf.constant(winograd.transform_kernel(k, m)) for k in kernels]

        def by_winograd(x, m=m, transformed=transformed):
            return [winograd.winograd_conv3x3(x, k, m=m, transformed=u)
                    for k, u in zip(kernels, transformed)]

        found["F({0}x{0})".format(m)] = tf.function(by_winograd, jit_compile=True)
    for function in found.values():
        function(image)  # compile
    return {name: (lambda f=function: [t.numpy() for t in f(image)])
            for name, function in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    limit_threads(args.threads)
    from maskrcnnlib.model import winograd

    print("CPU: {}, {} threads, {} rounds".format(cpu_description(), args.threads, args.runs))
    print("{:>18} {:>9} {:>9} {:>9}  fastest  today's choice".format(
        "map (side, C->K, n)", "direct", "F(4x4)", "F(6x6)"))
    best = {}
    for side, depth, filters, convs in CASES:
        functions = runners(side, depth, filters, convs)
        times = {name: [] for name in functions}
        names = list(functions)
        for round_ in range(args.runs):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                start = time.perf_counter()
                functions[name]()
                times[name].append(time.perf_counter() - start)
        medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
        fastest = min(medians, key=medians.get)
        if side * side < winograd.MIN_PIXELS:
            today = "direct"
        else:
            today = "F({0}x{0})".format(winograd.tile_for(side, side, depth))
        best[(side, depth, filters)] = fastest
        print("{:>18} {:>9.2f} {:>9.2f} {:>9.2f}  {:<8} {}{}".format(
            "{0}x{0} {1}->{2} x{3}".format(side, depth, filters, convs), medians["direct"],
            medians["F(4x4)"], medians["F(6x6)"], fastest, today,
            "" if fastest == today else "  <- differs"))
    print("ms per round of n convs (medians). Where 'differs' is printed, the constants "
          "in model/winograd.py (MIN_PIXELS {}, LARGE_TILE_MIN_SIDE {}, LARGE_TILE_MIN_DEPTH "
          "{}) do not pick the fastest on this CPU.".format(
              winograd.MIN_PIXELS, winograd.LARGE_TILE_MIN_SIDE, winograd.LARGE_TILE_MIN_DEPTH))


if __name__ == "__main__":
    main()
