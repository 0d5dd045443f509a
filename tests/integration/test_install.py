"""The addon installs with g.extension and with make, the installed modules run, and
tools/setup.sh installs what g.extension and the tests need."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, copy_source_tree, grass_config
from support.g_extension import required_programs

pytestmark = pytest.mark.grass
MODULES = ("i.ann.maskrcnn.train", "i.ann.maskrcnn.detect")


def test_g_extension_installs_both_modules_and_the_library(addon):
    result = addon["result"]
    assert result.returncode == 0, result.stderr
    base = addon["base"]
    for module in MODULES:
        assert os.access(base / "scripts" / module, os.X_OK)
        assert (base / "docs" / "html" / f"{module}.html").is_file()
    suite_page = (base / "docs" / "html" / "i.ann.maskrcnn.html").read_text()
    assert "<title>i.ann.maskrcnn - GRASS GIS Manual</title>" in suite_page  # built, not source
    assert_images_installed(base / "docs" / "html")
    library = base / "etc" / "i.ann.maskrcnn" / "maskrcnnlib"
    source_files = sorted(p.relative_to(ROOT / "maskrcnnlib")
                          for p in (ROOT / "maskrcnnlib").rglob("*.py"))
    installed = sorted(p.relative_to(library) for p in library.rglob("*.py"))
    assert installed == source_files
    # data the library reads at run time (the COCO layout model=coco checks downloads by)
    data = sorted(p.relative_to(ROOT / "maskrcnnlib")
                  for p in (ROOT / "maskrcnnlib").rglob("*.json"))
    assert data and sorted(p.relative_to(library) for p in library.rglob("*.json")) == data


def assert_images_installed(html_dir):
    """Every image the manual pages show lies beside them (the suite page's figure too)."""
    shown = {page: set(re.findall(r'<img src="([^":/]+)"', (html_dir / page).read_text()))
             for page in ["i.ann.maskrcnn.html"] + [module + ".html" for module in MODULES]}
    assert "i_ann_maskrcnn_detect_demo.png" in shown["i.ann.maskrcnn.html"]
    for page, images in shown.items():
        for image in images - {"grass_logo.png"}:  # GRASS's logo is in GRASS's docs
            assert (html_dir / image).is_file(), (page, image)


@pytest.mark.parametrize("module", MODULES)
def test_installed_module_prints_help(addon, run_module, module):
    result = run_module(module, "--help", env=addon["env"])
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stderr + result.stdout


def test_installed_train_finds_the_installed_library(addon, run_module, tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    result = run_module("i.ann.maskrcnn.train", env=addon["env"], cwd=tmp_path,
                        training_dataset=dataset, classes="building,tree",
                        logs=tmp_path / "logs", name="test")
    assert result.returncode != 0
    # The library's DatasetError about the empty directory: the library was imported.
    assert "ERROR" in result.stderr and str(dataset) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_installed_detect_finds_the_installed_library(addon, run_module, tmp_path):
    import grass.script as gs

    gs.run_command("g.region", rows=10, cols=10, n=10, s=0, e=10, w=0)
    gs.mapcalc("install_band = row()", overwrite=True, quiet=True)
    model = tmp_path / "model.h5"
    model.write_bytes(b"")
    result = run_module("i.ann.maskrcnn.detect", env=addon["env"], cwd=tmp_path,
                        input="install_band", model=model, classes="building")
    assert result.returncode != 0
    # The library's ModelFileError about the empty file: the library was imported.
    assert "ERROR" in result.stderr and str(model) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_make_builds_against_grass_dev(grass_session, tmp_path):
    """make MODULE_TOPDIR=/usr/lib/grass82 builds, into directories of our choice."""
    source = copy_source_tree(tmp_path / "src")
    out = tmp_path / "dist"
    gisbase = grass_session["GISBASE"]
    command = ["make", f"MODULE_TOPDIR={gisbase}", f"RUN_GISRC={grass_session['GISRC']}",
               f"BIN={out}/bin", f"HTMLDIR={out}/docs/html", f"RESTDIR={out}/docs/rest",
               f"MANBASEDIR={out}/docs/man", f"SCRIPTDIR={out}/scripts",
               f"STRINGDIR={out}", f"ETC={out}/etc", f"ERRORLOG={out}/errors.log"]
    result = subprocess.run(command, cwd=source, env=grass_session, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (out / "errors.log").exists(), (out / "errors.log").read_text()
    for module in MODULES:
        assert os.access(out / "scripts" / module, os.X_OK)
        page = (out / "docs" / "html" / f"{module}.html").read_text()
        assert "DESCRIPTION" in page and "model" in page
    assert (out / "etc" / "i.ann.maskrcnn" / "maskrcnnlib" / "__init__.py").is_file()
    assert_images_installed(out / "docs" / "html")


def setup_packages(need):
    """The packages of tools/apt-packages.txt for need: "all" (tools/setup.sh) or "dev" (--dev only)."""
    rows = [line.split() for line in (ROOT / "tools" / "apt-packages.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    return [row[0] for row in rows if row[1] == need]


def programs_shipped(packages):
    """{program: package} for every file in a bin directory of the given installed packages."""
    shipped = {}
    for package in packages:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
        assert listing.returncode == 0, \
            f"{package} (tools/apt-packages.txt) is not installed: run tools/setup.sh --dev"
        for path in listing.stdout.splitlines():
            folder, name = os.path.split(path)
            if folder.endswith(("/bin", "/sbin")):
                shipped.setdefault(name, package)
    return shipped


def debian_package_of(program):
    """Which Debian package has the program here, to name it in a failure."""
    path = shutil.which(program)
    if path is None:
        return "not installed on this machine"
    owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True,
                           text=True)
    return owner.stdout.split(":")[0] if owner.returncode == 0 else f"{path}, from no package"


def test_setup_installs_every_program_that_g_extension_requires():
    """Both README commands install the addon with g.extension, which stops unless the
    programs its check_progs() asks for are there: setup's packages for all ship each."""
    script = Path(grass_config("path")) / "scripts" / "g.extension"
    programs = required_programs(script.read_text())
    shipped = programs_shipped(setup_packages("all"))
    missing = {program: debian_package_of(program) for program in programs
               if program not in shipped}
    assert not missing, (f"{script} requires programs that no 'all' package of "
                         f"tools/apt-packages.txt ships (program: its package here): {missing}")


@pytest.mark.parametrize("need, program", [
    ("all", "grass"),
    # test_gui_dialogs.py's; its `import` (imagemagick) is an alternatives link that
    # no package lists, so it is not checked here
    ("dev", "Xvfb"), ("dev", "xwininfo"),
])
def test_setup_installs_the_programs_the_readme_commands_run(need, program):
    assert program in programs_shipped(setup_packages(need)), debian_package_of(program)


def test_required_programs_follows_what_check_progs_asks_for():
    """A GRASS whose g.extension asks for git gives git; one without check_progs() fails."""
    later = (
        "import sys\n"
        "if sys.platform.startswith('freebsd'):\n    MAKE = 'gmake'\nelse:\n    MAKE = 'make'\n"
        "def check_progs():\n"
        "    for prog in (MAKE, 'gcc', 'git'):\n"
        "        if not gs.find_program(prog, '--help'):\n"
        "            gs.fatal('missing')\n")
    assert required_programs(later) == ["make", "gcc", "git"]
    with pytest.raises(LookupError):
        required_programs("def check_progs():\n    pass\n")
    with pytest.raises(LookupError):
        required_programs("def main():\n    pass\n")
