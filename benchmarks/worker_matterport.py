"""bench_model.py's and bench_train.py's worker for MATTERPORT's engine (its TF2
port, tf_keras).

Run by the driver in matterport's environment (tensorflow 2.21 + tf_keras, see
tests/fixtures/matterport/README.md):
python worker_matterport.py THREADS SIZE WEIGHTS_H5 MRCNN_PATH
matterport's code stays outside the repository: make_matterport_fixtures.py
copies MRCNN_PATH/mrcnn into a temporary folder, patches that copy for tf_keras
and imports it; for training, TRAINING_PATCHES too. The weights are the file our
worker wrote (same layout).
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

THREADS, SIZE, WEIGHTS, MRCNN_PATH = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                      sys.argv[4])
common.limit_threads(THREADS)
sys.path.insert(0, common.FIXTURES)

import numpy as np  # noqa: E402
import make_matterport_fixtures as fixtures  # noqa: E402
import parity_weights  # noqa: E402

STATE = {}


# Training mode needs these too (the fixtures patch only the inference path).
TRAINING_PATCHES = [
    ("model",
     "x, K.shape(input_image)[1:3]))(input_gt_boxes)",
     "x[0], K.shape(x[1])[1:3]))([input_gt_boxes, input_image])",
     "a Lambda may not capture another Keras input: the image comes in as an input"),
    ("model",
     'KL.Lambda(lambda x: tf.Variable(anchors), name="anchors")',
     'KL.Lambda(lambda x, a=anchors: tf.constant(a, tf.float32), name="anchors")',
     "a Lambda may not create a tf.Variable at each call: the anchors are a constant "
     "(bound now: the name `anchors` is the Lambda's output by the time it runs)"),
    ("model",
     "        self.keras_model.metrics_tensors = []\n",
     "        metrics_tensors = []\n",
     "a list set on a built model is tracked (ListWrapper), which add_loss cannot hash"),
    ("model",
     "            self.keras_model.metrics_tensors.append(loss)",
     "            metrics_tensors.append(loss)",
     "the same list, kept local"),
    ("model",
     "        self.keras_model._losses = []\n        self.keras_model._per_input_losses = {}\n",
     "",
     "nothing to clear on a new model; the assignments make tracked wrappers too"),
    ("model",
     "        reg_losses = [\n",
     "        reg_losses = lambda: [\n",
     "the L2 term computed in each step (TF1 graph mode did), not once, eagerly"),
    ("model",
     "self.keras_model.add_loss(tf.add_n(reg_losses))",
     "self.keras_model.add_loss(lambda: tf.add_n(reg_losses()))",
     "add_loss takes a symbolic tensor or a callable, not an eager value"),
    ("model",
     "loss=[None] * len(self.keras_model.outputs))",
     "loss=None)",
     "tf_keras wants targets when compile's loss is a list, even of Nones"),
    ("model",
     "lr=learning_rate, momentum=momentum,",
     "learning_rate=learning_rate, momentum=momentum,",
     "tf_keras ignores `lr` (with a warning) and would train at its default 0.01"),
]


def import_matterport(training=False):
    """(tf_keras, tensorflow, mrcnn): matterport's code from a patched temporary copy."""
    tf_keras = fixtures.install_keras_alias()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    workdir = tempfile.mkdtemp(prefix="bench-matterport-")
    STATE["workdir"] = workdir
    if training:  # load_matterport applies the module's PATCHES list
        fixtures.PATCHES = fixtures.PATCHES + TRAINING_PATCHES
    mrcnn, _ = fixtures.load_matterport(MRCNN_PATH, workdir)
    return tf_keras, tf, mrcnn


def build_model(mrcnn, mode, **settings):
    """matterport's MaskRCNN with the 2018 addon's configuration at SIZE x SIZE,
    `settings` on top (a callable is kept as a plain function, not a method)."""

    class BenchConfig(mrcnn.config.Config):
        pass

    settings = dict(fixtures.ADDON_DETECT_CONFIG, IMAGE_MIN_DIM=SIZE, IMAGE_MAX_DIM=SIZE,
                    NUM_CLASSES=common.NUM_CLASSES, **settings)
    for key, value in settings.items():
        setattr(BenchConfig, key, staticmethod(value) if callable(value) else value)
    return mrcnn.model.MaskRCNN(mode=mode, model_dir=STATE["workdir"], config=BenchConfig())


def load_parity_weights(keras_model, path):
    """Load the .h5 our worker wrote; returns how many weights were checked equal to
    their arrays (same layout, same weights as ours)."""
    keras_model.load_weights(path, by_name=True)
    layout, _ = fixtures.saved_layout(keras_model)
    return fixtures.check_loaded(keras_model, layout,
                                 parity_weights.generate_arrays(layout, common.WEIGHT_SEED))


def load(cap=common.MAX_DETECTIONS):
    start = time.perf_counter()
    tf_keras, tf, mrcnn = import_matterport()
    model = build_model(mrcnn, "inference", DETECTION_MIN_CONFIDENCE=common.SCORE_THRESHOLD,
                        DETECTION_MAX_INSTANCES=int(cap))
    checked = load_parity_weights(model.keras_model, WEIGHTS)
    load_s = time.perf_counter() - start
    image = common.bench_image(SIZE)
    STATE.update(model=model, image=image)
    warmup = common.timed(lambda: model.detect([image], verbose=0), 2)
    result = model.detect([image], verbose=0)[0]
    return {"load_s": load_s, "warmup_s": warmup, "weights_checked": checked,
            "detections": len(result["class_ids"]),
            "result": common.detections_summary(result["rois"], result["class_ids"],
                                                result["scores"]),
            "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                         "numpy": np.__version__}}


def infer(n):
    model, image = STATE["model"], STATE["image"]
    results = []
    times = common.timed(lambda: results.append(model.detect([image], verbose=0)[0]), n)
    return {"times": times, "detections": len(results[-1]["class_ids"])}


# ------------------------------------------------------------------ training

def resnet18_backbone(KL, BatchNorm):
    """(backbone, backbone shapes) callables for matterport's config.BACKBONE and
    COMPUTE_BACKBONE_SHAPE, its documented way to plug in another backbone.

    A ResNet-18 with our layer names (maskrcnnlib.model.backbone: basic blocks of
    two 3x3 convs, branch2a/branch2b, stride on branch2a, 1x1 projection branch1
    from stage 3 on) made of matterport's own layers, so the parity weights load
    by name; matterport itself has only resnet50 and resnet101.
    """

    def conv_bn(x, filters, kernel, name, train_bn, strides=1, relu=True):
        x = KL.Conv2D(filters, kernel, strides=strides, padding="same", name="res" + name)(x)
        x = BatchNorm(name="bn" + name)(x, training=train_bn)
        return KL.Activation("relu")(x) if relu else x

    def backbone(input_image, stage5=True, train_bn=True):
        x = KL.ZeroPadding2D((3, 3))(input_image)
        x = KL.Conv2D(64, (7, 7), strides=(2, 2), name="conv1")(x)
        x = KL.Activation("relu")(BatchNorm(name="bn_conv1")(x, training=train_bn))
        outputs = [KL.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)]
        x = outputs[0]
        for stage, width in ((2, 64), (3, 128), (4, 256), (5, 512)):
            for block in "ab":
                strides = 2 if stage > 2 and block == "a" else 1
                name = "{}{}_branch".format(stage, block)
                y = conv_bn(x, width, 3, name + "2a", train_bn, strides)
                y = conv_bn(y, width, 3, name + "2b", train_bn, relu=False)
                if strides > 1:
                    x = conv_bn(x, width, 1, name + "1", train_bn, strides, relu=False)
                x = KL.Activation("relu", name="res{}{}_out".format(stage, block))(
                    KL.Add()([y, x]))
            outputs.append(x)
        return outputs

    def shapes(image_shape):
        return np.array([[-(-image_shape[0] // s), -(-image_shape[1] // s)]
                         for s in (4, 8, 16, 32, 64)])

    return backbone, shapes


def scenes_dataset(utils, scenes):
    """The benchmark scenes as a matterport Dataset (2 classes, masks given)."""

    class Scenes(utils.Dataset):
        def load_image(self, image_id):
            return scenes[image_id][0]

        def load_mask(self, image_id):
            return scenes[image_id][1], scenes[image_id][2]

    dataset = Scenes()
    for class_id in range(1, common.NUM_CLASSES):
        dataset.add_class("bench", class_id, "class{}".format(class_id))
    for index in range(len(scenes)):
        dataset.add_image("bench", image_id=index, path=None)
    dataset.prepare()
    return dataset


def train_setup(batch=common.TRAIN_BATCH, backbone="resnet50", anchor_scales=None,
                weights=None, warmup=2, input_batches=8):
    """matterport's training step as its MaskRCNN.train() sets it up: all layers
    trainable (set_trainable), its compile() (its five losses and L2 term, SGD with
    momentum and clipnorm), then keras_model.train_on_batch on one batch that its
    data_generator made beforehand (numpy arrays; train_on_batch's conversion to
    tensors is inside the timed step, as in its fit loop). input_s: seconds a batch
    of data_generator (molding, RPN anchor targets in numpy, batching).
    backbone "resnet18": resnet18_backbone through config.BACKBONE."""
    start = time.perf_counter()
    tf_keras, tf, mrcnn = import_matterport(training=True)
    tf.random.set_seed(common.TRAIN_SEED)
    settings = dict(IMAGES_PER_GPU=int(batch),
                    TRAIN_ROIS_PER_IMAGE=common.TRAIN_ROIS_PER_IMAGE,
                    RPN_TRAIN_ANCHORS_PER_IMAGE=common.RPN_TRAIN_ANCHORS)
    if anchor_scales:
        settings["RPN_ANCHOR_SCALES"] = tuple(int(s) for s in anchor_scales)
    if backbone == "resnet18":
        settings["BACKBONE"], settings["COMPUTE_BACKBONE_SHAPE"] = resnet18_backbone(
            tf_keras.layers, mrcnn.model.BatchNorm)
    else:
        settings["BACKBONE"] = backbone
    model = build_model(mrcnn, "training", **settings)
    checked = load_parity_weights(model.keras_model, weights) if weights else 0
    model.set_trainable(".*", verbose=0)  # MaskRCNN.train(layers="all")
    model.compile(model.config.LEARNING_RATE, model.config.LEARNING_MOMENTUM)
    scenes = common.train_scenes(SIZE, count=int(batch))
    generator = mrcnn.model.data_generator(scenes_dataset(mrcnn.utils, scenes), model.config,
                                           shuffle=False, batch_size=int(batch))
    inputs, _ = next(generator)
    input_s = sum(common.timed(lambda: next(generator), input_batches)) / input_batches

    def one_step():
        return float(np.sum(model.keras_model.train_on_batch(inputs)))

    STATE.update(one_step=one_step, model=model, inputs=inputs)
    setup_s = time.perf_counter() - start
    warm = common.timed(one_step, warmup)
    return {"setup_s": setup_s, "warmup_s": warm, "input_s": input_s,
            "weights_checked": checked,
            "trainable_variables": len(model.keras_model.trainable_weights),
            "gt_instances": [int(len(ids)) for _, _, ids in scenes],
            "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                         "numpy": np.__version__}}


def train(n):
    return common.timed_steps(STATE["one_step"], n)


def quit_cleanup():
    import shutil

    shutil.rmtree(STATE.get("workdir", ""), ignore_errors=True)


if __name__ == "__main__":
    try:
        common.serve({"load": load, "infer": infer, "train_setup": train_setup,
                      "train": train})
    finally:
        quit_cleanup()
