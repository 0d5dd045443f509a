#!/usr/bin/env python3
"""Mask R-CNN inference and training-step time: ours against torchvision (and matterport).

ResNet-50-FPN, CPU, one SIZE x SIZE image (batch 1) for inference, a batch of 2 for
the training step; 3 classes (background + 2), at most 100 detections (fewer for
equal work, see below), score threshold 0.7, the same thread count for every engine.

Each engine runs in its own persistent worker process, in its own Python
environment: ours (maskrcnnlib, Keras 3) in ours, torchvision's
maskrcnn_resnet50_fpn in a separate venv that this script creates when missing
(the product never imports torch), matterport's engine (its TF2 port, tf_keras)
in its environment when --matterport-path is given. Each worker builds its model
once and warms it up (reported apart); then the driver asks the engines in turn,
round after round (the order rotates), for one timed run each, and reports the
median and the minimum.

Ours and matterport load the SAME weights: parity_weights (seed 20181) generated
from our model's layout, the layout of matterport's .h5 files; so they do the
same work and find the same detections. torchvision keeps its own random
initialisation; by default (--torch-detections match) the background logit's bias
is shifted so that it finds as many detections as ours, and where its random heads
cannot reach ours' count, every engine is capped at the smaller count, so that all
run their mask heads and paste their masks for as many detections (equal work).
An explicit count (e.g. --torch-detections 68) shifts the bias toward it and keeps
the cap of 100 for every engine, whatever each then finds.

Prints a table and ends with `train_step ours/torchvision R`,
`inference ours/matterport R` (with --matterport-path) and, last,
`inference ours/torchvision R` (R < 1: ours is faster).

    python3 benchmarks/bench_model.py [--runs 5] [--threads 2] [--size 512]
        [--matterport-path /tmp/mrcnn-tf2 [--matterport-python /tmp/mpvenv/bin/python]]
        [--torch-venv DIR] [--torch-resize native|default] [--ours-plain] [--ours-bf16] [--ours-int8]
        [--skip-train] [--profile]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_TORCH_VENV = os.path.join(os.path.expanduser("~"), ".cache", "i.ann.maskrcnn",
                                  "bench-torch")
# Checked on the 2-core CPU machine: installs from the registry (about 5.5 GB with
# the CUDA libraries torch pulls in; it runs on the CPU). The CPU-only torch 2.13.0
# wheel is lighter, but no torchvision build for it loads its C++ ops (nms,
# roi_align) without torch's CUDA libraries.
TORCH_PACKAGES = "torch==2.14.1 torchvision==0.29.1"

sys.path.insert(0, HERE)
from _bench_common import MAX_DETECTIONS  # noqa: E402  (standard library only)


# ------------------------------------------------------------------ workers

class Worker:
    """One engine's worker process, answering one JSON request per line."""

    def __init__(self, name, python, script, args, threads, logdir):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [python, os.path.join(HERE, script), str(threads)] + [str(a) for a in args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO,
                env=env, text=True, bufsize=1)

    def request(self, cmd, **arguments):
        self.process.stdin.write(json.dumps({"cmd": cmd, **arguments}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("{} worker died during {!r}; its log {}:\n{}".format(
                self.name, cmd, self.log_path, self.log_tail()))
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise RuntimeError("{} worker failed in {!r}:\n{}".format(
                self.name, cmd, answer["error"]))
        return answer

    def log_tail(self, lines=30):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def venv_python(venv):
    return os.path.join(venv, "bin", "python")


def ensure_torch_venv(venv, packages):
    """The torch environment's python; the venv is created and filled when missing."""
    python = venv_python(venv)
    probe = [python, "-c", "import torch, torchvision.ops; torchvision.ops.nms"]
    if os.path.exists(python) and subprocess.run(
            probe, capture_output=True).returncode == 0:
        return python
    print("installing the torchvision peer into {} ({}; a few GB, a few minutes)".format(
        venv, packages), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(venv)), exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet"] + packages.split(),
                   check=True)
    subprocess.run(probe, check=True)
    return python


def default_ours_python():
    """The project's environment (tools/setup.sh), else the Python running this script."""
    venv = os.environ.get("MASKRCNN_VENV",
                          os.path.expanduser("~/.local/share/i.ann.maskrcnn/venv"))
    python = venv_python(venv)
    return python if os.path.exists(python) else sys.executable


# ---------------------------------------------------------------- measuring

def alternate(workers, cmd, runs):
    """{name: [seconds]}: each round asks every worker for one timed run, order rotating."""
    samples = {w.name: [] for w in workers}
    details = {}
    for round_ in range(runs):
        order = workers[round_ % len(workers):] + workers[:round_ % len(workers)]
        for worker in order:
            answer = worker.request(cmd, n=1)
            samples[worker.name].extend(answer["times"])
            details[worker.name] = answer
        print("  round {}/{}: {}".format(round_ + 1, runs, ", ".join(
            "{} {:.3f}s".format(w.name, samples[w.name][-1]) for w in workers)), flush=True)
    return samples, details


def ratio(samples, a, b):
    return statistics.median(samples[a]) / statistics.median(samples[b])


def compare_detections(ours, theirs):
    """Same detections? Each of ours matched to the closest box of theirs of its class."""
    n, m = len(ours["class_ids"]), len(theirs["class_ids"])
    if n != m:
        return "different counts ({} vs {})".format(n, m)
    if not n:
        return "both empty"
    same_classes = sorted(ours["class_ids"]) == sorted(theirs["class_ids"])
    box_diff, score_diff = 0, 0.0
    for box, class_id, score in zip(ours["rois"], ours["class_ids"], ours["scores"]):
        candidates = [(max(abs(p - q) for p, q in zip(box, other)), abs(score - s))
                      for other, c, s in zip(theirs["rois"], theirs["class_ids"],
                                             theirs["scores"]) if c == class_id]
        if candidates:
            best = min(candidates)
            box_diff, score_diff = max(box_diff, best[0]), max(score_diff, best[1])
    return ("{} detections each, class ids {}, max box diff {} px, max |score diff| {:.1e}"
            .format(n, "equal" if same_classes else "DIFFER", box_diff, score_diff))


def load_average():
    """The 1-, 5- and 15-minute load averages: other work on the machine shows here."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def busy_cpu_seconds():
    """CPU seconds all processes of the machine have used (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    """CPU seconds of this process and its finished children (workers, pip)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def cpu_model():
    """The CPU's model name, family and model numbers, and the instruction sets that
    decide our paths' speed (machines named alike differ: Zen 4 and Zen 5 EPYCs both
    say "AMD EPYC")."""
    fields, flags = {}, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    if not fields:
        return platform.processor() or "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")
    return "{} (family {}, model {}; {})".format(
        fields.get("model name", "?"), fields.get("cpu family", "?"), fields.get("model", "?"),
        " ".join(flag for flag in wanted if flag in flags) or "no AVX2")


# ------------------------------------------------------------------ output

def print_profile(profile):
    print("\nprofile of our inference, {} px (graph stage = fastest run of a cumulative "
          "graph prefix minus the previous prefix's; numpy stages: median):".format(ARGS.size))
    total = sum(ms for _, ms in profile["stages_ms"])
    for stage, ms in profile["stages_ms"]:
        print("  {:46s} {:8.1f} ms  {:5.1f}%".format(stage, ms, 100 * ms / total))
    print("  {:46s} {:8.1f} ms   (detect() measured whole: {:.1f} ms)".format(
        "sum", total, profile["detect_ms"]))
    print("  proposals {}, detections {}, traces of the detect function: {}".format(
        profile["proposals"], profile["detections"], profile["traces"]))
    ops = profile.get("ops")
    if ops:
        print("  TF op self time by type (% of all op time, TF profiler):")
        for kind, pct in ops["by_type"]:
            print("    {:40s} {:5.1f}%".format(kind, pct))
        print("  TF op self time by stage (% of all op time, from the layer in each op's name):")
        for stage, pct in ops["by_stage"]:
            print("    {:40s} {:5.1f}%".format(stage, pct))
        print("  heaviest ops:")
        for kind, name, pct in ops["top_ops"]:
            print("    {:5.1f}%  {:32s} {}".format(pct, kind, name))


def print_train_ops(ops):
    print("\nprofile of our training step (TF op self time, forward + backward + update):")
    print("  by stage: " + ", ".join("{} {:.1f}%".format(stage, pct)
                                   for stage, pct in ops["by_stage"] if pct >= 0.5))
    print("  by op type: " + ", ".join("{} {:.1f}%".format(kind, pct)
                                     for kind, pct in ops["by_type"][:8]))
    print("  heaviest ops:")
    for kind, name, pct in ops["top_ops"][:10]:
        print("    {:5.1f}%  {:40s} {}".format(pct, kind, name))


def print_table(title, rows, unit):
    print("\n" + title)
    header = "{:12s} {:>8s} {:>17s} {:>10s} {:>10s} {:>9s} {:>7s}  {}".format(
        "engine", "load s", "warm-up s", "median s", "min s", unit, "runs", "notes")
    print(header)
    print("-" * len(header))
    for row in rows:
        print("{:12s} {:8.1f} {:>17s} {:10.3f} {:10.3f} {:9.2f} {:7d}  {}".format(*row))


def start_engines(logdir, weights, torch_python):
    """Start and load every engine's worker: ([workers], {name: load answer}, cap).

    With --torch-detections match, torchvision's background bias is shifted toward
    ours' detection count; where the two counts still differ (its random heads may
    not reach ours'), every engine is capped at the smaller count, so that all run
    their mask heads on as many detections (equal work). cap: the detection cap
    every engine ran with.
    """
    workers, infos = [], {}

    def start(name, python, script, args, cap):
        worker = Worker(name, python, script, args, ARGS.threads, logdir)
        workers.append(worker)
        infos[name] = worker.request("load", cap=cap)
        info = infos[name]
        print("{}: loaded in {:.1f}s, warm-up {}, {} detections{}".format(
            name, info["load_s"], ["%.2f" % t for t in info["warmup_s"]],
            info["detections"], engine_remark(name, info)), flush=True)
        return worker

    cap = MAX_DETECTIONS
    try:
        ours = start("ours", ARGS.python, "worker_ours.py", [ARGS.size, weights], cap)
        target = {"match": infos["ours"]["detections"], "native": -1}.get(
            ARGS.torch_detections)
        target = int(ARGS.torch_detections) if target is None else target
        tv = start("torchvision", torch_python, "worker_torch.py",
                   [ARGS.size, target] + (["default"] if ARGS.torch_resize == "default"
                                          else []), cap)
        found = (infos["ours"]["detections"], infos["torchvision"]["detections"])
        if ARGS.torch_detections == "match" and found[0] != found[1]:
            cap = min(found)
            print("equal work: ours finds {}, torchvision {} at the cap of {}: every engine "
                  "is capped at {} detections".format(found[0], found[1], MAX_DETECTIONS,
                                                      cap), flush=True)
            if found[0] > cap:  # ours again, built with the cap
                workers.remove(ours)
                ours.close()
                ours = start("ours", ARGS.python, "worker_ours.py", [ARGS.size, weights], cap)
            if found[1] > cap:
                capped = tv.request("cap", cap=cap)
                infos["torchvision"].update(capped)
                print("torchvision: capped at {}, {} detections".format(
                    cap, capped["detections"]), flush=True)
            infos["ours"]["uncapped_detections"] = found[0]
            infos["torchvision"]["uncapped_detections"] = found[1]
        if ARGS.ours_plain:
            start("ours-plain", ARGS.python, "worker_ours.py", [ARGS.size, weights, "plain"],
                  cap)
        if ARGS.ours_bf16:
            start("ours-bf16", ARGS.python, "worker_ours.py", [ARGS.size, weights, "bfloat16"],
                  cap)
        if ARGS.ours_int8:
            start("ours-int8", ARGS.python, "worker_ours.py", [ARGS.size, weights, "int8"],
                  cap)
        if ARGS.matterport_path:
            start("matterport", ARGS.matterport_python, "worker_matterport.py",
                  [ARGS.size, weights, os.path.abspath(ARGS.matterport_path)], cap)
        # ours first and torchvision last, as measure() expects
        workers.sort(key=lambda w: (w is tv, w is not ours))
    except BaseException:
        for worker in workers:
            worker.close()
        raise
    return workers, infos, cap


def engine_remark(name, info):
    if name.startswith("ours"):
        return " ({} weight layers loaded; {})".format(
            info["weights_loaded"], "dense part under XLA, Winograd 3x3 convs"
            if info.get("compiled") else "plain graph")
    if name == "matterport":
        return " ({} weights checked equal to the file's)".format(info["weights_checked"])
    return " ({} with its random init as is; background bias shift {:+.3f})".format(
        info["native_detections"], info["background_bias_shift"])


def measure(workers):
    """Alternating inference rounds, then (unless --skip-train) training-step rounds."""
    found = {"train": None, "train_ops": None, "profile": None}
    ours, tv = workers[0], workers[-1]
    print("inference, {} rounds:".format(ARGS.runs), flush=True)
    found["infer"], found["infer_last"] = alternate(workers, "infer", ARGS.runs)
    if ARGS.profile:
        found["profile"] = ours.request("profile", n=ARGS.runs)
    if ARGS.skip_train:
        return found
    for worker in workers:
        if worker not in (ours, tv):
            worker.close()  # their memory back before the training models
    found["setups"] = {}
    for worker in (ours, tv):
        setup = found["setups"][worker.name] = worker.request("train_setup")
        print("{}: training step set up in {:.1f}s, warm-up {}, gt instances {}".format(
            worker.name, setup["setup_s"], ["%.2f" % t for t in setup["warmup_s"]],
            setup["gt_instances"]), flush=True)
    print("training step, batch 2, {} rounds:".format(ARGS.runs), flush=True)
    found["train"], found["train_last"] = alternate([ours, tv], "train", ARGS.runs)
    if ARGS.profile:
        found["train_ops"] = ours.request("train_profile")["ops"]
    return found


def report(infos, found, cap):
    """Tables, profiles and the comparison of ours with matterport's detections."""
    print("\nversions: " + "; ".join("{}: {}".format(name, ", ".join(
        "{} {}".format(k, v) for k, v in info["versions"].items()))
        for name, info in infos.items()))
    rows = []
    for name, times in found["infer"].items():
        info = infos[name]
        note = "{} detections".format(found["infer_last"][name]["detections"])
        if name == "torchvision" and info["target_detections"] >= 0:
            note += " (bias shifted toward {}; {} as initialised)".format(
                info["target_detections"], info["native_detections"])
        if "uncapped_detections" in info:
            note += " ({} at the cap of {})".format(info["uncapped_detections"],
                                                   MAX_DETECTIONS)
        rows.append((name, info["load_s"], "/".join("%.2f" % t for t in info["warmup_s"]),
                     statistics.median(times), min(times), 1.0 / statistics.median(times),
                     len(times), note))
    print_table("inference, {0}x{0} image, batch 1, {1} thread(s), CPU, at most {2} "
                "detections".format(ARGS.size, ARGS.threads, cap), rows, "img/s")
    if "matterport" in infos:
        print("ours vs matterport detections: " + compare_detections(
            infos["ours"]["result"], infos["matterport"]["result"]))
    if "ours-plain" in infos:
        print("ours vs ours-plain detections: " + compare_detections(
            infos["ours"]["result"], infos["ours-plain"]["result"]))
    for low in ("ours-bf16", "ours-int8"):
        if low in infos:
            print("ours vs {} detections: ".format(low) + compare_detections(
                infos["ours"]["result"], infos[low]["result"]))
    if found["profile"]:
        print_profile(found["profile"])
    if found["train"]:
        setups = found["setups"]
        rows = [(name, setups[name]["setup_s"],
                 "/".join("%.2f" % t for t in setups[name]["warmup_s"]),
                 statistics.median(times), min(times), 2.0 / statistics.median(times),
                 len(times), "loss {:.3f}".format(found["train_last"][name]["loss"]))
                for name, times in found["train"].items()]
        print_table("training step, batch 2 of {0}x{0}, all layers trainable, {1} thread(s)"
                    .format(ARGS.size, ARGS.threads), rows, "img/s")
    if found["train_ops"]:
        print_train_ops(found["train_ops"])


def main():
    start, busy_start, own_start = time.time(), busy_cpu_seconds(), own_cpu_seconds()
    logdir = tempfile.mkdtemp(prefix="bench-model-")
    weights = os.path.join(logdir, "parity_weights_seed20181.h5")
    print("bench_model: {} px, {} thread(s), {} rounds; CPU: {} ({} cores); load average {}; "
          "logs in {}".format(ARGS.size, ARGS.threads, ARGS.runs, cpu_model(), os.cpu_count(),
                              load_average(), logdir), flush=True)
    torch_python = ensure_torch_venv(ARGS.torch_venv, ARGS.torch_packages)
    try:
        workers, infos, cap = start_engines(logdir, weights, torch_python)
        try:
            found = measure(workers)
        finally:
            for worker in workers:
                worker.close()
    finally:
        if os.path.exists(weights):
            os.remove(weights)  # ~180 MB; the logs stay
    report(infos, found, cap)

    elapsed = time.time() - start
    busy_end = busy_cpu_seconds()
    if busy_start is not None and busy_end is not None:
        others = max(0.0, busy_end - busy_start - (own_cpu_seconds() - own_start))
        print("\n(bench_model took {:.0f} s; other processes used {:.0f} CPU-s meanwhile, "
              "{:.0f}% of the {} cores: above a few %, the figures are disturbed)".format(
                  elapsed, others, 100 * others / (elapsed * os.cpu_count()), os.cpu_count()))
    else:
        print("\n(bench_model took {:.0f} s)".format(elapsed))
    if found["train"]:
        print("train_step ours/torchvision {:.3f}".format(
            ratio(found["train"], "ours", "torchvision")))
    if "matterport" in found["infer"]:
        print("inference ours/matterport {:.3f}".format(
            ratio(found["infer"], "ours", "matterport")))
    if "ours-plain" in found["infer"]:
        print("inference ours/ours-plain {:.3f}".format(
            ratio(found["infer"], "ours", "ours-plain")))
    print("inference ours/torchvision {:.3f}".format(
        ratio(found["infer"], "ours", "torchvision")))
    for low in ("ours-bf16", "ours-int8"):
        if low not in found["infer"]:
            continue
        for peer in ("matterport", "torchvision", "ours"):
            if peer in found["infer"]:
                print("inference {}/{} {:.3f}".format(
                    low, peer, ratio(found["infer"], low, peer)))
    # A peer whose rounds spread widely (matterport's engine alternated between two
    # speeds on the Zen 5 EPYC) makes the ratio of medians depend on how many slow
    # rounds it had: the ratios of the minima are printed beside them.
    times = found["infer"]
    for name in sorted(times):
        spread = max(times[name]) / min(times[name])
        if spread > 1.5:
            print("note: {}'s rounds spread {:.2f}x (slowest/fastest); compare the ratios "
                  "of the minima".format(name, spread))
    for mine in ("ours", "ours-bf16", "ours-int8"):
        for peer in ("matterport", "torchvision"):
            if mine in times and peer in times:
                print("inference {}/{} ratio of the minima {:.3f}".format(
                    mine, peer, min(times[mine]) / min(times[peer])))


def add_environment_options(ap):
    """The engines' Python environments (also bench_train.py's options)."""
    ap.add_argument("--matterport-python", default="/tmp/mpvenv/bin/python",
                    help="python of matterport's environment (tensorflow + tf_keras)")
    ap.add_argument("--torch-venv", default=DEFAULT_TORCH_VENV,
                    help="venv of the torchvision peer, created when missing "
                         "(default %(default)s)")
    ap.add_argument("--torch-packages", default=TORCH_PACKAGES,
                    help="what pip installs into a new torch venv (%(default)s)")
    ap.add_argument("--python", default=default_ours_python(),
                    help="python of our environment (default: $MASKRCNN_VENV or "
                         "~/.local/share/i.ann.maskrcnn/venv, as tools/setup.sh makes it)")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed rounds per measurement (5)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads of every engine: TF intra/inter op, torch (2)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (512)")
    ap.add_argument("--matterport-path", default=None,
                    help="folder holding matterport's mrcnn/ package (its TF2 port); "
                         "measured only when given")
    add_environment_options(ap)
    ap.add_argument("--torch-detections", default="match",
                    help="'match' (shift torchvision's background bias to find as many "
                         "detections as ours, and cap every engine at the smaller count "
                         "where they still differ), 'native' (its random init as is), or "
                         "a count (bias shifted toward it, no common cap)")
    ap.add_argument("--torch-resize", choices=("native", "default"), default="native",
                    help="'native' (min_size = max_size = --size: torchvision works at the "
                         "image's size, as ours) or 'default' (its own resizing of the "
                         "shorter side to 800 px)")
    ap.add_argument("--ours-int8", action="store_true",
                    help="also time our detector with its dense part in int8 "
                         "(Detector(precision='int8'): ONNX Runtime, calibrated on the "
                         "benchmark image; heads in bfloat16 where the CPU has it) as "
                         "'ours-int8'")
    ap.add_argument("--ours-bf16", action="store_true",
                    help="also time our detector in bfloat16 (Detector(precision='bfloat16'), "
                         "the plain graph on oneDNN) as 'ours-bf16'")
    ap.add_argument("--ours-plain", action="store_true",
                    help="also time our plain graph (no XLA, no Winograd) as 'ours-plain'")
    ap.add_argument("--skip-train", action="store_true", help="no training-step timing")
    ap.add_argument("--profile", action="store_true",
                    help="also time our inference stage by stage")
    args = ap.parse_args()
    if args.size % 64:
        ap.error("--size must be a multiple of 64")
    if args.torch_detections not in ("match", "native") and not (
            args.torch_detections.isdigit()):
        ap.error("--torch-detections must be 'match', 'native' or a count")
    if args.runs < 1 or args.threads < 1:
        ap.error("--runs and --threads must be positive")
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    main()
