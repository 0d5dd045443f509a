#!/usr/bin/env python3
"""The dense part of our Mask R-CNN (backbone + FPN + RPN) on maintained CPU engines
against the hand path: issue 20, item 1.

For each square size and backbone (molded input [1, S, S, 3], the fixed-seed weights
of tests/fixtures/parity_weights), one process per path, asked in turn round after
round (order rotating) for one timed call each; the dense paths are measured as one
group, then the detect paths as another (fewer processes alive at once):

  tf-plain     the dense part as a plain TensorFlow graph (no XLA)
  tf-xla       the same compiled by XLA, direct convolutions
  tf-winograd  what Detector runs on a CPU today (XLA + Winograd on kernels
               transformed once; its per-call staleness check included)
  openvino     OpenVINO's CPU plugin, float32, on the dense part converted from the
               TensorFlow graph frozen to constants
  onnxruntime  ONNX Runtime's CPU provider on the dense part exported by tf2onnx
  openvino-bf16  (only when asked for) OpenVINO with bfloat16 inference where the
               CPU has it: not for the product without the mask AP test of issue 20
  detect       the whole Detector.detect() of the benchmark image, current path
  detect-openvino, detect-onnxruntime
               detect() with that engine's dense part, the current heads in
               TensorFlow (molding and unmolding as in Detector)

each with the same thread count. Printed per configuration: the table (start-up of
a fresh process: from its start to its first result; the first and second calls;
median and minimum of the timed calls; ratio of the medians to tf-winograd's, or
to detect()'s for the detect paths; peak RSS of the process), the largest
differences of every path's outputs from the plain graph's, and the detections the
current heads find on every path's dense outputs, and the detect-* paths, against
detect()'s own (boxes, classes, scores). The lines "detect() with X's dense part
(estimate)" are detect()'s median minus tf-winograd's plus X's.

Environments: the TensorFlow paths run in the project's venv (tools/setup.sh). The
engines run in their own venv, ~/.cache/i.ann.maskrcnn/bench-engines, made by this
script when missing: `python3 -m venv` of the system Python the project's venv was
made from, `pip install ENGINE_PACKAGES`, and a .pth file naming the project venv's
site-packages, so that the export step (TensorFlow, tf2onnx, OpenVINO's converter)
sees TensorFlow and the project's packages, while the engine workers never import
TensorFlow. The product never imports these engines.

    python3 benchmarks/bench_engines.py [--backbones resnet50,resnet101]
        [--sizes 512,1024] [--paths tf-plain,tf-xla,tf-winograd,openvino,onnxruntime,detect]
        [--runs 5] [--threads 2] [--engines-venv DIR] [--workdir DIR]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_model import (Worker, busy_cpu_seconds, compare_detections,  # noqa: E402
                         default_ours_python, load_average, venv_python)

DEFAULT_ENGINES_VENV = os.path.join(os.path.expanduser("~"), ".cache", "i.ann.maskrcnn",
                                    "bench-engines")
# Checked on the 2-core EPYC machine (Python 3.11, TensorFlow 2.21, protobuf 7, numpy 2.4)
ENGINE_PACKAGES = "openvino==2026.4.1 onnxruntime==1.32.0 onnx==1.23.2 tf2onnx==1.17.0"
PATHS = ("tf-plain", "tf-xla", "tf-winograd", "openvino", "onnxruntime", "detect",
         "detect-openvino", "detect-onnxruntime")
OPTIONAL_PATHS = ("openvino-bf16",)
ENGINE_PATHS = ("openvino", "onnxruntime")
BASE = "tf-winograd"  # the current path's dense part
DETECT_BASE = "detect"  # the current path's whole detect()


def engine_of(path):
    """The maintained engine a path runs on, or None (TensorFlow only)."""
    name = path[len("detect-"):] if path.startswith("detect-") else path
    name = name[:-len("-bf16")] if name.endswith("-bf16") else name
    return name if name in ENGINE_PATHS else None


def ensure_engines_venv(venv, ours_python):
    """The engines venv's python, made when missing (see the module docstring)."""
    python = venv_python(venv)
    probe = [python, "-c", "import openvino, onnxruntime, tf2onnx, tensorflow"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    base = subprocess.run([ours_python, "-c", "import sys; print(sys._base_executable)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    site = subprocess.run([ours_python, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    print("making the engines venv {} ({}, seeing {})".format(venv, ENGINE_PACKAGES, site),
          flush=True)
    subprocess.run([base, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet"] + ENGINE_PACKAGES.split(),
                   check=True)
    own_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(own_site, "_maskrcnn_project_venv.pth"), "w") as f:
        f.write(site + "\n")
    subprocess.run(probe, check=True)
    return python


def lscpu_model():
    """lscpu's model name and the vector extensions the CPU has."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    extensions = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                              "amx_bf16", "amx_int8") if f in flags]
    return "{} (family {}, model {}; {} CPUs listed; {})".format(
        fields.get("Model name", "?").strip(), fields.get("CPU family", "?").strip(),
        fields.get("Model", "?").strip(), fields.get("CPU(s)", "?").strip(),
        ", ".join(extensions) or "no AVX2")


def code_state():
    """The commit measured, and the files of maskrcnnlib changed beside it."""
    repo = os.path.dirname(HERE)
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "-C", repo, "diff", "--name-only", "HEAD", "--",
                                  "maskrcnnlib"], capture_output=True, text=True).stdout.split()
    except OSError:
        return "unknown"
    return "commit {}{}".format(commit, ", maskrcnnlib changed in the work tree: "
                                + " ".join(changed) if changed else "")


def process_cpu_seconds(pid):
    """utime + stime of a live process (/proc/PID/stat), 0 when gone."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def output_differences(reference, path):
    """Largest |difference| from the plain graph's outputs: (pyramid, rpn_class, rpn_bbox)."""
    import numpy as np

    with np.load(reference) as ref, np.load(path) as got:
        diffs = [float(np.max(np.abs(ref[k].astype("float64") - got[k]))) for k in ref.files]
    return max(diffs[:-2]), diffs[-2], diffs[-1]


def alternate(workers, runs, pause=0.2):
    """{name: [seconds]}, {name: last answer}: each round asks every worker for one
    timed call, the order rotating. A pause before each call lets the previous
    engine's worker threads stop spinning (ONNX Runtime's and OpenVINO's wait
    actively for a while after a call), so they do not slow the next path."""
    samples = {w.name: [] for w in workers}
    details = {}
    for round_ in range(runs):
        order = workers[round_ % len(workers):] + workers[:round_ % len(workers)]
        for worker in order:
            time.sleep(pause)
            answer = worker.request("infer", n=1)
            samples[worker.name].extend(answer["times"])
            details[worker.name] = answer
        print("  round {}/{}: {}".format(round_ + 1, runs, ", ".join(
            "{} {:.3f}s".format(w.name, samples[w.name][-1]) for w in workers)), flush=True)
    return samples, details


def check_parity(workers, folder, reference, parity):
    """Fills parity[path]: a dense path's largest differences from the plain graph's
    outputs (its outputs saved beside them); with the detect worker, the detections
    of the current heads on every saved dense output and every detect-* path's own,
    each against detect()'s."""
    for worker in workers:
        if not worker.name.startswith("detect"):
            saved = os.path.join(folder, "out_{}.npz".format(worker.name))
            worker.request("outputs", path=saved)
            parity[worker.name] = {"diffs": output_differences(reference, saved),
                                   "saved": saved}
    current = [w for w in workers if w.name == DETECT_BASE]
    if not current:
        return
    own = current[0].request("outputs", path="")["detections"]
    for name, item in parity.items():
        if "saved" in item:
            theirs = current[0].request("heads_from", path=item["saved"])
            item["detections"] = compare_detections(own, theirs)
    for worker in workers:
        if worker.name.startswith("detect-"):
            theirs = worker.request("outputs", path="")["detections"]
            parity[worker.name] = {"diffs": (float("nan"),) * 3,
                                   "detections": compare_detections(own, theirs)}


def run_configuration(backbone, size, args, ours_python, engines_python, workdir):
    folder = os.path.join(workdir, "{}_{}".format(backbone, size))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "settings.json"), "w") as f:
        json.dump({"backbone": backbone, "size": size}, f)
    print("\n=== {} at {}x{} ===".format(backbone, size, size), flush=True)
    start = time.perf_counter()
    with open(os.path.join(folder, "export.log"), "w") as log:
        subprocess.run([engines_python, os.path.join(HERE, "worker_engines.py"),
                        str(args.threads), "export", folder], stdout=log, stderr=log,
                       check=True)
    with open(os.path.join(folder, "export.json")) as f:
        exported = json.load(f)
    print("export in {:.1f}s (weights, reference outputs {}):".format(
        time.perf_counter() - start, ", ".join(exported["outputs"])))
    for name in ("onnx", "openvino", "openvino_onnx"):
        item = exported.get(name)
        if item:
            print("  {:14s} {}".format(name, "converted in {:.1f}s".format(item["seconds"])
                                       if item["ok"] else "FAILED: " + item["error"]))
    converted = {"onnxruntime": exported["onnx"]["ok"], "openvino": exported["openvino"]["ok"]}
    paths = [p for p in args.paths if converted.get(engine_of(p), True)]

    reference = os.path.join(folder, "reference.npz")
    loads, parity, samples, details, others = {}, {}, {}, {}, []
    # two groups one after the other, each alternating within itself: the dense
    # paths, then the detect paths (fewer processes alive at once: memory)
    groups = [[p for p in paths if not p.startswith("detect")],
              [p for p in paths if p.startswith("detect")]]
    for group in (g for g in groups if g):
        workers = []
        try:
            for name in group:  # one at a time: each start-up alone
                python = engines_python if engine_of(name) else ours_python
                begun = time.time()
                worker = Worker(name, python, "worker_engines.py", [name, folder],
                                args.threads, folder)
                workers.append(worker)
                loads[name] = worker.request("load")
                # from starting the process to its first result (not the second call)
                loads[name]["startup_s"] = loads[name]["first_result_at"] - begun
                print("{}: fresh process to first result {:.1f}s (first call {:.2f}s, "
                      "second {:.2f}s), peak RSS {:.0f} MiB".format(
                          name, loads[name]["startup_s"], loads[name]["first_s"],
                          loads[name]["second_s"], loads[name]["peak_rss_mib"]), flush=True)
            check_parity(workers, folder, reference, parity)
            before = {w.name: process_cpu_seconds(w.process.pid) for w in workers}
            busy_start, wall_start = busy_cpu_seconds(), time.time()
            got, answers = alternate(workers, args.runs)
            samples.update(got)
            details.update(answers)
            busy_end = busy_cpu_seconds()
            ours_cpu = sum(process_cpu_seconds(w.process.pid) - before[w.name]
                           for w in workers)
            if busy_start is not None and busy_end is not None:
                others.append(max(0.0, busy_end - busy_start - ours_cpu)
                              / (time.time() - wall_start))
        finally:
            for worker in workers:
                worker.close()
    print("largest |difference| from the plain graph's outputs (P2..P6, rpn_class, "
          "rpn_bbox), and detect()'s heads on those outputs against detect():")
    for name, item in parity.items():
        diffs = ("{:.1e} {:.1e} {:.1e}".format(*item["diffs"])
                 if not name.startswith("detect") else "(its own detections)  ")
        print("  {:18s} {}   {}".format(name, diffs, item.get("detections", "")))

    medians = {name: statistics.median(v) for name, v in samples.items()}
    base = medians.get(BASE)
    print("\n{} at {}x{}, {} threads, {} timed calls each, alternating within the dense "
          "and the detect paths".format(backbone, size, size, args.threads, args.runs))
    header = "{:18s} {:>10s} {:>9s} {:>9s} {:>9s} {:>9s} {:>12s} {:>10s}".format(
        "path", "start-up s", "1st s", "median s", "min s", "/current", "peak RSS MiB",
        "RSS MiB")
    print(header)
    print("-" * len(header))
    rows = []
    for name in paths:
        against = medians.get(DETECT_BASE if name.startswith("detect") else BASE)
        ratio = medians[name] / against if against else float("nan")
        row = {"path": name, "startup_s": loads[name]["startup_s"],
               "first_s": loads[name]["first_s"], "median_s": medians[name],
               "min_s": min(samples[name]), "ratio": ratio,
               "peak_rss_mib": details[name]["peak_rss_mib"],
               "rss_mib": details[name]["rss_mib"]}
        rows.append(row)
        print("{path:18s} {startup_s:10.1f} {first_s:9.2f} {median_s:9.3f} {min_s:9.3f} "
              "{ratio:9.3f} {peak_rss_mib:12.0f} {rss_mib:10.0f}".format(**row))
    if base and "detect" in medians:
        for name in ENGINE_PATHS + OPTIONAL_PATHS + ("tf-xla", "tf-plain"):
            if name in medians:
                print("detect() with {}'s dense part (estimate): {:.3f} s, {:.3f} of "
                      "detect()'s {:.3f} s".format(
                          name, medians["detect"] - base + medians[name],
                          (medians["detect"] - base + medians[name]) / medians["detect"],
                          medians["detect"]))
    if others:
        print("other processes took {} of one CPU meanwhile (load average {})".format(
            " and ".join("{:.0f}%".format(100 * v) for v in others), load_average()))
    return {"backbone": backbone, "size": size, "export": exported, "rows": rows,
            "parity": {k: {"diffs": v["diffs"], "detections": v.get("detections")}
                       for k, v in parity.items()},
            "loads": loads,
            "samples": samples, "others_cpu": others}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="resnet50,resnet101")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--python", default=default_ours_python(),
                        help="the project's Python (TensorFlow paths)")
    parser.add_argument("--engines-venv", default=DEFAULT_ENGINES_VENV)
    parser.add_argument("--workdir", default=None,
                        help="keep the exported files there (default: a temporary "
                             "folder, removed at the end; about 1 GB per configuration)")
    parser.add_argument("--json", default=None, help="also write the figures there")
    args = parser.parse_args()
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = sorted(set(args.paths) - set(PATHS + OPTIONAL_PATHS))
    if unknown:
        parser.error("unknown paths {}; known: {}".format(
            unknown, ", ".join(PATHS + OPTIONAL_PATHS)))
    engines_python = ensure_engines_venv(args.engines_venv, args.python)
    print("CPU: {}".format(lscpu_model()))
    print("threads {}, load average {}".format(args.threads, load_average()), flush=True)
    print("code: {}".format(code_state()), flush=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-engines-")
    results = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):  # the small size first
            for backbone in args.backbones.split(","):
                results.append(run_configuration(backbone.strip(), size, args,
                                                 args.python, engines_python, workdir))
                if args.json:  # after each configuration: a cut-short run keeps its figures
                    with open(args.json, "w") as f:
                        json.dump({"cpu": lscpu_model(), "threads": args.threads,
                                   "runs": args.runs, "results": results}, f, indent=1)
                if not args.workdir:
                    shutil.rmtree(os.path.join(workdir, "{}_{}".format(
                        backbone.strip(), size)), ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print_markdown(results)


def print_markdown(results):
    """All configurations' figures as one Markdown table (for docs/benchmarks.md)."""
    print("\n| backbone, size | path | start-up s (fresh process) | 1st call s | median s "
          "| min s | median / current | peak RSS MiB | parity |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        for row in result["rows"]:
            item = result["parity"].get(row["path"], {})
            diffs = item.get("diffs")
            parity = []
            if diffs and not row["path"].startswith("detect"):
                parity.append("max abs diff {:.0e}".format(max(diffs)))
            if item.get("detections"):
                parity.append(item["detections"])
            print("| {} {} | {} | {:.1f} | {:.2f} | {:.3f} | {:.3f} | {:.3f} | {:.0f} | {} |"
                  .format(result["backbone"], result["size"], row["path"], row["startup_s"],
                          row["first_s"], row["median_s"], row["min_s"], row["ratio"],
                          row["peak_rss_mib"], "; ".join(parity).replace("|", "")))


if __name__ == "__main__":
    main()
