"""nprocs= of both modules: how many CPU threads TensorFlow may use.

TensorFlow runs each operation's arithmetic on its intra-op thread pool and
independent operations side by side on its inter-op pool. nprocs sets the
intra-op pool to nprocs threads and the inter-op pool to min(nprocs, 2): two
operations may then be under way at once (the pyramid's heads are independent),
both sharing the nprocs arithmetic threads, so the work stays on about nprocs
cores; with nprocs=1 the arithmetic runs on one thread. nprocs=0 (the default)
leaves TensorFlow's own choice (a pool as large as the machine's cores).

The pools can be sized only before TensorFlow runs anything: call
limit_threads before the first model is built.
"""
from maskrcnnlib.errors import MaskRCNNError

INTER_OP_MAX = 2


def thread_counts(nprocs):
    """(intra-op, inter-op) threads for nprocs, or None for TensorFlow's default.

    nprocs: 0 = all cores (TensorFlow's default), n > 0 = n threads. Raises
    MaskRCNNError for a negative value.
    """
    nprocs = int(nprocs)
    if nprocs < 0:
        raise MaskRCNNError("nprocs must be 0 (all cores) or more, got {}".format(nprocs))
    if nprocs == 0:
        return None
    return nprocs, min(nprocs, INTER_OP_MAX)


def limit_threads(nprocs):
    """Size TensorFlow's thread pools for nprocs (see thread_counts).

    Returns (intra-op, inter-op) as TensorFlow reports them afterwards, or None for
    nprocs=0 (TensorFlow's default pools; TensorFlow is not imported for that).
    Raises MaskRCNNError when TensorFlow has already run and its pools can no
    longer change.
    """
    counts = thread_counts(nprocs)
    if counts is None:
        return None
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(counts[0])
        tf.config.threading.set_inter_op_parallelism_threads(counts[1])
    except RuntimeError as error:
        raise MaskRCNNError("nprocs={} cannot be applied: TensorFlow is already "
                            "running ({})".format(nprocs, error)) from error
    return (tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())
