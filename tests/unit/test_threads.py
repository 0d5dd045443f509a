"""nprocs= (maskrcnnlib.threads): TensorFlow's thread pools as TensorFlow itself reports
them, in a fresh process (the pools can be sized only before TensorFlow runs)."""
import subprocess
import sys

import pytest

from conftest import ROOT
from maskrcnnlib.errors import MaskRCNNError
from maskrcnnlib.threads import thread_counts

PROBE = """
import sys
sys.path.insert(0, {root!r})
from maskrcnnlib.threads import limit_threads
limit_threads({nprocs})
import tensorflow as tf
print(float(tf.reduce_sum(tf.ones((64, 64)) @ tf.ones((64, 64)))))  # TensorFlow ran
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
try:
    limit_threads(5)
except Exception as error:
    print(type(error).__name__)
"""


def pools(nprocs):
    result = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), nprocs=nprocs)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ran, counts, late = result.stdout.split("\n")[:3]
    assert float(ran) == 64 * 64 * 64
    return tuple(int(n) for n in counts.split()), late


def test_nprocs_sizes_tensorflows_pools_before_it_runs():
    assert pools(1) == ((1, 1), "MaskRCNNError")
    assert pools(3) == ((3, 2), "MaskRCNNError")
    # 0: TensorFlow's default pools (0 means "as many as the machine has")
    assert pools(0)[0] == (0, 0)


def test_thread_counts():
    assert thread_counts(0) is None
    assert thread_counts(1) == (1, 1)
    assert thread_counts(2) == (2, 2)
    assert thread_counts(16) == (16, 2)
    with pytest.raises(MaskRCNNError, match="nprocs"):
        thread_counts(-1)
