"""Segmentation metrics from a streaming confusion matrix (numpy only: engines are scored too).

Convention: a class that appears neither in the ground truth nor in the predictions of the
whole evaluation has no IoU (NaN, reported as null) and is left out of every mean. A class that
is predicted but absent from the ground truth has IoU 0 and counts in mIoU; its accuracy is
undefined (no ground-truth pixels) and it is left out of mAcc. Pixels whose ground truth is the
ignore index are not counted anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgeseg.errors import BadInputError


@dataclass(frozen=True)
class SegMetrics:
    miou: float
    macc: float
    pixel_acc: float
    fwiou: float
    per_class_iou: dict[str, float | None]
    per_class_acc: dict[str, float | None]
    pixels: int  # labelled pixels counted

    def to_dict(self) -> dict:
        return {"miou": self.miou, "macc": self.macc, "pixel_acc": self.pixel_acc, "fwiou": self.fwiou,
                "per_class_iou": self.per_class_iou, "per_class_acc": self.per_class_acc, "pixels": self.pixels}


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


class ConfusionMatrix:
    """Rows are ground truth, columns predictions; `update` is one bincount per batch.

    `none_column`: predictions may also be `num_classes`, "none of these classes" (a foreign model's
    class that a class map leaves out, edgeseg.data.class_map). Such a pixel is a miss for its
    ground-truth class and a false positive for no class; the column has no IoU of its own.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, none_column: bool = False) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.columns = num_classes + 1 if none_column else num_classes
        self.matrix = np.zeros((num_classes, self.columns), dtype=np.int64)

    def update(self, target: np.ndarray, prediction: np.ndarray) -> None:
        """Add a batch: integer arrays of the same shape (any shape)."""
        target = np.asarray(target)
        prediction = np.asarray(prediction)
        if target.shape != prediction.shape:
            raise BadInputError(f"prediction shape {prediction.shape} differs from target shape {target.shape}",
                                "resize predictions to the label size (nearest neighbour) before scoring")
        keep = target != self.ignore_index if self.ignore_index is not None else np.ones(target.shape, bool)
        t = target[keep].astype(np.int64)
        p = prediction[keep].astype(np.int64)
        k, c = self.num_classes, self.columns
        if t.size and (t.max() >= k or t.min() < 0):
            raise BadInputError(f"ground truth holds class {int(t.max())} but there are {k} classes",
                                "check the dataset's class count and ignore index")
        if p.size and (p.max() >= c or p.min() < 0):
            raise BadInputError(f"prediction holds class {int(p.max())} but there are {k} classes",
                                "the model was built for another class count")
        self.matrix += np.bincount(t * c + p, minlength=k * c).reshape(k, c)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix

    def compute(self, class_names: Sequence[str] | None = None) -> SegMetrics:
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        m = self.matrix.astype(np.float64)
        k = self.num_classes
        tp = np.diag(m[:, :k])
        gt = m.sum(axis=1)  # the "none" column included: those pixels are misses
        pred = m[:, :k].sum(axis=0)
        union = gt + pred - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
        total = m.sum()
        freq = gt / total if total else np.zeros_like(gt)
        present = union > 0
        return SegMetrics(
            miou=_nanmean(iou),
            macc=_nanmean(acc),
            pixel_acc=float(tp.sum() / total) if total else float("nan"),
            fwiou=float((freq[present] * iou[present]).sum()) if total else float("nan"),
            per_class_iou={n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
            per_class_acc={n: (None if np.isnan(v) else float(v)) for n, v in zip(names, acc)},
            pixels=int(total),
        )


def format_table(metrics: SegMetrics) -> str:
    """Per-class IoU/accuracy table with the summary lines, for the console."""
    lines = [f"{'class':14s} {'IoU':>7s} {'acc':>7s}"]
    for name, iou in metrics.per_class_iou.items():
        acc = metrics.per_class_acc[name]
        lines.append(f"{name:14s} {_pct(iou):>7s} {_pct(acc):>7s}")
    lines.append(f"{'mIoU':14s} {_pct(metrics.miou):>7s}")
    lines.append(f"{'mAcc':14s} {_pct(metrics.macc):>7s}")
    lines.append(f"{'pixel acc':14s} {_pct(metrics.pixel_acc):>7s}")
    lines.append(f"{'fwIoU':14s} {_pct(metrics.fwiou):>7s}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{100 * value:.2f}"
