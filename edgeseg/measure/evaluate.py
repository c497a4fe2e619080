"""Accuracy of an engine, and its drop against a reference (another engine or a checkpoint).

Torch-free: frames go through `resize_to_input` (as in bench and stream), the engine returns label
maps at its input size, and those are resized back (nearest) to score against the full-size labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from edgeseg.data.base import SegDataset
from edgeseg.data.metrics import ConfusionMatrix, SegMetrics
from edgeseg.errors import BadInputError
from edgeseg.runtime.frames import resize_labels, resize_to_input

Predict = Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 BGR -> (H, W) class ids, same size


@dataclass
class EngineEval:
    metrics: SegMetrics
    reference: SegMetrics | None = None
    agreement: float | None = None  # fraction of labelled pixels where the two predict the same class
    drop: dict = field(default_factory=dict)  # points: {"miou": ..., "per_class_iou": {...}}

    def to_dict(self) -> dict:
        out = self.metrics.to_dict()
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
            out["miou_drop_points"] = self.drop["miou"]
            out["per_class_iou_drop_points"] = self.drop["per_class_iou"]
            out["pixel_agreement"] = self.agreement
        return out


def session_predictor(session) -> Predict:
    """A Session as a full-size predictor: resize in, infer, resize the label map back."""
    size = session.manifest.input.size

    def predict(image: np.ndarray) -> np.ndarray:
        labels = session.infer(resize_to_input(image, size)[None])[0]
        return resize_labels(labels, image.shape[:2])

    return predict


def evaluate_predictors(predict: Predict, dataset: SegDataset, classes: Iterable[str], ignore_index: int,
                        reference: Predict | None = None, limit: int | None = None,
                        progress: bool = True) -> EngineEval:
    classes = list(classes)
    if dataset.info.num_classes != len(classes):
        raise BadInputError(f"the engine has {len(classes)} classes, the data {dataset.info.num_classes}",
                            "evaluate on the dataset the model was trained for")
    ours, theirs = ConfusionMatrix(len(classes), ignore_index), ConfusionMatrix(len(classes), ignore_index)
    agree = counted = 0
    from tqdm import tqdm

    count = min(len(dataset), limit or len(dataset))
    for i in tqdm(range(count), desc="eval engine", unit="img", disable=not progress, leave=False):
        sample = dataset[i]
        labels = predict(sample.image)
        ours.update(sample.label, labels)
        if reference is not None:
            ref_labels = reference(sample.image)
            theirs.update(sample.label, ref_labels)
            valid = sample.label != ignore_index
            agree += int((labels[valid] == ref_labels[valid]).sum())
            counted += int(valid.sum())
    metrics = ours.compute(classes)
    if reference is None:
        return EngineEval(metrics)
    ref = theirs.compute(classes)
    per_class = {c: (None if ref.per_class_iou[c] is None or metrics.per_class_iou[c] is None
                     else round(100 * (ref.per_class_iou[c] - metrics.per_class_iou[c]), 3)) for c in classes}
    drop = {"miou": round(100 * (ref.miou - metrics.miou), 3), "per_class_iou": per_class}
    return EngineEval(metrics, ref, agree / max(counted, 1), drop)


def format_comparison(result: EngineEval) -> str:
    if result.reference is None:
        from edgeseg.data.metrics import format_table

        return format_table(result.metrics)
    lines = [f"{'class':14s} {'IoU %':>7s} {'ref %':>7s} {'drop':>6s}"]
    for name, value in result.metrics.per_class_iou.items():
        ref = result.reference.per_class_iou[name]
        fmt = lambda v: "    -  " if v is None else f"{100 * v:7.2f}"  # noqa: E731
        drop = result.drop["per_class_iou"][name]
        lines.append(f"{name:14s} {fmt(value)} {fmt(ref)} {'' if drop is None else f'{drop:6.2f}'}")
    lines.append(f"{'mIoU':14s} {100 * result.metrics.miou:7.2f} {100 * result.reference.miou:7.2f} "
                 f"{result.drop['miou']:6.2f}")
    lines.append(f"pixel agreement with the reference: {100 * result.agreement:.3f}%")
    return "\n".join(lines)
