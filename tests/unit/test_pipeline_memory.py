"""Training input keeps glibc from handing every freed tensor back to the kernel.

TensorFlow's generator dataset lowers glibc's trim threshold to 128 KB, which also
pins the mmap threshold there: each larger allocation is then mapped anew and its
pages faulted in again. The check runs in a fresh process (the setting is
process-wide) and counts minor page faults while 4 MB arrays are made and freed.
"""
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's malloc settings (Linux)")

SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from maskrcnnlib.config import Config
    from maskrcnnlib.dataset.augment import augmented_iterator
    from maskrcnnlib.dataset.directory import ArrayDataset
    from maskrcnnlib.dataset.pipeline import training_dataset

    config = Config(num_classes=2, class_names=["a"], bands=3, image_min_dim=0,
                    image_max_dim=64).validate()
    masks = np.zeros((40, 40, 1), bool)
    masks[5:15, 5:15] = True
    data = ArrayDataset([(np.zeros((40, 40, 3), np.uint8), masks, np.array([1]))] * 3)
    batches = iter(training_dataset(augmented_iterator(data, config, seed=1), config,
                                    batch_size=1, seed=1))
    for _ in range(4):  # a pass starts again after every third sample
        next(batches)
    pages = 4 * 1024 * 1024 // resource.getpagesize()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        array = np.empty(pages * resource.getpagesize(), np.uint8)
        array[::resource.getpagesize()] = 1  # touch every page
        del array
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(faults, 50 * pages)
""")


def test_freed_tensors_are_reused_after_the_generator_dataset_starts():
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    faults, pages = (int(v) for v in result.stdout.split()[-2:])
    # mapped anew each time, the 50 arrays would fault in every page: 50 x 1024 faults
    assert faults < pages // 10, (faults, pages)


def test_keep_freed_memory_applies_on_glibc():
    from maskrcnnlib.dataset.pipeline import keep_freed_memory

    assert keep_freed_memory() is True
