"""Instances on the host, torch-free: what an instance engine's outputs become, and how they are drawn.

An instance graph (`edgeseg.models.maskrcnn.deploy`) ends at up to D detections with 28 x 28 mask
probabilities; pasting them into the frame is left to the host, as the semantic engines leave their
upsampling and argmax to the host tail: one small resize per detection (cv2) instead of D full-frame
resizes inside the graph. `paste_masks` does torchvision's paste (mask padded by one cell, box grown to
match and rounded, bilinear resize), so the host gives the PyTorch network's full-frame masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

MASK_THRESHOLD = 0.5  # a pixel belongs to an instance where its mask probability passes this (torchvision's)


@dataclass(frozen=True)
class Instances:
    """The objects found in one frame, highest score first.

    boxes: K x 4 float32 x0, y0, x1, y1 in frame pixels; labels: K int64 class ids 1..C (0 is the background,
    names in the engine's `classes[label - 1]`); scores: K float32 in 0..1; masks: K x H x W bool at the
    frame's size."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score: float) -> "Instances":
        keep = self.scores >= score
        return Instances(self.boxes[keep], self.labels[keep], self.scores[keep], self.masks[keep])


def paste_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int, padding: int = 1) -> np.ndarray:
    """K x M x M probabilities at their boxes -> K x H x W float32 probabilities in the frame."""
    k, m = masks.shape[0], masks.shape[-1]
    out = np.zeros((k, height, width), np.float32)
    if k == 0:
        return out
    grown = np.pad(masks.astype(np.float32), ((0, 0), (padding, padding), (padding, padding)))
    scale = (m + 2 * padding) / m
    boxes = boxes.astype(np.float32)
    half = (boxes[:, 2:] - boxes[:, :2]) * np.float32(0.5) * np.float32(scale)
    centre = (boxes[:, 2:] + boxes[:, :2]) * np.float32(0.5)
    corners = np.concatenate([centre - half, centre + half], axis=1).astype(np.int64)  # truncation, as torch's
    for i, (x0, y0, x1, y1) in enumerate(corners.tolist()):
        bw, bh = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        cx0, cx1, cy0, cy1 = max(x0, 0), min(x1 + 1, width), max(y0, 0), min(y1 + 1, height)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        resized = cv2.resize(grown[i], (bw, bh), interpolation=cv2.INTER_LINEAR)
        out[i, cy0:cy1, cx0:cx1] = resized[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return out


def from_outputs(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, masks: np.ndarray,
                 height: int, width: int, input_size: tuple[int, int] | None = None) -> Instances:
    """An instance graph's four outputs (masks K x M x M) as Instances at frame size (height, width). With
    `input_size` (the graph's H, W) the boxes are scaled from it to the frame first, as torchvision's
    postprocess scales them back to the original image before it pastes the masks."""
    boxes = boxes.astype(np.float32).reshape(-1, 4)
    if input_size is not None and tuple(input_size) != (height, width):
        scale = np.array([width / input_size[1], height / input_size[0]] * 2, np.float32)
        boxes = boxes * scale
    full = paste_masks(masks, boxes, height, width) >= MASK_THRESHOLD
    return Instances(boxes, labels.astype(np.int64), scores.astype(np.float32), full)


def instance_colors(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """K x 3 BGR colours: the class colour, each further instance of a class a step lighter or darker, so
    neighbouring cars are told apart while a car stays car-coloured."""
    base = np.asarray(palette, np.float32).reshape(-1, 3)[:, ::-1]
    if len(labels) == 0:
        return np.zeros((0, 3), np.uint8)
    colors = base[np.clip(labels - 1, 0, len(base) - 1)]
    by_class = np.argsort(labels, kind="stable")  # the instance's rank among those of its class, by score
    sorted_labels = labels[by_class]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    position = np.arange(len(labels))
    order = np.empty(len(labels), np.int64)
    order[by_class] = position - starts[np.searchsorted(starts, position, side="right") - 1]
    shade = np.where(order % 2 == 0, 1.0, 0.6) * (1.0 - 0.08 * (order // 2 % 4))
    return np.clip(colors * shade[:, None] + (order % 2 == 1)[:, None] * 60, 0, 255).astype(np.uint8)


def render_instances(frame: np.ndarray, instances: Instances, classes: Sequence[str],
                     palette: Sequence[Sequence[int]], alpha: float = 0.5, labels: bool = True) -> np.ndarray:
    """A copy of the BGR frame with each instance's mask blended in its colour, its contour drawn and its
    class and score written at its box. One pass per instance (at most the detections kept)."""
    out = frame.copy()
    colors = instance_colors(instances.labels, palette)
    if len(instances):
        covered = instances.masks.any(axis=0)
        top = instances.masks.argmax(axis=0)  # where instances overlap, the higher-scored one shows
        blended = cv2.addWeighted(frame, 1 - alpha, colors[top], alpha, 0)
        np.copyto(out, blended, where=covered[..., None])  # no gather-scatter of the covered pixels
    for mask, color in zip(instances.masks, colors):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 1, cv2.LINE_AA)
    if labels:
        for box, label, score, color in zip(instances.boxes, instances.labels, instances.scores, colors):
            name = classes[label - 1] if 0 < label <= len(classes) else str(int(label))
            text = f"{name} {score:.2f}"
            x, y = int(box[0]), max(int(box[1]) - 3, 10)
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            cv2.rectangle(out, (x, y - th - 2), (x + tw + 2, y + 2), tuple(int(c) for c in color), -1)
            cv2.putText(out, text, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out
