#!/usr/bin/env python3
"""Multiply-accumulates of Mask R-CNN R50-FPN inference, ours (matterport's network)
against torchvision's maskrcnn_resnet50_fpn, stage by stage, from the layer shapes.

bench_model.py times both engines; this script says how much work each does, so
that a time ratio can be read against the work ratio. Counted: convolutions and
matrix products (over 98 % of the arithmetic); not counted: batch norm, NMS, ROI
align, resizing. Direct convolution is assumed (Winograd needs fewer multiplications).

    python3 benchmarks/work_count.py [--size 512] [--ours-detections 68]
        [--torch-detections 50] [--proposals 1000]
"""
import argparse


def conv(side, cin, cout, kernel, count=1):
    """MACs of a convolution with a side x side output."""
    return count * side * side * cin * cout * kernel * kernel


def resnet50(size, stride_on_3x3):
    """ResNet-50 to C5. matterport puts a stage's stride on the first 1x1 conv
    (ResNet v1); torchvision on the 3x3 conv (v1.5), so its first 1x1 runs at the
    input's resolution."""
    total = conv(size // 2, 3, 64, 7)
    cin = 64
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        side = size // 4 // (2 ** stage)
        for block in range(blocks):
            strided = block == 0 and stage > 0
            first_side = side * 2 if strided and stride_on_3x3 else side
            total += conv(first_side, cin, width, 1) + conv(side, width, width, 3)
            total += conv(side, width, 4 * width, 1)
            if block == 0:
                total += conv(side, cin, 4 * width, 1)
            cin = 4 * width
    return total


def fpn(size):
    sides = [size // 4, size // 8, size // 16, size // 32]
    lateral = sum(conv(s, c, 256, 1) for s, c in zip(sides, (256, 512, 1024, 2048)))
    return lateral + sum(conv(s, 256, 256, 3) for s in sides)


def rpn(size, width, outputs):
    """Shared 3x3 conv `width` wide, then 1x1 convs with `outputs` channels in all."""
    sides = [size // 4, size // 8, size // 16, size // 32, size // 64]
    return sum(conv(s, 256, width, 3) + conv(s, width, outputs, 1) for s in sides)


def box_head(proposals, classes):
    return proposals * (7 * 7 * 256 * 1024 + 1024 * 1024 + 1024 * classes * 5)


def mask_head(detections, classes):
    per_roi = 4 * conv(14, 256, 256, 3) + conv(14, 256, 256, 2) + conv(28, 256, classes, 1)
    return detections * per_roi


def counts(size, detections, rpn_width, rpn_outputs, stride_on_3x3, proposals, classes=3):
    """[(stage, MACs)] of one engine."""
    return [("backbone (ResNet-50)", resnet50(size, stride_on_3x3)), ("FPN", fpn(size)),
            ("RPN head", rpn(size, rpn_width, rpn_outputs)),
            ("box head ({} proposals)".format(proposals), box_head(proposals, classes)),
            ("mask head ({} detections)".format(detections), mask_head(detections, classes))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--ours-detections", type=int, default=68)
    ap.add_argument("--torch-detections", type=int, default=50)
    ap.add_argument("--proposals", type=int, default=1000)
    args = ap.parse_args()
    # 3 anchors per location; matterport: RPN shared conv 512 wide, 2 logits + 4
    # deltas per anchor; torchvision: 256 wide, 1 logit + 4 deltas per anchor
    ours = counts(args.size, args.ours_detections, 512, 3 * 6, False, args.proposals)
    theirs = counts(args.size, args.torch_detections, 256, 3 * 5, True, args.proposals)
    print("{:32s} {:>12s} {:>16s}".format("GMAC, {0}x{0}".format(args.size), "ours",
                                          "torchvision"))
    for (stage, a), (_, b) in zip(ours, theirs):
        print("{:32s} {:12.1f} {:16.1f}".format(stage.split(" (")[0], a / 1e9, b / 1e9))
    total_ours, total_theirs = sum(v for _, v in ours), sum(v for _, v in theirs)
    print("{:32s} {:12.1f} {:16.1f}".format("total", total_ours / 1e9, total_theirs / 1e9))
    print("work ours/torchvision {:.3f}".format(total_ours / total_theirs))


if __name__ == "__main__":
    main()
