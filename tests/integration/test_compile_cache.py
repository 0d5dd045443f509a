"""XLA's compilation cache across runs of i.ann.maskrcnn.detect (maskrcnnlib.compilecache):
the first run of a model shape leaves its compiled dense part in the cache folder, a
second run loads it instead of compiling (nothing new written) and finds the same.
And a region too small for compiling to pay runs uncompiled (maskrcnnlib.detect
COMPILE_FROM_TILES): nothing compiled, the same objects."""
import os

import pytest

from test_detect_module import DETECT, said, seam_scene, vector_rows  # noqa: F401

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
    env["MASKRCNN_COMPILE_FROM_TILES"] = "0"  # compile even these few small tiles
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


def test_a_small_region_runs_uncompiled(run_module, grass_session, shapes_model, seam_scene,
                                        tmp_path):
    bands, _ = seam_scene
    folder = tmp_path / "xla"
    env = {key: value for key, value in grass_session.items()
           if key not in ("TF_XLA_FLAGS", "MASKRCNN_COMPILE_FROM_TILES")}
    env["MASKRCNN_XLA_CACHE"] = str(folder)
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="small_plain", env=env, **TILING)
    assert result.returncode == 0, result.stderr
    # 9 tiles of 128 x 128 are far below 40 of 512 x 512: nothing compiled
    assert "9 tiles: the network runs as a plain graph" in result.stderr
    # 128 x 128 tiles of a 64-channel pyramid: each counts 1/16 * 1/4 of 512 x 512 at 256
    assert "pays from about 2560 such tiles with this model" in said(result)
    assert not any("XLA_CPU_JIT" in os.path.basename(path) for path in cache_files(folder))
    env["MASKRCNN_COMPILE_FROM_TILES"] = "0"
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="small_compiled", env=env, **TILING)
    assert result.returncode == 0, result.stderr
    assert "plain graph" not in result.stderr
    assert any("XLA_CPU_JIT" in os.path.basename(path) for path in cache_files(folder))
    plain, compiled = vector_rows("small_plain"), vector_rows("small_compiled")
    assert len(plain) == len(compiled) > 0
    for a, b in zip(plain, compiled):  # cat|class|class_id|score|area|source
        assert a[:3] + a[5:] == b[:3] + b[5:]
        assert float(a[3]) == pytest.approx(float(b[3]), abs=1e-3)
        assert float(a[4]) == pytest.approx(float(b[4]), rel=0.02)


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_compile_threshold_fails_before_the_model_loads(run_module, grass_session,
                                                              shapes_model, seam_scene, value):
    bands, _ = seam_scene
    env = dict(grass_session, MASKRCNN_COMPILE_FROM_TILES=value)
    result = run_module(DETECT, input=",".join(bands), model=shapes_model, output="bad_compile",
                        env=env, **TILING)
    assert result.returncode != 0
    assert "MASKRCNN_COMPILE_FROM_TILES must be a number of tiles" in result.stderr
    assert "Classes (" not in result.stderr  # before the model's classes are read


def test_only_tiles_within_the_rasters_count_toward_compiling(run_module, grass_session,
                                                              shapes_model, seam_scene):
    import grass.script as gs

    bands, objects = seam_scene
    # the region doubled east and south: 5 x 5 tiles of 128 (starts 0, 96, 192, 288,
    # 384), of which the rasters' 256 x 256 cells in the north-west meet 3 x 3
    env = {key: value for key, value in grass_session.items()
           if key not in ("TF_XLA_FLAGS", "MASKRCNN_COMPILE_FROM_TILES")}
    env["GRASS_REGION"] = gs.region_env(n=1512, s=488, w=3000, e=4024, res=2)
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="partly_covered", env=env, **TILING)
    assert result.returncode == 0, result.stderr
    assert "9 tiles: the network runs as a plain graph" in result.stderr  # not 25
    assert len(vector_rows("partly_covered")) == len(objects)
