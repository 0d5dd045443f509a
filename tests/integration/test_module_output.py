"""What the modules print: GRASS messages only, TensorFlow's own logs on request.

TensorFlow writes C++ log lines (absl: ``E0000 00:00:1796337263.347311 5544
util.cc:131] ...``) to stderr, the stream of GRASS messages; the modules keep them
off unless run with --verbose or MASKRCNN_TF_LOG=1 (maskrcnnlib/quiet.py). The
runs here start from an environment without TF_CPP_MIN_LOG_LEVEL, as a user's.
Training also tells its progress within an epoch and the time left.
"""
import re

import numpy as np
import pytest

from conftest import ROOT
from support.shapes import shapes_scene
from test_train_module import CLASSES, FAST, TRAIN, write_dataset

pytestmark = pytest.mark.grass
DETECT = str(ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.py")
# A line starts after a newline, a carriage return or g.message -p's backspaces.
LINE_BREAKS = re.compile(r"[\n\r\b]")
LOG_LINE = re.compile(
    r"[IWEF]\d{4} \d\d:\d\d:\d\d"  # absl
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "  # TensorFlow's own sink
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|(INFO|WARNING|ERROR):(tensorflow|absl):"  # Python loggers
    r"|.*\b\w+Warning: ")  # Python warnings: file:line: UserWarning: ...


def log_lines(text):
    return [line for line in LINE_BREAKS.split(text) if LOG_LINE.match(line)]


def user_environment(grass_session, **variables):
    env = {k: v for k, v in grass_session.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "MASKRCNN_TF_LOG", "GRASS_VERBOSE")}
    return dict(env, **variables)


def said(text):
    """stderr with percent backspaces and GRASS's line wrapping undone."""
    return " ".join(text.replace("\b", " ").split())


@pytest.fixture(scope="module")
def quiet_training(tmp_path_factory, grass_session, run_as_user):
    dataset = write_dataset(tmp_path_factory.mktemp("quiet_data") / "dataset")
    logs = tmp_path_factory.mktemp("quiet_logs")
    result = run_as_user(TRAIN, env=user_environment(grass_session),
                        **{**FAST, "classes": CLASSES, "name": "quiet",
                           "training_dataset": dataset, "logs": logs, "epochs": 3,
                           "seed": 1})
    assert result.returncode == 0, result.stderr
    return logs, dataset, result


@pytest.fixture(scope="module")
def run_as_user(grass_session):
    """Run a module in the given environment (module scope, as the runs it serves)."""
    import subprocess

    def run(module, *args, env, **options):
        command = [module, *args] + [f"{key}={value}" for key, value in options.items()]
        return subprocess.run(command, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)

    return run


@pytest.fixture(scope="module")
def scene(grass_session):
    """Three band rasters of a 96x96 scene with shapes; the region set to them."""
    import grass.script as gs
    from grass.script import array as garray

    gs.run_command("g.region", n=96, s=0, e=96, w=0, res=1)
    image, _, _ = shapes_scene(np.random.default_rng(3), size=96)
    names = []
    for band in range(3):
        raster = garray.array(dtype=np.float64)
        raster[...] = image[:, :, band]
        raster.write(f"quiet_{band}", overwrite=True)
        names.append(f"quiet_{band}")
    return ",".join(names)


def detect(run_as_user, env, model, bands, output, *flags):
    return run_as_user(DETECT, *flags, env=env, input=bands, model=model, output=output,
                      tile_size=64, overlap=16)


def test_training_prints_grass_messages_only(quiet_training):
    result = quiet_training[2]
    assert not log_lines(result.stderr), log_lines(result.stderr)
    assert not log_lines(result.stdout) and not result.stdout.strip(), result.stdout
    assert "Epoch 3/3" in result.stderr


def test_training_tells_progress_within_epochs_and_the_time_left(quiet_training):
    text = said(quiet_training[2].stderr)
    # 3 epochs of 2 steps: the percent of all steps, shown during the first epoch
    before_first_epoch = text[:text.index("Epoch 1/3")]
    assert "16%" in before_first_epoch, text
    shown = [int(p) for p in re.findall(r"(\d+)%", text)]
    assert shown == sorted(shown) and shown[-1] == 100 and len(set(shown)) == 6, shown
    for epoch in (1, 2):  # duration of the epoch, then an estimate of what is left
        assert re.search(r"Epoch {}/3: .*? [\d.]+ s per step, \d+ (s|min); "
                         r"about \d+ (s|min) left".format(epoch), text), text
    last = text[text.index("Epoch 3/3"):]
    assert re.search(r"s per step, \d+ (s|min)", last) and "left" not in last, last


def test_detection_prints_grass_messages_only(quiet_training, scene, run_as_user,
                                              grass_session):
    model = quiet_training[0] / "mask_rcnn_quiet_0003.h5"
    result = detect(run_as_user, user_environment(grass_session), model, scene, "quiet_det")
    assert result.returncode == 0, result.stderr
    assert not log_lines(result.stderr), log_lines(result.stderr)
    assert not log_lines(result.stdout), result.stdout
    assert "tiles done" in result.stderr  # GRASS messages still pass


def test_tensorflow_logs_come_back_on_request(quiet_training, scene, run_as_user,
                                              grass_session, tmp_path):
    """MASKRCNN_TF_LOG=1 for training, --verbose for detection: TensorFlow's own
    start-up notices (oneDNN, CPU features) show again."""
    logs, dataset, _ = quiet_training
    result = run_as_user(TRAIN, env=user_environment(grass_session, MASKRCNN_TF_LOG="1"),
                        **{**FAST, "classes": CLASSES, "name": "loud",
                           "training_dataset": dataset, "logs": tmp_path, "epochs": 1,
                           "steps_per_epoch": 1})
    assert result.returncode == 0, result.stderr
    assert log_lines(result.stderr), result.stderr
    assert "Epoch 1/1" in result.stderr
    result = detect(run_as_user, user_environment(grass_session),
                    logs / "mask_rcnn_quiet_0003.h5", scene, "loud_det", "--verbose")
    assert result.returncode == 0, result.stderr
    assert log_lines(result.stderr), result.stderr
    assert "tiles done" in result.stderr
