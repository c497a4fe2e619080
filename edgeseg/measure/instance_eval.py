"""Instance engines measured: COCO AP through any detector (an engine session or the PyTorch network it was
exported from), the AP drop between two of them, and the detection-level parity a build records.

A detector here is a callable `(frames (1, H, W, 3) uint8 at the engine's size, (h, w) of the original
image) -> [Instances]`, which `Session.detect` is; `torch_detector` gives the PyTorch network the same
shape, so that an engine and its reference see the very same resized frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from edgeseg.measure.instance_metrics import InstanceMetrics, InstancePrediction, evaluate_instances
from edgeseg.runtime.frames import resize_to_input
from edgeseg.runtime.instances import Instances

Detector = Callable[[np.ndarray, tuple[int, int]], list[Instances]]

PARITY_SCORE = 0.5  # detections a user is shown (edgeseg stream's default): the ones parity is held on
MATCH_IOU = 0.5  # a reference detection is found when one of the engine's, of its class, overlaps it this much


def predict_dataset(detector: Detector, dataset, size: tuple[int, int], progress: bool = True,
                    desc: str = "images") -> dict[int, InstancePrediction]:
    """The detector's instances on every image of `dataset`, keyed by image id, at each image's own size."""
    from edgeseg.progress import progress as bar

    predictions = {}
    for index in bar(range(len(dataset)), desc=desc, unit="image", disable=not progress, leave=False):
        sample = dataset[index]
        found = detector(resize_to_input(sample.image, size)[None], sample.image.shape[:2])[0]
        predictions[sample.image_id] = InstancePrediction(found.boxes, found.labels, found.scores, found.masks)
    return predictions


def score(detector: Detector, dataset, size: tuple[int, int], progress: bool = True,
          desc: str = "images") -> InstanceMetrics:
    return evaluate_instances(dataset.coco_ground_truth(), predict_dataset(detector, dataset, size, progress, desc))


def torch_detector(model, size: tuple[int, int]) -> Detector:
    """The PyTorch network as the engine runs it (`DeployMaskRCNN` at the engine's size), pasted by the
    same host code: the FP32 reference of an instance engine."""
    import torch

    from edgeseg.models.maskrcnn.deploy import DeployMaskRCNN, at_size
    from edgeseg.runtime.instances import from_outputs

    deploy = DeployMaskRCNN(at_size(model, size), size).eval()

    def detect(frames: np.ndarray, original: tuple[int, int] | None = None) -> list[Instances]:
        height, width = original or frames.shape[1:3]
        found = []
        with torch.inference_mode():
            for frame in frames:
                outputs = [t.numpy() for t in deploy(torch.from_numpy(np.ascontiguousarray(frame[None])))]
                found.append(from_outputs(*outputs, height, width, frames.shape[1:3]))
        return found

    return detect


@dataclass
class Parity:
    """How an engine's detections compare with its reference's on the same frames, counting those that
    score at least `score_threshold`: how many of the reference's the engine found (same class, box IoU
    of MATCH_IOU or more), and how close the found ones are."""

    frames: int
    score_threshold: float
    reference_detections: int
    engine_detections: int
    matched: int
    matched_fraction: float | None  # matched / reference_detections; None without reference detections
    mean_box_iou: float | None
    min_box_iou: float | None
    mean_mask_iou: float | None
    max_score_difference: float | None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if not self.reference_detections:
            return (f"parity: no reference detection scores {self.score_threshold} or more on {self.frames} frames "
                    f"(the engine has {self.engine_detections}); nothing to compare")
        return (f"parity on {self.frames} frames: {self.matched} of {self.reference_detections} reference detections "
                f"found ({100 * self.matched_fraction:.1f}%; the engine has {self.engine_detections}), box IoU mean "
                f"{self.mean_box_iou:.4f} (min {self.min_box_iou:.4f}), mask IoU mean {self.mean_mask_iou:.4f}, "
                f"scores within {self.max_score_difference:.4f}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N x 4) with every box of `b` (M x 4): N x M."""
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(reference: Instances, engine: Instances, iou: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """Greedy matching, highest reference score first (both are sorted by score, as the graphs emit them):
    (reference index, engine index, box IoU) for each reference detection the engine found."""
    if not len(reference) or not len(engine):
        return []
    ious = box_iou(reference.boxes, engine.boxes)
    ious[reference.labels[:, None] != engine.labels[None, :]] = 0.0
    pairs, taken = [], np.zeros(len(engine), bool)
    for r in np.argsort(-reference.scores, kind="stable"):  # one step per detection, at build time only
        candidates = np.where(taken, -1.0, ious[r])
        e = int(candidates.argmax())
        if candidates[e] >= iou:
            taken[e] = True
            pairs.append((int(r), e, float(candidates[e])))
    return pairs


def parity(reference: Detector, engine: Detector, frames: Sequence[np.ndarray],
           score_threshold: float = PARITY_SCORE) -> Parity:
    """Run both detectors on each frame (at the engine's size) and compare what they report."""
    ref_count = eng_count = 0
    box_ious: list[float] = []
    mask_ious: list[float] = []
    score_diffs: list[float] = []
    for frame in frames:
        ref = reference(frame[None], frame.shape[:2])[0].above(score_threshold)
        eng = engine(frame[None], frame.shape[:2])[0].above(score_threshold)
        ref_count, eng_count = ref_count + len(ref), eng_count + len(eng)
        pairs = match(ref, eng)
        if not pairs:
            continue
        r, e, ious = (np.array(v) for v in zip(*pairs))
        box_ious += ious.tolist()
        inter = (ref.masks[r] & eng.masks[e]).sum(axis=(1, 2))
        union = (ref.masks[r] | eng.masks[e]).sum(axis=(1, 2))
        mask_ious += np.where(union > 0, inter / np.maximum(union, 1), 1.0).tolist()
        score_diffs += np.abs(ref.scores[r] - eng.scores[e]).tolist()

    def rounded(values: list[float], reduce) -> float | None:
        return round(float(reduce(values)), 6) if values else None

    return Parity(len(frames), score_threshold, ref_count, eng_count, len(box_ious),
                  round(len(box_ious) / ref_count, 6) if ref_count else None, rounded(box_ious, np.mean),
                  rounded(box_ious, np.min), rounded(mask_ious, np.mean), rounded(score_diffs, np.max))


@dataclass
class InstanceComparison:
    """An instance engine's AP, and with a reference its drop (reference minus engine, points)."""

    engine: InstanceMetrics
    reference: InstanceMetrics | None = None

    @property
    def box_ap_drop(self) -> float | None:
        return _drop(self.reference and self.reference.box_ap, self.engine.box_ap)

    @property
    def mask_ap_drop(self) -> float | None:
        return _drop(self.reference and self.reference.mask_ap, self.engine.mask_ap)

    def to_dict(self) -> dict:
        return {"kind": "instances", "engine": self.engine.to_dict(),
                "reference": self.reference.to_dict() if self.reference else None,
                "box_ap_drop": self.box_ap_drop, "mask_ap_drop": self.mask_ap_drop}

    def summary(self) -> str:
        from edgeseg.measure.instance_metrics import format_instance_table

        text = format_instance_table(self.engine)
        if self.reference is None:
            return text
        return (text + f"\nreference: box AP {_fmt(self.reference.box_ap)}, mask AP {_fmt(self.reference.mask_ap)}"
                f"\ndrop (reference - engine): box AP {_fmt(self.box_ap_drop)} points, mask AP "
                f"{_fmt(self.mask_ap_drop)} points")


def _drop(reference: float | None, engine: float | None) -> float | None:
    if reference is None or engine is None:
        return None
    return round(reference - engine, 4)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
