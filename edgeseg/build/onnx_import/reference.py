"""The user's graph run as its own code would run it, the reference a wrapped engine is held to:
the declared preprocessing in numpy, the file as given in ONNX Runtime, the scores upsampled with
OpenCV (bilinear, half-pixel, as `F.interpolate(..., align_corners=False)`) and the argmax.

Written apart from the wrapper on purpose: the two share no code, so a wrong transpose, colour flip
or scale in either shows up as disagreement at build time instead of as a quietly worse engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeseg.build.onnx_import.graph import GraphFacts
from edgeseg.build.onnx_import.probe import OutputFacts, run_graph
from edgeseg.build.onnx_import.wrap import Preprocessing


def graph_input(frame: np.ndarray, facts: GraphFacts, pre: Preprocessing) -> np.ndarray:
    """One (H, W, 3) uint8 BGR frame -> the graph's input tensor for it, batch axis included."""
    x = frame[..., ::-1] if pre.channel_order == "rgb" else frame
    if facts.input.dtype != "uint8":
        x = x.astype(np.float32) / np.float32(255.0 / pre.value_range)
        x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    h, w = x.shape[:2]
    ph, pw = pre.padded((h, w))
    if (ph, pw) != (h, w):
        x = np.pad(x, ((0, ph - h), (0, pw - w), (0, 0)))
    if facts.input.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None]).astype(facts.input.dtype, copy=False)


def reference_labels(session, facts: GraphFacts, out: OutputFacts, pre: Preprocessing,
                     frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR frames -> (N, H, W) class ids, one frame at a time (any graph batch)."""
    batch = facts.input.static_batch or 1
    labels = []
    for frame in frames:
        x = np.repeat(graph_input(frame, facts, pre), batch, axis=0)
        y = np.asarray(run_graph(session, facts, x)[0])
        labels.append(_labels_of(y, out, frame.shape[:2], pre.padded(frame.shape[:2])))
    return np.stack(labels)


def _labels_of(y: np.ndarray, out: OutputFacts, size: tuple[int, int], padded: tuple[int, int]) -> np.ndarray:
    h, w = size
    if out.kind == "labels":
        return y.reshape(y.shape[-2:] if out.layout == "N1HW" else y.shape[:2])[:h, :w].astype(np.int64)
    scores = y.astype(np.float32)
    if out.layout == "NCHW":
        scores = scores.transpose(1, 2, 0)  # (h, w, C) for OpenCV
    if scores.shape[:2] != tuple(padded):
        scores = _resize(scores, padded)
    return np.argmax(scores[:h, :w], axis=2)


def _resize(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, half-pixel; OpenCV takes at most 512 channels at a time."""
    planes = [cv2.resize(np.ascontiguousarray(scores[..., i:i + 512]), (size[1], size[0]),
                         interpolation=cv2.INTER_LINEAR).reshape(size[0], size[1], -1)
              for i in range(0, scores.shape[2], 512)]
    return np.concatenate(planes, axis=2)


@dataclass(frozen=True)
class Agreement:
    frames: int
    pixels: int
    agreeing: int

    @property
    def fraction(self) -> float:
        return self.agreeing / self.pixels if self.pixels else 0.0

    def record(self, frames_from: str) -> dict:
        return {"frames": self.frames, "from": frames_from, "pixels": self.pixels,
                "agreement": round(self.fraction, 6)}


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    candidate = np.asarray(candidate)
    if candidate.shape != reference.shape:
        raise ValueError(f"labels of shape {candidate.shape} against the reference's {reference.shape}")
    return Agreement(len(reference), int(reference.size), int(np.count_nonzero(reference == candidate)))
