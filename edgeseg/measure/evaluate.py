"""The one evaluation loop: a predictor's accuracy on samples, and how it differs from a reference.

Every accuracy number edgeseg prints goes through `evaluate`: `edgeseg eval` of a checkpoint or an
engine (and the drop against another engine or a checkpoint), the validation of each training epoch,
the INT8 mIoU budget, and export parity (one graph in PyTorch and in a runtime). So all of them see
the same pixels: frames go through `resize_to_input` (as in calibration, bench and stream), logits
become labels as a session's host tail makes them (`upsample_argmax`), and label maps go back to the
label's size (nearest) before they are scored.

What is evaluated is a `Predictor`: any callable with a `size`. Adapters: `session_predictor` (a
loaded engine), `as_predictor` (a plain function: a graph runner), `edgeseg.train.predictor.TorchPredictor`
(a PyTorch network with optional test-time augmentation). Torch-free: numpy and OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from edgeseg.data.class_map import ClassMap, require_same_classes
from edgeseg.data.metrics import ConfusionMatrix, SegMetrics
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.runtime.frames import resize_labels, resize_to_input
from edgeseg.runtime.tail import upsample_argmax


class Predictor(Protocol):
    """(N, h, w, 3) uint8 BGR frames at `size` -> (N, h, w) class ids, or (N, C, h', w') logits at any
    resolution (the loop upsamples them to the frames' size and takes the argmax).

    `size` is the (H, W) the loop resizes each image to first; None takes every image as it is.
    """

    size: tuple[int, int] | None

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FunctionPredictor:
    """A plain function as a Predictor: graph runners, test doubles."""

    run: Callable[[np.ndarray], np.ndarray]
    size: tuple[int, int] | None = None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.run(frames)


def as_predictor(run: Callable[[np.ndarray], np.ndarray], size: tuple[int, int] | None = None) -> Predictor:
    """`run` itself when it already is a Predictor, else `run` wrapped with `size`."""
    return run if hasattr(run, "size") else FunctionPredictor(run, size)


def session_predictor(session) -> Predictor:
    """A loaded engine: frames at its input size in, class ids out (its host tail included)."""
    size = tuple(session.manifest.input.size)
    return FunctionPredictor(session.infer, None if None in size else size)


class SampleLike(Protocol):
    image: np.ndarray  # H x W x 3 uint8 BGR (export parity: any channels-last frame the graph takes)
    label: np.ndarray | None  # class ids at any size (scored there), or None: nothing to score
    name: str


@dataclass(frozen=True)
class EvalSample:
    """A sample that is not read from a dataset: cached validation frames, parity frames."""

    image: np.ndarray
    label: np.ndarray | None = None
    name: str = ""


OnPrediction = Callable[[SampleLike, np.ndarray], None]  # (sample, class ids at its label's size)


@dataclass(frozen=True)
class KeptFrame:
    """One evaluated frame kept to be looked at (`evaluate(keep=N)`): the strip of edgeseg.measure.strip."""

    index: int  # in the samples
    name: str
    image: np.ndarray  # as the samples hold it (BGR)
    label: np.ndarray | None  # ground truth, or None
    ours: np.ndarray  # the predictor's class ids at the label's size (else the image's)
    theirs: np.ndarray | None  # the reference's, or None
    disagreement: float | None  # fraction of labelled pixels (all, without labels) where the two differ


def spread(count: int, n: int) -> list[int]:
    """`n` indices evenly spread over `count` items (the middle of each of n equal parts); all when n >= count."""
    n = min(n, count)
    return [int((i + 0.5) * count / n) for i in range(n)] if n > 0 else []


@dataclass
class EngineEval:
    """What the loop measured. `metrics` and `reference` need labels and classes; the rest a reference."""

    metrics: SegMetrics | None
    reference: SegMetrics | None = None
    agreement: float | None = None  # fraction of labelled pixels (all, without labels) where the two agree
    drop: dict = field(default_factory=dict)  # points: {"miou": ..., "per_class_iou": {...}}
    max_abs_logit_diff: float | None = None  # when both returned logits of one shape
    pixels_compared: int = 0
    frames: list[KeptFrame] = field(default_factory=list)  # `keep`: a few frames to look at (not in to_dict)

    def to_dict(self) -> dict:
        out = self.metrics.to_dict()
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
            out["miou_drop_points"] = self.drop["miou"]
            out["per_class_iou_drop_points"] = self.drop["per_class_iou"]
            out["pixel_agreement"] = self.agreement
        return out


def evaluate(predictor: Predictor, samples: Sequence[SampleLike], classes: Sequence[str] | None = None,
             ignore_index: int | None = None, reference: Predictor | None = None, limit: int | None = None,
             progress: bool = False, *, on_prediction: OnPrediction | None = None, batch: int = 1,
             same_outputs: bool = False, keep: int = 0, class_map: ClassMap | None = None) -> EngineEval:
    """Run `predictor` (and `reference`) over the first `limit` samples (0 or None: all), `batch` at a time.

    With `classes`, labelled samples are scored into a confusion matrix each; a dataset (anything with
    `.info`) must have as many classes. `on_prediction` sees every label map (saved predictions).
    `same_outputs`: the two must return arrays of one shape (one graph in two runtimes). A `batch` over
    1 needs images of one size once resized (a predictor with a `size`, or frames made alike).
    `keep`: that many frames, evenly spread over the evaluated ones, are returned in `frames` with both
    label maps (for edgeseg.measure.strip).

    `class_map`: `classes` are the model's and the dataset's differ; predictions are mapped to the
    dataset's classes before they are scored, kept and passed to `on_prediction`, so the metrics are over
    the dataset's classes, while the agreement with the reference (in the same model classes) is counted
    before the mapping: two classes mapped to one dataset class still disagree.
    """
    scored = _check_classes(samples, classes, class_map)
    ignored = _labels_ignore_index(samples, ignore_index)
    if class_map is not None and ignored != class_map.ignore_index:
        raise BadInputError(f"class map {class_map.source} was resolved for ignore index {class_map.ignore_index}, "
                            f"the labels use {ignored}", "resolve the class map against the dataset evaluated on")
    tally = _Tally(scored, ignored, reference is not None, class_map)
    count = min(len(samples), _checked_limit(limit) or len(samples))
    kept = set(spread(count, keep))
    from edgeseg.progress import progress as bar_for

    with bar_for(total=count, desc="eval", unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, count, batch):
            chunk = [samples[i] for i in range(start, min(start + batch, count))]
            raw, labels = _predict(predictor, chunk)
            ref_raw, ref_labels = _predict(reference, chunk) if reference is not None else (None, None)
            for i, sample in enumerate(chunk):
                tally.add(sample.label, labels[i], None if ref_labels is None else ref_labels[i])
                if start + i in kept:
                    tally.keep(start + i, sample, labels[i], None if ref_labels is None else ref_labels[i])
                if on_prediction is not None:
                    on_prediction(sample, labels[i] if class_map is None else class_map.apply(labels[i]))
            if ref_raw is not None:
                tally.add_raw(raw, ref_raw, same_outputs)
            bar.update(len(chunk))
    return tally.result(scored)


def _labels_ignore_index(samples: Sequence[SampleLike], ignore_index: int | None) -> int | None:
    """The ignore index the labels are scored with: the dataset's own when the samples carry their
    `info`, since the labels belong to the dataset; `ignore_index` (the model's) otherwise.

    Why: an engine records the ignore index of the data it was built for (255 for random weights),
    while CamVid's void is 11; scoring CamVid labels with 255 counted void pixels as class 11 and failed."""
    info = getattr(samples, "info", None)
    own = getattr(info, "ignore_index", None)
    return own if isinstance(own, int) and not isinstance(own, bool) else ignore_index


def _checked_limit(limit: int | None) -> int | None:
    """`limit` when None, 0 (both: every sample) or positive; a negative one ran nothing, silently."""
    from edgeseg.inputs import count

    return count(limit, "the evaluation limit", "pass a positive number of images, or no limit", zero=True)


def _check_classes(samples: Sequence[SampleLike], classes: Sequence[str] | None,
                   class_map: ClassMap | None) -> Sequence[str] | None:
    """The classes the metrics are over: the dataset's through a class map resolved for these classes,
    else the model's, which must be a dataset's own (count, names and order: edgeseg.data.class_map)."""
    info = getattr(samples, "info", None)
    if class_map is None:
        if info is not None and classes is not None:
            require_same_classes(classes, info.classes, info.name)
        return classes
    if classes is not None and tuple(classes) != class_map.model_classes:
        raise BadInputError(f"class map {class_map.source} was resolved for other model classes",
                            "resolve the class map against the classes of the model evaluated")
    if info is not None and tuple(info.classes) != class_map.dataset_classes:
        raise BadInputError(f"class map {class_map.source} was resolved for other classes than {info.name}'s",
                            "resolve the class map against the dataset evaluated on")
    return class_map.dataset_classes


def _predict(predictor: Predictor, chunk: list[SampleLike]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(what the predictor returned, a class-id map per sample at its label's size, else its image's)."""
    frames = [resize_to_input(sample.image, predictor.size) for sample in chunk]
    batch = frames[0][None] if len(frames) == 1 else np.stack(frames)
    raw = predictor(batch)
    labels = upsample_argmax(raw, batch.shape[1:3]) if raw.ndim == 4 else raw
    return raw, [resize_labels(one, _scored_size(sample)) for one, sample in zip(labels, chunk)]


def _scored_size(sample: SampleLike) -> tuple[int, int]:
    return (sample.label if sample.label is not None else sample.image).shape[:2]


class _Tally:
    """The confusion matrices of the predictor and the reference, and where the two agree."""

    def __init__(self, classes: Sequence[str] | None, ignore_index: int | None, compared: bool,
                 class_map: ClassMap | None = None) -> None:
        scored = classes is not None
        self.ignore_index = ignore_index
        self.class_map = class_map  # scored in the dataset's classes; agreement stays in the model's
        none = class_map is not None  # a model class without a dataset class is a miss, not an error
        self.ours = ConfusionMatrix(len(classes), ignore_index, none) if scored else None
        self.theirs = ConfusionMatrix(len(classes), ignore_index, none) if scored and compared else None
        self.compared = compared
        self.agree = self.counted = 0
        self.diff: float | None = None
        self.frames: list[KeptFrame] = []

    def add(self, label: np.ndarray | None, ours: np.ndarray, theirs: np.ndarray | None) -> None:
        if label is not None and self.ours is not None:
            mapped = self.class_map
            target = label if mapped is None else mapped.score_labels(label)
            self.ours.update(target, ours if mapped is None else mapped.score_predictions(ours))
            if self.theirs is not None:
                self.theirs.update(target, theirs if mapped is None else mapped.score_predictions(theirs))
        if theirs is None:
            return
        if label is None or self.ignore_index is None:
            self.agree += int(np.count_nonzero(ours == theirs))
            self.counted += ours.size
            return
        valid = label != self.ignore_index
        self.agree += int(np.count_nonzero((ours == theirs) & valid))
        self.counted += int(np.count_nonzero(valid))

    def keep(self, index: int, sample: SampleLike, ours: np.ndarray, theirs: np.ndarray | None) -> None:
        disagreement = None
        if theirs is not None:
            differ = ours != theirs
            if sample.label is not None and self.ignore_index is not None:
                valid = sample.label != self.ignore_index
                disagreement = np.count_nonzero(differ & valid) / max(np.count_nonzero(valid), 1)
            else:
                disagreement = np.count_nonzero(differ) / differ.size
        if self.class_map is not None:  # drawn beside the ground truth: in the dataset's classes
            ours = self.class_map.apply(ours)
            theirs = None if theirs is None else self.class_map.apply(theirs)
        self.frames.append(KeptFrame(index, str(getattr(sample, "name", "") or index), sample.image, sample.label,
                                     ours, theirs, None if disagreement is None else float(disagreement)))

    def add_raw(self, ours: np.ndarray, theirs: np.ndarray, same_outputs: bool) -> None:
        """The largest |logit difference| over the batches where both returned logits of one shape."""
        if ours.shape != theirs.shape:
            if same_outputs:
                raise BadInputError(f"output shapes differ: reference {theirs.shape}, candidate {ours.shape}",
                                    "report this model")
            return
        if ours.ndim == 4:
            diff = float(np.abs(ours.astype(np.float32) - theirs.astype(np.float32)).max())
            self.diff = diff if self.diff is None else max(self.diff, diff)

    def result(self, classes: Sequence[str] | None) -> EngineEval:
        metrics = self.ours.compute(classes) if self.ours is not None else None
        agreement = self.agree / max(self.counted, 1) if self.compared else None
        if self.theirs is None:
            return EngineEval(metrics, None, agreement, {}, self.diff, self.counted, self.frames)
        ref = self.theirs.compute(classes)
        return EngineEval(metrics, ref, agreement, _drop(metrics, ref), self.diff, self.counted, self.frames)


def _drop(metrics: SegMetrics, ref: SegMetrics) -> dict:
    """Points of IoU lost against the reference, per class (None where either has no IoU) and mean."""
    per_class = {c: (None if ref.per_class_iou[c] is None or metrics.per_class_iou[c] is None
                     else round(100 * (ref.per_class_iou[c] - metrics.per_class_iou[c]), 3))
                 for c in metrics.per_class_iou}
    return {"miou": round(100 * (ref.miou - metrics.miou), 3), "per_class_iou": per_class}


def label_writer(folder: str | Path) -> OnPrediction:
    """An `on_prediction` that saves each label map as `<folder>/<sample name>.png`.

    The folder must be new or empty, so that a folder of predictions is always one run's; it is made
    at the first prediction, so a run refused before it starts leaves nothing behind.
    """
    folder = check_prediction_folder(folder)

    def write(sample: SampleLike, labels: np.ndarray) -> None:
        path = folder / f"{sample.name}.png"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            written = cv2.imwrite(str(path), labels)  # False, not an exception, when the write fails
        except (OSError, cv2.error) as exc:
            raise EdgesegError(f"cannot save the prediction {path}: {exc}", _SAVE_FIX) from None
        if not written:
            raise EdgesegError(f"cannot save the prediction {path} (a full or read-only disk?)", _SAVE_FIX)

    return write


_SAVE_FIX = "free space on that disk or pass another --save-predictions folder, then run again"


def check_prediction_folder(folder: str | Path) -> Path:
    """A --save-predictions folder, checked before the work: new or empty, a folder (not a file), and
    writable (edgeseg.io.require_writable_folder: read-only disks, no permission, a parent that is a file)."""
    import os

    from edgeseg.inputs import path_kind
    from edgeseg.io import require_writable_folder

    folder = Path(folder)
    kind = path_kind(folder)
    if kind not in ("missing", "a directory") and os.path.lexists(folder):  # under a file: the folder check says so
        raise EdgesegError(f"prediction folder {folder} is {kind}, not a folder", "pass an empty or new folder")
    if kind == "a directory" and any(folder.iterdir()):
        raise EdgesegError(f"prediction folder {folder} is not empty", "pass an empty or new folder")
    require_writable_folder(folder, "--save-predictions", "pass a --save-predictions folder you can write to")
    return folder


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
