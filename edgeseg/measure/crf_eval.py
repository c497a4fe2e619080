"""`edgeseg eval --crf`: a network's mIoU with and without the dense CRF, per class, and what the CRF costs.

The scores the CRF refines: a checkpoint's softmax at the frame's size (PyTorch), or an engine's logits
(`Session.infer_raw`) upsampled as the host tail does (bilinear, half-pixel: cv2.INTER_LINEAR) and put through
a softmax. Engines that end in class ids have nothing to refine.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import BadInputError
from edgeseg.measure.crf import CrfEvaluation, CrfParams, Scores, softmax
from edgeseg.measure.evaluate import EngineEval, evaluate

THIN = ("pole", "sign", "pedestrian", "bicyclist")  # CamVid's thin classes, where a CRF's edges matter most


def engine_scores(session) -> Scores:
    kind = session.manifest.output.kind
    if kind not in ("logits", "lowres-logits"):
        raise BadInputError(f"{session.manifest.name} returns {kind}: a CRF refines class scores, and this engine "
                            "keeps none", "build the engine with its tail on the host (--tail host, the default on "
                            "ONNX Runtime and OpenVINO) or with --no-fuse-argmax")

    def scores(frames: np.ndarray) -> np.ndarray:
        logits = np.asarray(session.infer_raw(frames), np.float32)
        h, w = frames.shape[1:3]
        if logits.shape[2:] != (h, w):
            logits = np.stack([cv2.resize(np.ascontiguousarray(frame.transpose(1, 2, 0)), (w, h),
                                          interpolation=cv2.INTER_LINEAR).reshape(h, w, -1).transpose(2, 0, 1)
                               for frame in logits])
        return softmax(logits, axis=1)

    return scores


def checkpoint_scores(predictor) -> Scores:
    """A TorchPredictor's softmax at the frames' size."""
    return lambda frames: predictor.probabilities(frames).numpy()


def evaluate_crf(scores: Scores, size: tuple[int, int] | None, samples, classes: Sequence[str], ignore_index: int,
                 params: CrfParams, limit: int | None = None, progress: bool = False) -> tuple[EngineEval, dict]:
    """(the evaluation with the CRF, its reference the same network without; the CRF's timing)."""
    pair = CrfEvaluation(scores, size, params)
    result = evaluate(pair.refined, samples, classes, ignore_index, pair.plain, limit, progress=progress)
    return result, pair.timing()


def crf_report(result: EngineEval, timing: dict, params: CrfParams) -> dict:
    """For --json: mIoU and per-class IoU with and without the CRF, the gain in points, the time per frame."""
    with_crf, without = result.metrics, result.reference
    gain = {name: None if with_crf.per_class_iou[name] is None or without.per_class_iou[name] is None
            else round(100 * (with_crf.per_class_iou[name] - without.per_class_iou[name]), 3)
            for name in with_crf.per_class_iou}
    return {"params": params.to_dict(), "miou_without": without.miou, "miou_with": with_crf.miou,
            "per_class_iou_with": with_crf.per_class_iou,
            "gain_points": round(100 * (with_crf.miou - without.miou), 3), "per_class_gain_points": gain,
            "pixels_changed": 1 - result.agreement, **timing}


def format_crf(result: EngineEval, timing: dict) -> str:
    lines = [f"{'class':14s} {'no CRF %':>9s} {'CRF %':>7s} {'gain':>6s}"]
    fmt = lambda v: "      -" if v is None else f"{100 * v:7.2f}"  # noqa: E731
    for name, value in result.metrics.per_class_iou.items():
        ref = result.reference.per_class_iou[name]
        gain = "" if value is None or ref is None else f"{100 * (value - ref):+6.2f}"
        lines.append(f"{name:14s} {fmt(ref):>9s} {fmt(value)} {gain}{'  (thin)' if name in THIN else ''}")
    lines.append(f"{'mIoU':14s} {100 * result.reference.miou:9.2f} {100 * result.metrics.miou:7.2f} "
                 f"{100 * (result.metrics.miou - result.reference.miou):+6.2f}")
    lines.append(f"pixels the CRF changed: {100 * (1 - result.agreement):.2f}%; CRF {timing['crf_ms_per_frame']:.0f} ms "
                 f"a frame (median of {timing['frames']}), network {timing['network_ms_per_frame']:.0f} ms")
    return "\n".join(lines)


# DeepLab's cross-validation ranges, coarser: w1 in [3, 6], theta_alpha in [30, 100] (121 for v2), theta_beta in [3, 6]
SEARCH_GRID = {"w1": (3.0, 4.0, 5.0), "theta_alpha": (50.0, 80.0, 121.0), "theta_beta": (3.0, 5.0, 7.0)}


def search_params(scores: Scores, size: tuple[int, int] | None, samples, classes: Sequence[str], ignore_index: int,
                  base: CrfParams, count: int, progress: bool = False) -> tuple[CrfParams, list[dict]]:
    """The grid's best (w1, theta_alpha, theta_beta) by mIoU on `count` held-out samples, the rest of `base`
    kept; the network runs once a sample. Returns (best, every row: the parameters and their mIoU)."""
    import dataclasses
    import itertools

    from edgeseg.data.metrics import ConfusionMatrix
    from edgeseg.measure.crf import dense_crf
    from edgeseg.progress import progress as bar_for
    from edgeseg.runtime.frames import resize_labels, resize_to_input

    info = getattr(samples, "info", None)  # the labels' own void, as evaluate scores them
    ignore_index = getattr(info, "ignore_index", ignore_index)
    cached = []
    for i in range(min(count, len(samples))):
        sample = samples[i]
        frame = resize_to_input(sample.image, size)
        cached.append((frame, np.asarray(scores(frame[None]), np.float32)[0], sample.label))
    grid = [dict(zip(SEARCH_GRID, values)) for values in itertools.product(*SEARCH_GRID.values())]
    rows = []
    with bar_for(total=len(grid), desc="crf search", unit="config", disable=not progress, leave=False) as bar:
        for values in grid:
            params = dataclasses.replace(base, **values)
            matrix = ConfusionMatrix(len(classes), ignore_index)
            for frame, probs, label in cached:
                matrix.update(label, resize_labels(dense_crf(probs, frame, params).argmax(0).astype(np.uint8),
                                                   label.shape[:2]))
            rows.append({**values, "miou": matrix.compute(list(classes)).miou})
            bar.update(1)
    best = max(rows, key=lambda r: r["miou"])
    return dataclasses.replace(base, **{k: best[k] for k in SEARCH_GRID}), rows
