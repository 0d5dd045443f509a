"""Where training and detection run: the CPU, the visible GPUs, or several machines.

Training (i.ann.maskrcnn.train's gpu_count) picks a tf.distribute strategy:

- gpu_count=0: the CPU, even where GPUs are visible.
- no GPU visible and gpu_count=1 (the default): the CPU, and the caller is told so.
- gpu_count=N <= visible GPUs: MirroredStrategy over the first N (one: that GPU).
- gpu_count above the visible GPUs: DeviceError.
- TF_CONFIG naming a cluster of two or more tasks: MultiWorkerMirroredStrategy,
  each worker with its own gpu_count GPUs (or its CPU); the chief (task type
  "chief", or worker 0 when there is none) is the one that writes files.

Every replica takes images_per_gpu images per step: the global batch is
images_per_gpu x replicas (x accumulation steps, see maskrcnnlib.train).
GPU memory is allocated on demand (memory growth), so several processes can
share a GPU. All of this must run before TensorFlow touches its devices: the
modules call it first thing after importing TensorFlow.
"""
import json
import os
from dataclasses import dataclass, field

from maskrcnnlib.errors import MaskRCNNError


class DeviceError(MaskRCNNError):
    """The devices asked for are not there, or TF_CONFIG is malformed."""


@dataclass
class Placement:
    """A strategy and what it means for the run."""

    strategy: object
    replicas: int  # replicas in sync over all workers
    description: str  # for the user: where it runs
    is_chief: bool = True  # this process writes checkpoints, cards and logs
    worker_index: int = 0
    worker_count: int = 1
    devices: list = field(default_factory=list)  # this worker's devices


def allow_memory_growth():
    """GPU memory on demand instead of all of it at start (shared GPUs)."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # devices already initialized: leave them as they are
            pass


def split_cpu(count):
    """Split the CPU into `count` logical devices (tests and benchmarks: replicas
    without GPUs). Must be called before TensorFlow initializes its devices."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    return ["/cpu:{}".format(i) for i in range(count)]


def strategy_for_devices(devices):
    """MirroredStrategy over several devices, OneDeviceStrategy for one."""
    import tensorflow as tf

    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(devices=list(devices))


def cluster_config(environ=None):
    """The parsed TF_CONFIG when it names a cluster of 2 or more tasks, else None.

    Raises DeviceError naming what is wrong with a malformed TF_CONFIG.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise DeviceError("TF_CONFIG is not valid JSON: {}".format(error)) from error
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise DeviceError('TF_CONFIG needs "cluster" and "task", e.g. {"cluster": '
                          '{"worker": ["host1:12345", "host2:12345"]}, "task": '
                          '{"type": "worker", "index": 0}}')
    unknown = set(cluster) - {"chief", "worker"}
    if unknown:
        raise DeviceError("TF_CONFIG: training uses only chief and worker tasks, not {}"
                          .format(", ".join(sorted(unknown))))
    tasks = {kind: list(cluster.get(kind) or []) for kind in ("chief", "worker")}
    if len(tasks["chief"]) > 1:
        raise DeviceError("TF_CONFIG: a cluster has at most one chief")
    kind, index = task.get("type"), task.get("index")
    if kind not in tasks or not isinstance(index, int) or not 0 <= index < len(tasks[kind]):
        raise DeviceError("TF_CONFIG: task {} is not in the cluster ({})".format(
            json.dumps(task), json.dumps(cluster)))
    if len(tasks["chief"]) + len(tasks["worker"]) < 2:
        return None
    return {"cluster": tasks, "type": kind, "index": index}


def _is_chief(cluster):
    if cluster["cluster"]["chief"]:
        return cluster["type"] == "chief"
    return cluster["index"] == 0


def is_chief(environ=None):
    """Whether this process writes files: True unless TF_CONFIG makes it a worker
    other than the chief. Needs no TensorFlow."""
    cluster = cluster_config(environ)
    return cluster is None or _is_chief(cluster)


def _local_gpus(gpu_count, default_on_cpu):
    """The GPUs this process uses; [] for the CPU. Raises DeviceError."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpu_count == 0 or (not gpus and gpu_count == 1 and default_on_cpu):
        return []
    if gpu_count > len(gpus):
        raise DeviceError(
            "gpu_count={} but {} visible (CUDA_VISIBLE_DEVICES chooses them; "
            "gpu_count=0 runs on the CPU)".format(
                gpu_count, "{} GPU{} {}".format(len(gpus), "s" if len(gpus) > 1 else "",
                                                "are" if len(gpus) > 1 else "is")
                if gpus else "no GPU is"))
    return ["/gpu:{}".format(i) for i in range(gpu_count)]


def training_placement(gpu_count=1, environ=None):
    """The Placement for training with `gpu_count` GPUs per machine (see above)."""
    import tensorflow as tf

    allow_memory_growth()
    cluster = cluster_config(environ)
    devices = _local_gpus(gpu_count, default_on_cpu=True)
    where = "{} GPU{}".format(len(devices), "s" if len(devices) > 1 else "") if devices \
        else "the CPU"
    if cluster is None:
        if not devices:
            note = " (gpu_count=0)" if gpu_count == 0 else " (no GPU is visible)"
            return Placement(tf.distribute.OneDeviceStrategy("/cpu:0"), 1,
                             "Training on the CPU" + note, devices=["/cpu:0"])
        strategy = strategy_for_devices(devices)
        return Placement(strategy, strategy.num_replicas_in_sync,
                         "Training on " + where, devices=devices)
    physical = tf.config.list_physical_devices("GPU")
    tf.config.set_visible_devices(physical[:len(devices)], "GPU")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    tasks = cluster["cluster"]["chief"] + cluster["cluster"]["worker"]
    worker_index = (0 if cluster["type"] == "chief" else
                    cluster["index"] + len(cluster["cluster"]["chief"]))
    return Placement(
        strategy, strategy.num_replicas_in_sync,
        "Training on {} machines ({} replicas in all); this is {} {} of them, on {}".format(
            len(tasks), strategy.num_replicas_in_sync, cluster["type"], cluster["index"],
            where),
        is_chief=_is_chief(cluster), worker_index=worker_index, worker_count=len(tasks),
        devices=devices or ["/cpu:0"])


def detection_devices():
    """The devices detection spreads its tiles over: every visible GPU, or the CPU."""
    import tensorflow as tf

    allow_memory_growth()
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in gpus] or ["/cpu:0"]
