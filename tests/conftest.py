"""Test fixtures: a temporary GRASS project and the addon installed into it.

Unit tests (tests/unit) need none of this. Integration tests (tests/integration)
run the modules as a user does: as executables in a real GRASS session.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # maskrcnnlib from the source tree
sys.path.insert(0, str(ROOT / "tests"))  # tests/support


def _session_folder(variable, tmp_path_factory):
    """The environment variable `variable` naming a folder of this test session while
    it runs (unless already set), for the tests and the modules they run."""
    if variable in os.environ:
        yield os.environ[variable]
        return
    os.environ[variable] = str(tmp_path_factory.mktemp(variable.lower()))
    yield os.environ[variable]
    del os.environ[variable]


@pytest.fixture(scope="session", autouse=True)
def xla_cache(tmp_path_factory):
    """XLA's compilation cache (maskrcnnlib.compilecache) in a folder of this test
    session: nothing read from or left in the user's cache, and detectors of one
    shape compile once per session."""
    yield from _session_folder("MASKRCNN_XLA_CACHE", tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def int8_cache(tmp_path_factory):
    """precision=int8's cache of exported and quantized models
    (maskrcnnlib.model.quantized) in a folder of this test session, likewise."""
    yield from _session_folder("MASKRCNN_INT8_CACHE", tmp_path_factory)


def grass_config(key):
    result = subprocess.run(["grass", "--config", key], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def grass_session(tmp_path_factory):
    """A temporary XY project, made the current GRASS session of this process.

    Returns the environment (a dict) that runs GRASS modules in it; os.environ is
    updated as well, so grass.script calls made by the tests work directly.
    """
    if shutil.which("grass") is None:
        pytest.fail("GRASS GIS is not installed: run tools/setup.sh")
    gisbase = grass_config("path")
    python_path = grass_config("python_path")
    if python_path not in sys.path:
        sys.path.insert(0, python_path)
    dbase = tmp_path_factory.mktemp("grassdata")
    subprocess.run(["grass", "-e", "-c", "XY", str(dbase / "project")], check=True,
                   capture_output=True)
    import grass.script.setup as gsetup

    gsetup.init(str(dbase / "project" / "PERMANENT"), grass_path=gisbase)
    # Addon scripts run with the first python3 on PATH: this environment's.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                          os.environ["PATH"]])
    os.environ["GRASS_OVERWRITE"] = "0"
    yield dict(os.environ)


def copy_source_tree(destination):
    """Copy the addon's sources as a user's checkout would hold them."""
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache",
                                    "*.pyc")
    shutil.copytree(ROOT, destination, ignore=ignore)
    return destination


@pytest.fixture(scope="session")
def addon(grass_session, tmp_path_factory):
    """i.ann.maskrcnn installed with g.extension into a temporary addon base.

    Returns a dict with the addon base, the g.extension output and an environment
    in which the installed modules (not the source tree) are on PATH.
    """
    base = tmp_path_factory.mktemp("addons")
    source = copy_source_tree(tmp_path_factory.mktemp("checkout") / "i.ann.maskrcnn")
    # Offline, GRASS 8.2's g.extension fails fetching metadata unless this exists.
    (base / "addons_paths.json").write_text('{"tree": []}')
    env = dict(grass_session, GRASS_ADDON_BASE=str(base))
    env["PATH"] = os.pathsep.join([str(base / "scripts"), env["PATH"]])
    result = subprocess.run(["g.extension", "extension=i.ann.maskrcnn", f"url={source}"],
                            env=env, capture_output=True, text=True)
    return {"base": base, "result": result, "env": env}


@pytest.fixture
def run_module(grass_session):
    """Run a GRASS module as a separate process; returns the CompletedProcess."""

    def run(module, *args, env=None, cwd=None, **options):
        command = [module, *args] + [f"{key}={value}" for key, value in options.items()]
        return subprocess.run(command, env=env or grass_session, cwd=cwd,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    return run


@pytest.fixture(scope="session")
def shapes_model(tmp_path_factory):
    """A ResNet-18 trained on class-coloured 128x128 shapes (mask AP50 >= 0.95 on its
    12 scenes), saved with its model card: the model of the detect tests. Defined
    here, once, so that every test module using it shares one training (a fixture
    imported into several modules would train once per module)."""
    import numpy as np

    from maskrcnnlib.modelcard import write_card
    from maskrcnnlib.model.weights import save_weights_h5
    from support.models import small_config, train_until
    from support.shapes import shapes_scene

    config = small_config()
    config.learning_rate = 0.005  # 0.01 can diverge with 12 scenes
    rng = np.random.default_rng(10)
    scenes = [shapes_scene(rng, class_colors=True) for _ in range(12)]
    detector, history = train_until(config, scenes, seed=2, target_ap50=0.95, rounds=12)
    assert history[-1] >= 0.95, history
    path = tmp_path_factory.mktemp("model") / "mask_rcnn_shapes_0001.h5"
    save_weights_h5(detector.model, path)
    write_card(path, config, {"epoch": 1})
    return path
