"""XLA's compilation cache across runs of i.ann.maskrcnn.detect (maskrcnnlib.compilecache):
the first run of a model shape leaves its compiled dense part in the cache folder, a
second run loads it instead of compiling (nothing new written) and finds the same."""
import os

import pytest

from test_detect_module import DETECT, seam_scene, vector_rows  # noqa: F401

pytestmark = pytest.mark.grass
TILING = {"tile_size": 128, "overlap": 32}


def cache_files(folder):
    """{path: (size, mtime_ns)} of every file below folder."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            found[path] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
    return found


def test_a_second_run_loads_what_the_first_compiled(run_module, grass_session, shapes_model,
                                                     seam_scene, tmp_path):
    bands, _ = seam_scene
    folder = tmp_path / "xla"
    env = {key: value for key, value in grass_session.items() if key != "TF_XLA_FLAGS"}
    env["MASKRCNN_XLA_CACHE"] = str(folder)
    result = run_module(DETECT, input=",".join(bands), model=shapes_model, output="cache_a",
                        env=env, **TILING)
    assert result.returncode == 0, result.stderr
    first = cache_files(folder)
    # one folder for this TensorFlow and CPU, holding XLA's compiled CPU programs
    assert len({os.path.dirname(path) for path in first}) == 1
    assert any("XLA_CPU_JIT" in os.path.basename(path) for path in first)
    assert os.path.basename(os.path.dirname(next(iter(first)))).startswith("tf")
    result = run_module(DETECT, input=",".join(bands), model=shapes_model, output="cache_b",
                        env=env, **TILING)
    assert result.returncode == 0, result.stderr
    assert cache_files(folder) == first  # loaded, not compiled and written again
    assert vector_rows("cache_b") == vector_rows("cache_a")
    # turned off: nothing written
    env["MASKRCNN_XLA_CACHE"] = "0"
    result = run_module(DETECT, input=",".join(bands), model=shapes_model, output="cache_c",
                        env=env, **TILING)
    assert result.returncode == 0, result.stderr
    assert vector_rows("cache_c") == vector_rows("cache_a")
    assert cache_files(folder) == first
