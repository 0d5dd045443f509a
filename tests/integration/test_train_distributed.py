"""i.ann.maskrcnn.train on several machines (issue 7): two worker processes on
127.0.0.1 joined by TF_CONFIG train together; only the chief writes."""
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT
from support.ports import free_ports
from test_train_module import CLASSES, FAST, history, write_dataset

pytestmark = pytest.mark.grass
TRAIN = str(ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.py")


def start_worker(env, index, workers, options):
    tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    command = [TRAIN, "-s"] + ["{}={}".format(k, v) for k, v in options.items()]
    return subprocess.Popen(command, env=dict(env, TF_CONFIG=json.dumps(tf_config)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_train_together_and_only_the_chief_writes(grass_session, tmp_path):
    dataset = write_dataset(tmp_path / "dataset", count=6)
    workers = ["127.0.0.1:{}".format(port) for port in free_ports(2)]
    logs = [tmp_path / "machine0" / "logs", tmp_path / "machine1" / "logs"]
    options = {**FAST, "classes": CLASSES, "name": "cluster", "training_dataset": dataset,
               "epochs": 2, "seed": 3, "gpu_count": 0}
    processes = [start_worker(grass_session, i, workers, dict(options, logs=logs[i]))
                 for i in range(2)]
    try:
        outputs = [p.communicate(timeout=420) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    chief, worker = outputs[0][1], outputs[1][1]
    assert "Training on 2 machines (2 replicas in all); this is worker 0" in chief
    assert "this is worker 1" in worker
    for epoch in (1, 2):
        assert (logs[0] / "mask_rcnn_cluster_{:04d}.h5".format(epoch)).is_file()
        assert (logs[0] / "mask_rcnn_cluster_{:04d}.json".format(epoch)).is_file()
    assert (logs[0] / "held_out.txt").is_file()
    assert len(history(logs[0], "cluster")) == 2
    # the other worker trained its share (its losses are the cluster's, as the
    # chief's) but wrote nothing at all
    def last_loss(stderr):
        line = [l for l in stderr.splitlines() if l.startswith("Epoch 2/2:")][0]
        return re.search(r": loss ([0-9.]+),", line).group(1)

    assert last_loss(worker) == last_loss(chief)
    assert "validation mask AP50" in chief
    assert not logs[1].exists(), sorted(os.listdir(logs[1]))
    card = json.loads((logs[0] / "mask_rcnn_cluster_0002.json").read_text())
    assert card["epoch"] == 2


def test_bad_tf_config_stops_before_training(run_module, tmp_path):
    dataset = write_dataset(tmp_path / "dataset", count=2)
    env = dict(os.environ, TF_CONFIG='{"cluster": {"worker": ["a:1", "b:2"]}, '
               '"task": {"type": "worker", "index": 5}}')
    result = run_module(TRAIN, env=env, **FAST, classes=CLASSES, name="bad",
                        training_dataset=dataset, logs=tmp_path / "logs", epochs=1)
    assert result.returncode != 0
    assert "TF_CONFIG: task" in result.stderr and "not in the cluster" in result.stderr
    assert not (tmp_path / "logs").exists()


def test_accumulation_and_device_options_through_the_module(run_module, tmp_path):
    dataset = write_dataset(tmp_path / "dataset", count=2)
    logs = tmp_path / "logs"
    result = run_module(TRAIN, **FAST, classes=CLASSES, name="accumulated",
                        training_dataset=dataset, logs=logs, epochs=1, seed=2,
                        accumulation_steps=2, gpu_count=0)
    assert result.returncode == 0, result.stderr
    assert "Training on the CPU (gpu_count=0)" in result.stderr
    card = json.loads((logs / "mask_rcnn_accumulated_0001.json").read_text())
    assert card["config"]["accumulation_steps"] == 2
    assert card["config"]["precision"] == "auto"  # the default: bfloat16 where the CPU has it
    assert card["compute_dtype"] in ("float32", "bfloat16")
    # no GPU here: asking for two is a clear error, and nothing is written
    result = run_module(TRAIN, **FAST, classes=CLASSES, name="gpus",
                        training_dataset=dataset, logs=logs, epochs=1, gpu_count=2)
    assert result.returncode != 0
    assert "gpu_count=2 but no GPU is visible" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(logs.glob("mask_rcnn_gpus_*"))
