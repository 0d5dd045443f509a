"""One default per option: what a module's header offers (its `answer:`, which the GUI
dialog and --help show), what the job dataclass takes when the option is not given
(library callers: TrainJob, DetectJob) and, for settings of the network, Config's
default (where TrainJob takes them from) must agree. A default changed in one place and not the others turns this red,
naming the option and the values."""
import dataclasses
import re

import pytest

from conftest import ROOT
from maskrcnnlib.config import Config
from maskrcnnlib.detect import DetectJob
from maskrcnnlib.train_job import TrainJob

MODULES = {"train": (ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.py", TrainJob),
           "detect": (ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.py", DetectJob)}
# option -> job field where the names differ
FIELD_OF = {"train": {"model": "initial_weights", "training_dataset": "dataset_dir",
                      "input": "bands"},
            "detect": {}}
# how an answer reads as the job's value where the types differ
AS_JOB_VALUE = {("train", "augment"): {"none": False, "flip_rotate": True},
                ("detect", "output_type"): {"area": ["area"]}}
# the network's settings: TrainJob field -> Config field
CONFIG_FIELD = {"rois_per_image": "train_rois_per_image", "images_min_dim": "image_min_dim",
                "images_max_dim": "image_max_dim", "epochs": "epochs",
                "steps_per_epoch": "steps_per_epoch", "validation_steps": "validation_steps",
                "learning_rate": "learning_rate", "images_per_gpu": "images_per_gpu",
                "gpu_count": "gpu_count", "accumulation_steps": "accumulation_steps",
                "precision": "precision", "backbone": "backbone"}


def header_options(path):
    """{key: (type, answer or None)} of the module header's options."""
    options = {}
    for block in re.findall(r"^# %option.*?^# %end", path.read_text(), re.S | re.M):
        key = re.search(r"^# % key: (\S+)", block, re.M).group(1)
        kind = re.search(r"^# % type: (\S+)", block, re.M)
        answer = re.search(r"^# % answer: (.*)$", block, re.M)
        options[key] = (kind.group(1) if kind else "string",
                        answer.group(1).strip() if answer else None)
    return options


def job_defaults(job_class):
    values = {}
    for item in dataclasses.fields(job_class):
        if item.default is not dataclasses.MISSING:
            values[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING:
            values[item.name] = item.default_factory()
    return values


def as_job_value(module, key, kind, answer):
    if (module, key) in AS_JOB_VALUE:
        return AS_JOB_VALUE[(module, key)][answer]
    return {"integer": int, "double": float}.get(kind, str)(answer)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_header_answers_are_the_job_defaults(module):
    path, job_class = MODULES[module]
    defaults = job_defaults(job_class)
    wrong = []
    for key, (kind, answer) in header_options(path).items():
        name = FIELD_OF[module].get(key, key)
        if answer is None:
            if name in defaults and defaults[name] not in (None, [], False):
                wrong.append("{}: no answer in the header, {} in {}".format(
                    key, defaults[name], job_class.__name__))
            continue
        if name not in defaults:
            wrong.append("{}: answer {} in the header, no default in {}".format(
                key, answer, job_class.__name__))
        elif as_job_value(module, key, kind, answer) != defaults[name]:
            wrong.append("{}: answer {} in the header, {} in {}".format(
                key, answer, defaults[name], job_class.__name__))
    assert not wrong, "; ".join(wrong)


def test_train_job_defaults_are_configs():
    job, config = job_defaults(TrainJob), Config()
    wrong = ["{} = {} in TrainJob, {} = {} in Config".format(
        name, job[name], field, getattr(config, field))
        for name, field in CONFIG_FIELD.items() if job[name] != getattr(config, field)]
    assert not wrong, "; ".join(wrong)


def test_the_check_sees_a_changed_default():
    """The comparison itself: a header with another answer is caught."""
    path, job_class = MODULES["train"]
    options = header_options(path)
    kind, answer = options["tile_size"]
    assert as_job_value("train", "tile_size", kind, answer) == job_defaults(TrainJob)["tile_size"]
    assert as_job_value("train", "tile_size", kind, str(int(answer) + 1)) != \
        job_defaults(TrainJob)["tile_size"]
