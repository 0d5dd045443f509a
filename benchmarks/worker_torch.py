"""bench_model.py's and bench_train.py's worker for torchvision's Mask R-CNN (CPU):
maskrcnn_resnet50_fpn, or the same on another ResNet-FPN for the training step.

Run by the driver in the benchmark's own torch environment (never ours):
python worker_torch.py THREADS SIZE TARGET_DETECTIONS

The model is torchvision's with weights=None, weights_backbone=None (random
initialisation, seeded), 3 classes, min_size = max_size = SIZE (no resizing),
at most 100 detections, box_score_thresh 0.7. Two adjustments, both free of
cost in time:
- its BatchNorm statistics (mean 0, variance 1 as initialised) are set from one
  pass of the backbone over the benchmark images, so that activations stay of
  order one as in ours (see calibrate_batch_norm);
- TARGET_DETECTIONS >= 0 shifts the background logit's bias (one number, bisected
  in [-10, 10]) so that about that many detections pass the score threshold,
  which gives the mask head and the mask pasting as much work as in our engine;
  -1 keeps the initialisation as it is.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

THREADS, SIZE, TARGET = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
RESIZE = sys.argv[4:] == ["default"]  # torchvision's own resizing (to 800 px) kept
common.limit_threads(THREADS)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models.detection import MaskRCNN  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

torch.set_num_threads(THREADS)
torch.set_num_interop_threads(THREADS)

STATE = {}
CLIP_NORM = 5.0  # ours/matterport: SGD clipnorm, each gradient clipped to this norm


def clip_each(params, max_norm):
    """Clip every parameter's gradient to `max_norm` on its own (Keras' clipnorm)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads)
    scales = [torch.clamp(max_norm / (n + 1e-6), max=1.0) for n in norms]
    torch._foreach_mul_(grads, scales)


def build(backbone="resnet50", anchor_scales=None, **kwargs):
    """torchvision's Mask R-CNN on a ResNet-FPN, seeded random initialisation.

    For resnet50 this is maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    (same modules, same initial values): BatchNorm2d, every backbone layer
    trainable. anchor_scales: one anchor size per FPN level (default 32..512).
    """
    torch.manual_seed(common.WEIGHT_SEED)
    if anchor_scales:
        kwargs["rpn_anchor_generator"] = AnchorGenerator(
            tuple((int(s),) for s in anchor_scales), ((0.5, 1.0, 2.0),) * len(anchor_scales))
    features = resnet_fpn_backbone(backbone_name=backbone, weights=None,
                                   norm_layer=torch.nn.BatchNorm2d, trainable_layers=5)
    return MaskRCNN(
        features, num_classes=common.NUM_CLASSES,
        # native size; its default (RESIZE) scales the shorter side to 800 px
        **({} if RESIZE else {"min_size": SIZE, "max_size": SIZE}),
        box_score_thresh=common.SCORE_THRESHOLD,
        **{"box_detections_per_img": common.MAX_DETECTIONS, **kwargs})


def calibrate_batch_norm(model, images):
    """Give the backbone's BatchNorm layers the statistics of `images`.

    With weights=None torchvision's BatchNorm2d layers hold mean 0, variance 1:
    in eval mode (or frozen) they are the identity and the activations of a random
    ResNet-50 grow by orders of magnitude. One forward pass of the backbone in
    training mode sets the statistics of the images, as ours and matterport run
    weights whose activations stay of order one.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one pass gives its own statistics
    was_training = model.training
    model.backbone.train()
    with torch.no_grad():
        model.backbone(model.transform(images)[0].tensors)
    model.train(was_training)
    return model


def freeze_batch_norm(model):
    """BatchNorm2d -> FrozenBatchNorm2d with the same statistics.

    Ours keeps BatchNorm frozen in training (TRAIN_BN False, the 2018 addon's
    setting; torchvision does the same with pretrained weights), so the training
    steps compare like with like.
    """
    _freeze(model)
    return model


def _freeze(module):
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze(child)


def detect(model, tensor):
    with torch.inference_mode():
        return model([tensor])[0]


def match_detections(model, tensor, target):
    """Bisect the background bias until about `target` detections remain."""
    bias = model.roi_heads.box_predictor.cls_score.bias
    base = float(bias[0])

    def count(shift):
        with torch.no_grad():
            bias[0] = base + shift
        return len(detect(model, tensor)["scores"])

    low, high = -10.0, 10.0  # counts fall as the background bias rises
    best = (abs(count(0.0) - target), 0.0)
    for _ in range(14):
        mid = 0.5 * (low + high)
        found = count(mid)
        best = min(best, (abs(found - target), mid))
        if found == target:
            break
        if found > target:
            low = mid
        else:
            high = mid
    count(best[1])
    return best[1]


def load(cap=common.MAX_DETECTIONS):
    start = time.perf_counter()
    model = build(box_detections_per_img=int(cap)).eval()
    load_s = time.perf_counter() - start
    image = common.bench_image(SIZE)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
    calibrate_batch_norm(model, [tensor])
    native = len(detect(model, tensor)["scores"])
    shift = match_detections(model, tensor, TARGET) if TARGET >= 0 else 0.0
    STATE.update(model=model, tensor=tensor)
    return {"load_s": load_s, **warm_up(), "native_detections": native,
            "background_bias_shift": shift, "target_detections": TARGET,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "numpy": np.__version__}}


def warm_up():
    """Two warm-up runs (timed) and the detections of a third, as load reports them."""
    model, tensor = STATE["model"], STATE["tensor"]
    warmup = common.timed(lambda: detect(model, tensor), 2)
    result = detect(model, tensor)
    boxes = result["boxes"].numpy()[:, [1, 0, 3, 2]]  # (x1, y1, x2, y2) -> (y1, x1, y2, x2)
    return {"warmup_s": warmup, "detections": len(result["scores"]),
            "result": common.detections_summary(np.round(boxes), result["labels"].numpy(),
                                                result["scores"].numpy())}


def set_cap(cap):
    """Keep at most `cap` detections (the highest scores) from now on."""
    STATE["model"].roi_heads.detections_per_img = int(cap)
    return warm_up()


def infer(n):
    model, tensor = STATE["model"], STATE["tensor"]
    results = []
    times = common.timed(lambda: results.append(detect(model, tensor)), n)
    return {"times": times, "detections": len(results[-1]["scores"])}


def train_batch(scenes):
    """Scenes (image, masks, class ids) as torchvision's training input: images
    [3, H, W] in 0..1 and targets (boxes x1, y1, x2, y2 in pixels, labels, masks
    [N, H, W] uint8)."""
    images, targets = [], []
    for image, masks, class_ids in scenes:
        images.append(torch.from_numpy(np.ascontiguousarray(
            image.transpose(2, 0, 1))).float() / 255.0)
        boxes = []
        for i in range(masks.shape[2]):
            rows = np.flatnonzero(masks[:, :, i].any(axis=1))
            cols = np.flatnonzero(masks[:, :, i].any(axis=0))
            boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])  # x1, y1, x2, y2
        targets.append({
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.from_numpy(class_ids.astype(np.int64)),
            "masks": torch.from_numpy(np.ascontiguousarray(
                masks.transpose(2, 0, 1)).astype(np.uint8)),
        })
    return images, targets


def train_setup(batch=common.TRAIN_BATCH, backbone="resnet50", anchor_scales=None,
                warmup=2, input_batches=8):
    """A training step as torchvision's reference loop runs it: forward in training
    mode (its transform, RPN anchor matching and ROI sampling happen inside),
    the summed losses backward, each gradient clipped, SGD with momentum.
    input_s: seconds to turn the scenes into its input tensors (train_batch)."""
    start = time.perf_counter()
    # weights=None: every backbone layer trains, as ours with stage "all"
    model = build(backbone, anchor_scales,
                  box_batch_size_per_image=common.TRAIN_ROIS_PER_IMAGE,
                  box_positive_fraction=0.33,
                  rpn_batch_size_per_image=common.RPN_TRAIN_ANCHORS)
    scenes = common.train_scenes(SIZE, count=int(batch))
    images, targets = train_batch(scenes)
    input_s = sum(common.timed(lambda: train_batch(scenes), input_batches)) / input_batches
    freeze_batch_norm(calibrate_batch_norm(model, images))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=1e-4)

    def one_step():
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        clip_each(params, CLIP_NORM)
        optimizer.step()
        return float(loss.detach())

    STATE["one_step"] = one_step
    setup_s = time.perf_counter() - start
    warm = common.timed(one_step, warmup)
    return {"setup_s": setup_s, "warmup_s": warm, "input_s": input_s,
            "trainable_parameters": len(params),
            "gt_instances": [len(t["labels"]) for t in targets],
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "numpy": np.__version__}}


def train(n):
    return common.timed_steps(STATE["one_step"], n)


if __name__ == "__main__":
    common.serve({"load": load, "cap": set_cap, "infer": infer, "train_setup": train_setup,
                  "train": train})
