"""COCO instance-segmentation metrics: box and mask AP (AP, AP50, AP75, per class) by pycocotools' COCOeval.

Why pycocotools and not an AP written here: COCO's AP has many conventions that are easy to get subtly
wrong (101-point interpolated precision, greedy matching by score, crowd regions matched as ignore
regions, area ranges, at most 100 detections per image, categories without ground truth left out of
the mean). COCOeval is the maintained reference that papers, torchvision, detectron2 and mmdetection
report, so a number from here can be compared with theirs.

Input: the ground truth as a COCO dict (`InstanceDataset.coco_ground_truth()`) and predictions keyed by
image id, each with boxes (N x 4 x0, y0, x1, y1 pixels), labels (contiguous 1..K), scores and masks
(N x H x W uint8 or bool at the image's size; N x 1 x H x W probabilities as torchvision's Mask R-CNN
returns them are thresholded at 0.5). Labels map to category ids through the categories' "label" field
(written by `coco_ground_truth`), or, without it, label i + 1 is the i-th category in ascending id order.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from edgeseg.errors import BadInputError

_FIX_GT = "pass InstanceDataset.coco_ground_truth() or a COCO instances dict (images, annotations, categories)"


@dataclass(frozen=True)
class InstancePrediction:
    """A model's instances on one image."""

    boxes: Any  # N x 4 float x0, y0, x1, y1 in pixels
    labels: Any  # N int, 1..K
    scores: Any  # N float
    masks: Any  # N x H x W uint8/bool, or N x 1 x H x W probabilities (thresholded at 0.5)


@dataclass(frozen=True)
class InstanceMetrics:
    """COCO AP in percent (IoU 0.50:0.95, 0.50, 0.75; all areas; 100 detections per image). None where
    COCO's AP is undefined: no ground-truth instance at all, or, per class, none of that class."""

    box_ap: float | None
    box_ap50: float | None
    box_ap75: float | None
    mask_ap: float | None
    mask_ap50: float | None
    mask_ap75: float | None
    box_ap_per_class: dict[str, float | None]
    mask_ap_per_class: dict[str, float | None]
    images: int
    instances: int  # ground-truth instances, crowd regions not counted
    predictions: int

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_instances(ground_truth: dict, predictions: Mapping[int, InstancePrediction | Mapping]) -> InstanceMetrics:
    """Score `predictions` against `ground_truth` with COCOeval. An image without predictions has none;
    a prediction for an image the ground truth lacks is an error (it would silently not count)."""
    from pycocotools.coco import COCO

    gt = _check_ground_truth(ground_truth)
    categories = sorted(gt["categories"], key=lambda c: c["id"])
    if all("label" in c for c in categories):
        to_category = {int(c["label"]): c["id"] for c in categories}
    else:
        to_category = {k + 1: c["id"] for k, c in enumerate(categories)}
    names = {c["id"]: str(c["name"]) for c in categories}
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in gt["images"]}
    boxes, segms = [], []
    for image_id, prediction in predictions.items():
        if image_id not in sizes:
            raise BadInputError(f"predictions for image id {image_id!r}, which the ground truth does not hold",
                                "key predictions by the image_id of the samples the ground truth was made from")
        b, s = _results(image_id, prediction, sizes[image_id], to_category)
        boxes += b
        segms += s
    instances = sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0))
    with_gt = {a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)}
    if not boxes:  # COCO's loadRes cannot take an empty list; every AP with ground truth is 0
        zero = 0.0 if instances else None
        per_class = {names[c]: (0.0 if c in with_gt else None) for c in names}
        return InstanceMetrics(zero, zero, zero, zero, zero, zero, per_class, dict(per_class), len(sizes), instances, 0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
    box, box_per_class = _evaluate(coco, boxes, "bbox", names)
    mask, mask_per_class = _evaluate(coco, segms, "segm", names)
    return InstanceMetrics(*box, *mask, box_per_class, mask_per_class, len(sizes), instances, len(boxes))


def _check_ground_truth(gt: object) -> dict:
    """A shallow copy of the COCO dict whose annotations COCOeval may change (it adds 'ignore' and turns
    polygons into RLE in place), or an error naming what is missing."""
    if not isinstance(gt, dict) or any(not isinstance(gt.get(k), list) for k in ("images", "annotations",
                                                                                  "categories")):
        raise BadInputError("the ground truth is not a COCO dict with images, annotations and categories", _FIX_GT)
    if not gt["images"] or not gt["categories"]:
        raise BadInputError(f"the ground truth has {len(gt['images'])} images and {len(gt['categories'])} "
                            "categories; evaluation needs at least one of each", _FIX_GT)
    needed = ("id", "image_id", "category_id", "bbox", "segmentation", "area")
    for a in gt["annotations"]:
        lacking = [k for k in needed if k not in a]
        if lacking:
            raise BadInputError(f"ground-truth annotation {a.get('id', '?')} has no {', '.join(lacking)}", _FIX_GT)
    return {**gt, "annotations": [dict(a) for a in gt["annotations"]]}


def _results(image_id, prediction, size: tuple[int, int], to_category: dict) -> tuple[list, list]:
    """COCO results of one image: boxes ([x, y, w, h]) for bbox, RLE masks for segm (without a bbox, so
    that COCOeval takes the mask's area for the area ranges, as detectron2 does)."""
    from edgeseg.data.instances.base import encode_masks

    get = prediction.get if isinstance(prediction, Mapping) else lambda key: getattr(prediction, key, None)
    try:
        boxes = np.asarray(get("boxes"), np.float64).reshape(-1, 4)
        labels = np.asarray(get("labels")).reshape(-1).astype(np.int64)
        scores = np.asarray(get("scores"), np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"predictions for image {image_id}: boxes, labels or scores are not numeric arrays "
                            f"({exc})", "give boxes N x 4, labels N and scores N") from None
    n = len(boxes)
    if len(labels) != n or len(scores) != n:
        raise BadInputError(f"predictions for image {image_id} have {n} boxes, {len(labels)} labels and "
                            f"{len(scores)} scores", "give one label and one score per box")
    if n == 0:
        return [], []
    bad = sorted(set(labels.tolist()) - set(to_category))
    if bad:
        raise BadInputError(f"predictions for image {image_id} have labels {bad[:5]} outside the ground truth's "
                            f"labels {min(to_category)}..{max(to_category)}",
                            "predict contiguous labels 1..K of the dataset's classes (0 is the background)")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise BadInputError(f"predictions for image {image_id} hold NaN or infinite boxes or scores",
                            "check the model's output")
    masks = _masks(get("masks"), n, size, image_id)
    categories = [to_category[k] for k in labels.tolist()]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    box_results = [{"image_id": image_id, "category_id": c, "bbox": b, "score": float(s)}
                   for c, b, s in zip(categories, xywh, scores.tolist())]
    segm_results = [{"image_id": image_id, "category_id": c, "segmentation": r, "score": float(s)}
                    for c, r, s in zip(categories, encode_masks(masks), scores.tolist())]
    return box_results, segm_results


def _masks(masks, n: int, size: tuple[int, int], image_id) -> np.ndarray:
    """N x H x W uint8 0/1 masks at the image's size, or an error saying what they are instead."""
    if masks is None:
        raise BadInputError(f"predictions for image {image_id} have no masks", "give masks N x H x W (uint8 or bool)")
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3 or masks.shape[0] != n or masks.shape[1:] != size:
        raise BadInputError(f"predictions for image {image_id} have masks of shape {masks.shape}, not "
                            f"{n} x {size[0]} x {size[1]} ({n} instances at the image's height x width)",
                            "paste masks into the full image (as torchvision's Mask R-CNN returns them)")
    if masks.dtype.kind == "f":
        return (masks >= 0.5).astype(np.uint8)
    return (masks != 0).astype(np.uint8)


def _evaluate(coco, results: list, iou_type: str, names: dict) -> tuple[tuple, dict]:
    """(AP, AP50, AP75) in percent and AP per class name, by COCOeval with its printing captured."""
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    overall = tuple(_percent(v) for v in evaluation.stats[:3])
    precision = evaluation.eval["precision"]  # IoU x recall x category x area range x max detections
    per_class = {}
    for k, category in enumerate(evaluation.params.catIds):
        p = precision[:, :, k, 0, -1]  # all areas, 100 detections
        p = p[p > -1]
        per_class[names[category]] = float(p.mean() * 100) if p.size else None
    return overall, per_class


def _percent(value: float) -> float | None:
    return None if value < 0 else float(value) * 100


def format_instance_table(metrics: InstanceMetrics) -> str:
    """AP, AP50 and AP75 for boxes and masks, then AP per class (COCO's 0.50:0.95)."""
    def ap(value: float | None) -> str:
        return "   -  " if value is None else f"{value:6.2f}"

    lines = [f"{metrics.images} images, {metrics.instances} instances, {metrics.predictions} predictions",
             f"{'':10s} {'AP':>6s} {'AP50':>6s} {'AP75':>6s}",
             f"{'box':10s} {ap(metrics.box_ap)} {ap(metrics.box_ap50)} {ap(metrics.box_ap75)}",
             f"{'mask':10s} {ap(metrics.mask_ap)} {ap(metrics.mask_ap50)} {ap(metrics.mask_ap75)}",
             "", f"{'class':16s} {'box AP':>7s} {'mask AP':>7s}"]
    for name, box in metrics.box_ap_per_class.items():
        lines.append(f"{name:16s} {ap(box):>7s} {ap(metrics.mask_ap_per_class.get(name)):>7s}")
    return "\n".join(lines)
