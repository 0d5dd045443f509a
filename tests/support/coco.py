"""pycocotools' COCOeval on our instances: the independent reference for our figures."""
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def coco_figures(references, predictions, class_ids):
    """{class id: [AP at IoU 0.5, 0.55, ..., 0.95]} by COCOeval ("segm", all areas,
    at most 100 detections per image); references, predictions: ImageInstances."""
    images, annotations, results = [], [], []
    for image_id, (ref, pred) in enumerate(zip(references, predictions), start=1):
        h, w = ref.masks.shape[:2]
        images.append({"id": image_id, "height": h, "width": w})
        for i in range(ref.masks.shape[2]):
            rle = mask_utils.encode(np.asfortranarray(ref.masks[..., i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(ref.class_ids[i]), "segmentation": rle,
                                "area": float(ref.masks[..., i].sum()), "iscrowd": 0,
                                "bbox": list(mask_utils.toBbox(rle))})
        for i in range(pred.masks.shape[2]):
            rle = mask_utils.encode(np.asfortranarray(pred.masks[..., i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append({"image_id": image_id, "category_id": int(pred.class_ids[i]),
                            "segmentation": rle, "score": float(pred.scores[i])})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": c} for c in class_ids]}
    coco.createIndex()
    detections = coco.loadRes(results) if results else COCO()
    evaluator = COCOeval(coco, detections, "segm")
    evaluator.params.areaRng = [[0, 1e10]]
    evaluator.params.areaRngLbl = ["all"]
    evaluator.evaluate()
    evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    per_class = {}
    for k, class_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k]
        per_class[class_id] = [float(p[t][p[t] > -1].mean()) if (p[t] > -1).any() else -1
                               for t in range(p.shape[0])]
    return per_class
