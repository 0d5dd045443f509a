"""Both modules keep every option and flag of the 2018 i.ann.maskrcnn, and the
parser (plus the module's own checks) rejects bad values with a clear message."""
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT
from support.grass_helpers import error_message

pytestmark = pytest.mark.grass
SYSTEM_PYTHON = "/usr/bin/python3"  # the GUI's Python: no TensorFlow there

# name: (type, required, multiple, default) of the 2018 modules
TRAIN_OPTIONS = {
    # required in 2018; issue 4 adds input= (GRASS maps) as the alternative, and the
    # rules require one of the two
    "training_dataset": ("string", "no", "no", None),
    "model": ("string", "no", "no", None),
    # required in 2018; issue 18 takes them from the class column, the mask file names
    # or the checkpoint when not given
    "classes": ("string", "no", "yes", None),
    "logs": ("string", "yes", "no", None),
    "name": ("string", "yes", "no", None),
    "epochs": ("integer", "no", "no", "200"),
    "steps_per_epoch": ("integer", "no", "no", "3000"),
    "rois_per_image": ("integer", "no", "no", "64"),
    "images_per_gpu": ("integer", "no", "no", "1"),
    "gpu_count": ("integer", "no", "no", "1"),
    "mini_mask_size": ("integer", "no", "yes", None),
    "validation_steps": ("integer", "no", "no", "100"),
    "images_min_dim": ("integer", "no", "no", "256"),
    "images_max_dim": ("integer", "no", "no", "1280"),
    "backbone": ("string", "no", "no", "resnet101"),
}
TRAIN_FLAGS = {"e", "s", "b", "n"}
DETECT_OPTIONS = {
    "band1": ("string", "no", "yes", None),
    "band2": ("string", "no", "yes", None),
    "band3": ("string", "no", "yes", None),
    "images_directory": ("string", "no", "no", None),
    "images_format": ("string", "no", "no", None),
    "model": ("string", "yes", "no", None),
    # issue 5: a model card names the classes (classes= renames them, and is needed
    # for models without a card); area and point output may both be asked
    "classes": ("string", "no", "yes", None),
    "output_type": ("string", "no", "yes", "area"),
}
DETECT_FLAGS = {"e"}


def script(module):
    return str(ROOT / module / f"{module}.py")


def interface(run_module, addon, module):
    """The installed module's interface, read with the system Python (as the GUI does)."""
    installed = str(addon["base"] / "scripts" / module)
    result = run_module(SYSTEM_PYTHON, installed, "--interface-description", env=addon["env"])
    assert result.returncode == 0, result.stderr
    return ET.fromstring(result.stdout)


@pytest.mark.parametrize("module,options,flags", [
    ("i.ann.maskrcnn.train", TRAIN_OPTIONS, TRAIN_FLAGS),
    ("i.ann.maskrcnn.detect", DETECT_OPTIONS, DETECT_FLAGS),
])
def test_interface_description_lists_every_original_option(run_module, addon, module,
                                                           options, flags):
    task = interface(run_module, addon, module)
    assert task.get("name") == module
    assert task.findtext("keywords").strip().startswith("imagery")
    found = {}
    for parameter in task.findall("parameter"):
        default = parameter.findtext("default")
        found[parameter.get("name")] = (parameter.get("type"), parameter.get("required"),
                                        parameter.get("multiple"),
                                        default.strip() if default else None)
        assert (parameter.findtext("label") or parameter.findtext("description")).strip()
        assert parameter.findtext("guisection"), parameter.get("name")
    for name, expected in options.items():
        assert found.get(name) == expected, name
    assert {flag.get("name") for flag in task.findall("flag")} >= flags


def test_backbone_choices_are_the_original_ones(run_module, addon):
    task = interface(run_module, addon, "i.ann.maskrcnn.train")
    backbone = [p for p in task.findall("parameter") if p.get("name") == "backbone"][0]
    values = [v.findtext("name") for v in backbone.find("values").findall("value")]
    assert values[:2] == ["resnet50", "resnet101"]  # then the lighter resnet18/34


@pytest.mark.parametrize("module,description", [
    ("i.ann.maskrcnn.train", "Trains a Mask R-CNN model"),
    ("i.ann.maskrcnn.detect", "Detects objects"),
])
def test_html_description_and_help_work_without_tensorflow(run_module, module, description):
    """The module's own page and usage, from a Python without TensorFlow: an import of
    TensorFlow (or of maskrcnnlib) before gs.parser() makes both fail."""
    result = run_module(SYSTEM_PYTHON, script(module), "--html-description")
    assert result.returncode == 0, result.stderr
    assert "<html>" in result.stdout.lower() and module in result.stdout
    assert description in result.stdout
    result = run_module(SYSTEM_PYTHON, script(module), "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stderr and module in result.stderr and "classes=" in result.stderr


@pytest.fixture
def train_args(tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    return {"training_dataset": dataset, "classes": "building", "logs": tmp_path / "logs",
            "name": "test"}


@pytest.mark.parametrize("change,message", [
    ({"backbone": "resnet9"}, "<resnet9> out of range for parameter <backbone>"),
    ({"epochs": "0"}, "<0> out of range for parameter <epochs>"),
    ({"steps_per_epoch": "-5"}, "<-5> out of range for parameter <steps_per_epoch>"),
    ({"images_per_gpu": "two"}, "Invalid value <two> for parameter <images_per_gpu>"),
    ({"subgroup": "rgb"}, "Option <subgroup> requires <group>"),
    ({"name": None}, "Required parameter <name> not set"),
    ({"training_dataset": None}, "<training_dataset>, <input> and <group>"),
    ({"input": "red", "training_map": "areas"},
     "<input> requires all of <training_map> and <class_column>"),
    ({"tile_size": "128", "overlap": "64"}, "less than half of tile_size (128)"),
    ({"anchor_scales": "8,16"}, "anchor_scales takes 5 sizes"),
    ({"images_max_dim": "1000"}, "images_max_dim must be a multiple of 64, got 1000"),
    ({"images_min_dim": "512", "images_max_dim": "256"},
     "images_min_dim (512) is larger than images_max_dim (256)"),
    ({"classes": "tree,tree"}, "same name: tree,tree"),
    ({"mini_mask_size": "56,56,56"}, "<mini_mask_size> must be provided in multiples of 2"),
    ({"training_dataset": "/nonexistent/dataset"}, "</nonexistent/dataset> does not exist"),
    ({"model": "/nonexistent/weights.h5"}, "</nonexistent/weights.h5> does not exist"),
])
def test_train_rejects_bad_values(run_module, train_args, change, message):
    """Each bad value is named by the error itself (not by the usage printed before
    it), and stops the module as an error, not a crash."""
    args = {key: value for key, value in {**train_args, **change}.items() if value is not None}
    result = run_module(script("i.ann.maskrcnn.train"), **args)
    assert result.returncode != 0
    assert message in error_message(result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_train_exclude_flag_needs_a_model(run_module, train_args):
    """The parser's rule that -e needs model= (without it, -e would mean nothing)."""
    result = run_module(script("i.ann.maskrcnn.train"), "-e", **train_args)
    assert result.returncode != 0
    assert "Option <-e> requires <model>" in error_message(result.stderr), result.stderr


@pytest.fixture
def rasters(grass_session):
    import grass.script as gs

    gs.run_command("g.region", rows=10, cols=10, n=10, s=0, e=10, w=0)
    for name in ("red", "green", "blue"):
        gs.mapcalc(f"{name} = row()", overwrite=True, quiet=True)
    return "red", "green", "blue"


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("change,message", [
    ({"output_type": "line"}, "<line> out of range for parameter <output_type>"),
    ({"model": None}, "Required parameter <model> not set"),
    ({"band1": None}, "<input>, <band1>, <images_directory> and <group>"),
    ({"input": "red"},
     "<input>, <band1>, <images_directory> and <group> are mutually exclusive"),
    ({"subgroup": "rgb"}, "Option <subgroup> requires <group>"),
    ({"tile_size": "128", "overlap": "64"}, "less than half of tile_size (128)"),
    ({"band3": None}, "<band1> requires all of <band2> and <band3>"),
    ({"band1": "red,red"}, "must list the same number of raster maps (got 2, 1 and 1)"),
    ({"band2": "nosuchmap"}, "<nosuchmap> not found"),
    ({"model": "/nonexistent/model.h5"}, "</nonexistent/model.h5> does not exist"),
    ({"classes": "a,a"}, "same name: a,a"),
])
def test_detect_rejects_bad_values(run_module, rasters, model_file, change, message):
    """As for training: the error names the bad value, and nothing crashes."""
    args = {"band1": rasters[0], "band2": rasters[1], "band3": rasters[2],
            "model": model_file, "classes": "building", **change}
    args = {key: value for key, value in args.items() if value is not None}
    result = run_module(script("i.ann.maskrcnn.detect"), **args)
    assert result.returncode != 0
    assert message in error_message(result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_detect_images_directory_needs_its_format(run_module, model_file, tmp_path):
    result = run_module(script("i.ann.maskrcnn.detect"), images_directory=tmp_path,
                        model=model_file, classes="building")
    assert result.returncode != 0
    assert "<images_directory> requires all of <images_format>" in \
        error_message(result.stderr), result.stderr


def test_source_tree_modules_find_the_source_library(run_module, rasters, model_file,
                                                     train_args, tmp_path):
    result = run_module(script("i.ann.maskrcnn.train"), cwd=tmp_path, **train_args)
    # the library's DatasetError about the empty directory: the library was found
    assert "is empty: no image folders" in error_message(result.stderr), result.stderr
    result = run_module(script("i.ann.maskrcnn.detect"), cwd=tmp_path, band1=rasters[0],
                        band2=rasters[1], band3=rasters[2], model=model_file,
                        classes="building")
    # the library's ModelFileError about the empty model file: the library was found
    assert str(model_file) in error_message(result.stderr), result.stderr
    assert "Traceback" not in result.stderr
