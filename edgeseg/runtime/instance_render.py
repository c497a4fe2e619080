"""Instance engines in a stream: the renderer, the score threshold and the per-stream object counts.

Kept beside the semantic `visualize.Renderer` with the same interface (`render(frame, what, hud_lines)`),
so the pipeline picks its renderer once and the semantic path gains no per-frame branch. The infer
stage keeps only the instances at or above the score threshold (`Instances.above`), so the masks of the
rest, already pasted at frame size by `Session.detect`, are dropped before they cross a queue; the
renderer, the sinks and the counts all see the same objects, the ones on the picture.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from edgeseg.errors import BadInputError
from edgeseg.runtime.instances import Instances, render_instances
from edgeseg.runtime.visualize import VIEWS, Renderer, hud, legend, palette_lut, paste, side_by_side

DEFAULT_SCORE_THRESHOLD = 0.5  # what `edgeseg stream` and `edgeseg bench` draw on an instance engine


def check_score_threshold(value: object) -> None:
    """None (the default for the engine kind) or a number in 0..1; NaN, booleans and strings are refused."""
    if value is None:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
    if not ok:
        raise BadInputError(f"score threshold {value!r} is out of range: it must be a number between 0 and 1",
                            f"pass --score-threshold between 0 and 1 (default {DEFAULT_SCORE_THRESHOLD})")


def detects_instances(session) -> bool:
    """Whether `session` runs an instance engine (stand-ins without the property are semantic)."""
    return bool(getattr(session, "detects_instances", False))


def score_threshold_for(session, threshold: float | None) -> float | None:
    """The threshold a stream applies: the default on an instance engine, None on a semantic one. A
    threshold given for a semantic engine is refused: it would be silently ignored."""
    if not detects_instances(session):
        if threshold is not None:
            kind = session.manifest.output.kind
            raise BadInputError(f"--score-threshold applies to instance engines; {session.manifest.name} is a "
                                f"semantic engine (output {kind!r}: it labels pixels and scores no objects)",
                                "drop --score-threshold, or pass an instance engine (built from a Mask R-CNN)")
        return None
    return DEFAULT_SCORE_THRESHOLD if threshold is None else float(threshold)


def renderer_for(session, view: str, alpha: float, show_legend: bool, threshold: float | None):
    """The renderer of the engine's kind: `Renderer` for label maps, `InstanceRenderer` for instances."""
    m = session.manifest
    if threshold is None:
        return Renderer(m.palette, m.classes, view, alpha, show_legend)
    return InstanceRenderer(m.palette, m.classes, view, alpha, show_legend, threshold)


class InstanceRenderer:
    """Instances at frame size -> the picture a driver sees: "overlay" (masks blended, contours, class and
    score at each box), "mask" (the same on black) or "side" (frame | overlay), with the class legend and
    the HUD as the semantic views have them, plus a HUD line counting the objects shown."""

    def __init__(self, palette, classes: Sequence[str], view: str = "overlay", alpha: float = 0.5,
                 show_legend: bool = True, threshold: float = DEFAULT_SCORE_THRESHOLD) -> None:
        if view not in VIEWS:
            raise BadInputError(f"view must be one of {VIEWS}, got {view!r}", f"pass one of {', '.join(VIEWS)}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise BadInputError(f"alpha {alpha!r} is out of range", "pass a mask weight between 0 and 1")
        self.palette, self.classes = palette, list(classes)
        self.view, self.alpha, self.threshold = view, float(alpha), threshold
        self._legend = legend(self.classes, palette_lut(palette)) if show_legend and self.classes else None

    def render(self, frame: np.ndarray, instances: Instances, hud_lines: Sequence[str] = ()) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame + its Instances (masks at H x W) -> (H, W or 2W, 3) uint8 BGR picture."""
        if instances.masks.shape[1:] != frame.shape[:2]:
            raise BadInputError(f"instance masks are {instances.masks.shape[1:]} but the frame is {frame.shape[:2]}",
                                "call session.detect(inputs, frame.shape[:2]) so masks are pasted at frame size")
        if self.view == "mask":
            out = render_instances(np.zeros_like(frame), instances, self.classes, self.palette, alpha=1.0)
        else:
            out = render_instances(frame, instances, self.classes, self.palette, self.alpha)
            if self.view == "side":
                out = side_by_side(frame, out)
        if self._legend is not None:
            paste(out, self._legend)
        if hud_lines:
            hud(out, [*hud_lines, f"{len(instances)} object{'' if len(instances) == 1 else 's'}, score >= {self.threshold:.2f}"])
        return out


class InstanceTally:
    """Objects shown per processed frame, for the stats JSON; written by the sink thread alone."""

    def __init__(self, threshold: float, classes: Sequence[str]) -> None:
        self.threshold, self.classes = threshold, list(classes)
        self.frames = self.shown = self.most = 0
        self.by_class = np.zeros(len(self.classes) + 1, np.int64)  # index 0: labels outside 1..C

    def add(self, instances: Instances) -> None:
        n = len(instances)
        self.frames, self.shown, self.most = self.frames + 1, self.shown + n, max(self.most, n)
        labels = np.where((instances.labels >= 1) & (instances.labels <= len(self.classes)), instances.labels, 0)
        self.by_class += np.bincount(labels, minlength=len(self.by_class))[:len(self.by_class)]

    def summary(self) -> dict[str, Any]:
        by_class = {name: int(n) for name, n in zip(self.classes, self.by_class[1:])}
        if self.by_class[0]:
            by_class["other"] = int(self.by_class[0])
        return {"score_threshold": self.threshold, "frames": self.frames, "shown": self.shown,
                "mean_per_frame": self.shown / self.frames if self.frames else None, "max_per_frame": self.most,
                "by_class": by_class}

    @classmethod
    def merged(cls, tallies: Sequence["InstanceTally"]) -> dict[str, Any]:
        """Several sources' tallies as one summary (the stream's totals)."""
        total = cls(tallies[0].threshold, tallies[0].classes)
        for t in tallies:
            total.frames, total.shown, total.most = total.frames + t.frames, total.shown + t.shown, max(total.most, t.most)
            total.by_class += t.by_class
        return total.summary()
