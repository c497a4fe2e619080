"""COCO box and mask AP through pycocotools, on ground truth built from small in-memory samples."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from edgeseg.data.instances import InstanceDataset, InstanceInfo, InstanceSample, masks_to_boxes
from edgeseg.errors import BadInputError
from edgeseg.measure.instance_metrics import InstancePrediction, evaluate_instances

H, W = 48, 64


def _rect(x0, y0, x1, y1) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


class _Memory(InstanceDataset):
    info = InstanceInfo("memory", ("a", "b", "c"), ((1, 2, 3), (4, 5, 6), (7, 8, 9)))
    split = "val"

    def __init__(self, rects_per_image):
        self.samples = []
        for k, rects in enumerate(rects_per_image):
            masks = np.stack([_rect(*r[1:]) for r in rects]) if rects else np.zeros((0, H, W), np.uint8)
            labels = np.array([r[0] for r in rects], np.int64)
            self.samples.append(InstanceSample(np.zeros((H, W, 3), np.uint8), masks_to_boxes(masks), labels, masks,
                                               np.zeros(len(rects), np.uint8), f"im{k}", k + 1))

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]


# image 3 has no ground truth; class "c" (label 3) never appears
DATA = _Memory([[(1, 2, 2, 20, 20), (2, 30, 5, 60, 30)], [(1, 10, 10, 40, 40)], []])


def _perfect(dataset=DATA, shift=0):
    out = {}
    for s in dataset.samples:
        boxes = s.boxes + np.array([shift, 0, shift, 0], np.float32)
        out[s.image_id] = InstancePrediction(boxes, s.labels, np.ones(len(s.labels)), s.masks)
    return out


def test_perfect_predictions_score_100_and_name_every_class(capsys):
    gt = DATA.coco_ground_truth()
    before = copy.deepcopy(gt)
    metrics = evaluate_instances(gt, _perfect())
    assert capsys.readouterr().out == ""  # COCOeval's tables are captured
    assert gt == before  # COCOeval's in-place changes do not reach the caller's dict
    for value in (metrics.box_ap, metrics.box_ap50, metrics.box_ap75, metrics.mask_ap, metrics.mask_ap50,
                  metrics.mask_ap75):
        assert value == pytest.approx(100)
    assert metrics.box_ap_per_class == {"a": pytest.approx(100), "b": pytest.approx(100), "c": None}
    assert set(metrics.mask_ap_per_class) == {"a", "b", "c"}
    assert (metrics.images, metrics.instances, metrics.predictions) == (3, 3, 3)
    assert json.loads(json.dumps(metrics.to_dict()))["mask_ap_per_class"]["c"] is None


def test_shifted_boxes_lower_box_ap_only():
    metrics = evaluate_instances(DATA.coco_ground_truth(), _perfect(shift=5))
    assert metrics.box_ap < 90 and metrics.box_ap50 == pytest.approx(100)
    assert metrics.mask_ap == pytest.approx(100)


def test_false_positive_on_an_image_without_ground_truth_lowers_ap():
    predictions = _perfect()
    predictions[3] = {"boxes": [[0, 0, 30, 30]], "labels": [1], "scores": [2.0], "masks": _rect(0, 0, 30, 30)[None]}
    metrics = evaluate_instances(DATA.coco_ground_truth(), predictions)
    assert metrics.box_ap_per_class["a"] < 100 and metrics.box_ap_per_class["b"] == pytest.approx(100)


def test_no_predictions_score_zero():
    gt = DATA.coco_ground_truth()
    empty = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0), "scores": np.zeros(0), "masks": np.zeros((0, H, W))}
    for predictions in ({}, {1: empty, 3: empty}):
        metrics = evaluate_instances(gt, predictions)
        assert metrics.box_ap == metrics.mask_ap75 == 0.0 and metrics.predictions == 0
        assert metrics.mask_ap_per_class == {"a": 0.0, "b": 0.0, "c": None}


def test_torchvision_probability_masks_and_label_fallback():
    gt = DATA.coco_ground_truth()
    for category in gt["categories"]:
        del category["label"]  # a plain COCO dict: labels follow ascending category ids
    predictions = {}
    for s in DATA.samples:
        probabilities = s.masks[:, None].astype(np.float32) * 0.9  # N x 1 x H x W, as Mask R-CNN returns
        predictions[s.image_id] = {"boxes": s.boxes, "labels": s.labels, "scores": np.ones(len(s.labels)),
                                   "masks": probabilities}
    assert evaluate_instances(gt, predictions).mask_ap == pytest.approx(100)


@pytest.mark.parametrize("predictions, message", [
    ({999: {"boxes": [], "labels": [], "scores": [], "masks": []}}, "image id 999, which the ground truth does not"),
    ({1: {"boxes": [[0, 0, 5, 5]], "labels": [4], "scores": [1], "masks": _rect(0, 0, 5, 5)[None]}},
     r"labels \[4\] outside the ground truth's labels 1..3"),
    ({1: {"boxes": [[0, 0, 5, 5]], "labels": [1], "scores": [1], "masks": np.zeros((1, 10, 10))}},
     "masks of shape .1, 10, 10., not 1 x 48 x 64"),
    ({1: {"boxes": [[0, 0, 5, 5]], "labels": [1, 2], "scores": [1], "masks": None}}, "1 boxes, 2 labels and 1 scores"),
    ({1: {"boxes": [[0, 0, 5, 5]], "labels": [1], "scores": [1], "masks": None}}, "have no masks"),
    ({1: {"boxes": [[0, 0, 5, np.nan]], "labels": [1], "scores": [1], "masks": None}}, "NaN or infinite"),
])
def test_bad_predictions_are_named(predictions, message):
    with pytest.raises(BadInputError, match=message):
        evaluate_instances(DATA.coco_ground_truth(), predictions)


def test_bad_ground_truth_is_named():
    with pytest.raises(BadInputError, match="not a COCO dict"):
        evaluate_instances({"images": []}, {})
    with pytest.raises(BadInputError, match="0 images"):
        evaluate_instances({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}, {})
