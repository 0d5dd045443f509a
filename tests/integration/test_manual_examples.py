"""Every example of the three manual pages runs, in page order, as a user runs it.

Each <div class="code"><pre> block of a page runs with bash (set -e, pipefail);
a Python script block runs with this environment's python3 outside any GRASS
session. Before that, tests/support/manual.py's substitute() makes it small, fast
and local: /data becomes a temporary directory, epochs and steps shrink (20
epochs become 1 and checkpoint _0020 becomes _0001), the backbone becomes
ResNet-18 and tiles and images get smaller; its docstring has the table. Region
settings stay as written: the synthetic town of tests/support/story.py lies
where the manual says. Every command must exit with 0 and leave what it promises
(maps, checkpoints, files: manual.Expectations); a page with a code block that
did not run fails.

The module pages run in one EPSG:32633 project holding the story's maps, with
the addon installed by g.extension (conftest's addon fixture); the detect page
goes on from the train page's checkpoints. The suite page is a user's from the
start: its first block installs the addon into a fresh $HOME, its batch jobs
create their projects with `grass -c` and run with `grass --exec`, and its
Python script (tools/batch_job.py, with grass-session) starts from the input
files alone. The README shows the same batch jobs (checked here). The train
page's two machines of one cluster (blocks that set TF_CONFIG) run at the same
time as two processes on this machine.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, copy_source_tree
from support import manual, story
from support.ports import free_ports

pytestmark = pytest.mark.grass
SUITE = ROOT / "i.ann.maskrcnn.html"
TRAIN = ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.html"
DETECT = ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.html"


def start_block(block, env, work):
    """Start one code block (already substituted); returns the Popen."""
    if manual.is_python(block):
        script = work / "block.py"
        script.write_text(block)
        command = [sys.executable, str(script)]
    else:
        script = work / "block.sh"
        script.write_text("set -eo pipefail\n" + block + "\n")
        command = ["bash", str(script)]
    return subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def groups(blocks):
    """[[block numbers]]: consecutive blocks that set TF_CONFIG are one group (the
    machines of one cluster, started together); every other block is alone."""
    found = []
    for number, block in enumerate(blocks, start=1):
        together = "TF_CONFIG" in block
        if found and together and "TF_CONFIG" in blocks[found[-1][-1] - 1]:
            found[-1].append(number)
        else:
            found.append([number])
    return found


def run_page(page, data, env, work, source=None, python_env=None, python_data=None):
    """Run every code block of page in order; returns [(block, seconds)].

    The blocks of one cluster (see groups) run at the same time, on this machine:
    its hosts become 127.0.0.1 with free ports."""
    blocks = manual.code_blocks(page.read_text())
    assert blocks, "{} has no example".format(page.name)
    hosts = {"node{}:12345".format(i + 1): "127.0.0.1:{}".format(port)
             for i, port in enumerate(free_ports(2))}
    ran = []
    for numbers in groups(blocks):
        started, runs = time.monotonic(), []
        for number in numbers:
            original = blocks[number - 1]
            python = manual.is_python(original)
            block = manual.substitute(original, python_data if python else data, source,
                                      hosts)
            block_env = python_env if python else env
            folder = work / "block{}".format(number) if len(numbers) > 1 else work
            folder.mkdir(exist_ok=True)
            runs.append((number, python, block, block_env, manual.Expectations(block_env),
                         start_block(block, block_env, folder)))
        for number, python, block, block_env, expected, process in runs:
            stdout, stderr = process.communicate(timeout=900)
            seconds = time.monotonic() - started
            where = "{} block {} ({:.0f} s):\n{}".format(page.name, number, seconds, block)
            assert process.returncode == 0, "{}\nexit status {}\n{}".format(
                where, process.returncode, stderr[-4000:])
            assert "Traceback" not in stderr, where + "\n" + stderr[-4000:]
            if python:
                mapset, calls = manual.python_commands(block)
                for tokens in calls:
                    expected.expect(tokens, mapset)
            else:
                for tokens in manual.commands(block):
                    expected.expect(tokens, manual.mapset_of(env))
            failures = expected.failures()
            assert not failures, where + "\n" + "\n".join(failures)
            ran.append((block, seconds))
            print("{} block {}: {:.1f} s".format(page.name, number, seconds))
    assert len(ran) == len(blocks)
    return ran


@pytest.fixture(scope="module")
def town(tmp_path_factory, addon):
    """The story's files in data/ and its maps in an EPSG:32633 project; the
    environment (installed addon, that project) the module pages run in."""
    assert addon["result"].returncode == 0, addon["result"].stderr
    root = tmp_path_factory.mktemp("manual")
    data = root / "data"
    story.write_files(data)
    project = data / "grassdata" / "town"  # /data/grassdata/town in the manual
    subprocess.run(["grass", "-e", "-c", story.CRS, str(project)], check=True,
                   capture_output=True)
    gisrc = root / "gisrc"
    gisrc.write_text("GISDBASE: {}\nLOCATION_NAME: town\nMAPSET: PERMANENT\n".format(
        project.parent))
    env = dict(addon["env"], GISRC=str(gisrc))
    story.import_maps(data, env)
    work = root / "work"
    work.mkdir()
    return {"data": data, "env": env, "work": work}


@pytest.fixture(scope="module")
def train_page(town):
    return run_page(TRAIN, town["data"], town["env"], town["work"])


def test_train_page_examples(train_page, town):
    assert len(train_page) == len(manual.code_blocks(TRAIN.read_text()))
    logs = town["data"] / "logs"
    # the resumed run went on from the first run's checkpoint to epoch "40" (2)
    assert [p.name for p in sorted(logs.glob("mask_rcnn_buildings_[0-9]*.h5"))] == [
        "mask_rcnn_buildings_0001.h5", "mask_rcnn_buildings_0002.h5"]
    assert (logs / "mask_rcnn_buildings_chips_0001.h5").is_file()
    # several GPUs (here the CPU), and two machines (here two processes) in one run
    assert (logs / "mask_rcnn_buildings_gpus_0001.h5").is_file()
    card = json.loads((logs / "mask_rcnn_buildings_gpus_0001.json").read_text())
    assert card["config"]["precision"] == "mixed"
    assert (logs / "mask_rcnn_buildings_nodes_0001.h5").is_file()


def test_detect_page_examples(train_page, town):
    ran = run_page(DETECT, town["data"], town["env"], town["work"])
    assert any("images_directory" in block for block, _ in ran)
    listed = subprocess.run(["g.list", "type=raster", "pattern=tmp_maskrcnn*"],
                            env=town["env"], capture_output=True, text=True)
    assert listed.returncode == 0 and not listed.stdout.strip()  # imports removed


def outside_grass(env, home):
    """env without a GRASS session (as in a plain shell), with HOME=home."""
    gisbase = env.get("GISBASE")
    clean = {key: value for key, value in env.items()
             if not key.startswith(("GRASS", "GIS")) and key not in (
                 "LD_LIBRARY_PATH", "PYTHONPATH", "WIND_OVERRIDE", "LOCATION_NAME",
                 "MAPSET")}
    clean["PATH"] = os.pathsep.join(
        part for part in env["PATH"].split(os.pathsep)
        if not (gisbase and part.startswith(gisbase)) and "addons" not in part)
    clean["HOME"] = str(home)
    return clean


def test_suite_page_examples(grass_session, tmp_path):
    """Install, a batch job with grass --exec, the same job with grass-session."""
    home = tmp_path / "home"
    home.mkdir()
    data = tmp_path / "data"
    story.write_files(data)
    inputs = tmp_path / "inputs"  # what the Python job starts from
    inputs.mkdir()
    for name in ("ortho.tif", "footprints.gpkg"):
        shutil.copy(data / name, inputs / name)
    source = copy_source_tree(tmp_path / "checkout" / "i.ann.maskrcnn")
    base = home / ".grass8" / "addons"  # what GRASS 8.2 sets GRASS_ADDON_BASE to
    env = dict(grass_session, HOME=str(home), GRASS_ADDON_BASE=str(base))
    env["PATH"] = os.pathsep.join([str(base / "scripts"), os.path.dirname(sys.executable),
                                   env["PATH"]])
    work = tmp_path / "work"
    work.mkdir()
    ran = run_page(SUITE, data, env, work, source=source,
                   python_env=outside_grass(env, home), python_data=inputs)
    assert any(block.startswith("#!/usr/bin/env python3") for block, _ in ran)
    assert any("--exec" in block for block, _ in ran)
    # the Python job created its own project and wrote its own checkpoint
    assert (inputs / "grassdata" / "town" / "PERMANENT" / "vector" / "buildings").is_dir()
    assert (inputs / "logs" / "mask_rcnn_buildings_0001.h5").is_file()


def fenced_blocks(markdown, heading):
    """The fenced code blocks of one '## heading' section of a Markdown file."""
    section = markdown.split("\n## " + heading + "\n", 1)[1].split("\n## ", 1)[0]
    return [text.strip("\n") for text in re.findall(r"```\w*\n(.*?)```", section, re.S)]


def test_readme_shows_the_suite_pages_batch_jobs():
    """The README's batch jobs are the suite page's, which the test above runs, and
    tools/batch_job.py is the page's Python script."""
    page = manual.code_blocks(SUITE.read_text())
    readme = fenced_blocks((ROOT / "README.md").read_text(), "Batch jobs")
    assert len(readme) >= 3
    for block in readme:
        assert block in page, block
    script = (ROOT / "tools" / "batch_job.py").read_text().strip("\n")
    assert script in page and script in readme
    assert os.access(ROOT / "tools" / "batch_job.py", os.X_OK)


def test_substitutions_shrink_an_example():
    """The table of manual.substitute, on shell words and Python keyword arguments."""
    line = ("i.ann.maskrcnn.train logs=/data/logs epochs=40 steps_per_epoch=500 "
            "validation_steps=20 backbone=resnet101 tile_size=512 overlap=64 "
            "images_min_dim=512 images_max_dim=1024 model=/data/logs/mask_rcnn_b_0020.h5")
    assert manual.substitute(line, "/tmp/d") == (
        "i.ann.maskrcnn.train logs=/tmp/d/logs epochs=2 steps_per_epoch=1 "
        "validation_steps=1 backbone=resnet18 tile_size=128 overlap=32 "
        "images_min_dim=64 images_max_dim=64 model=/tmp/d/logs/mask_rcnn_b_0001.h5")
    assert manual.substitute('run(epochs=20, backbone="resnet50", tile_size=256, '
                             'logs="/data/logs")', "/tmp/d") == \
        'run(epochs=1, backbone="resnet18", tile_size=64, logs="/tmp/d/logs")'
    assert manual.substitute('train name=b model=coco epochs=20', "/tmp/d") == \
        "train name=b backbone=resnet18 epochs=1"
    assert manual.substitute('run(model="coco")', "/tmp/d") == 'run(backbone="resnet18")'
    # only /data itself: other paths and the region stay as written
    unchanged = "g.region n=5623528 res=0.5 && ls /database/data mydata/x"
    assert manual.substitute(unchanged, "/tmp/d") == unchanged


def test_unknown_commands_and_stray_code_fail():
    with pytest.raises(ValueError):
        manual.code_blocks('<div class="code"><pre>g.region -p</pre></div><pre>ls</pre>')
    with pytest.raises(AssertionError, match="no promise known"):
        manual.Expectations({}).expect(["r.mapcalc", "expression=a=1"], "/mapset")
    with pytest.raises(AssertionError, match="steps_per_epoch"):
        manual.Expectations({}).expect(["i.ann.maskrcnn.train", "epochs=1", "logs=/l",
                                        "name=n", "backbone=resnet18"], "/mapset")
