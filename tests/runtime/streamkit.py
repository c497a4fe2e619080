"""What the streaming tests share: sizes, a slow/failing Session stand-in, and ways to read a video back."""

from __future__ import annotations

import time

import cv2
import numpy as np

ENGINE_SIZE = (64, 96)  # the engine's input; the frames below are another size, to exercise both resizes
FRAME_SIZE = (72, 128)
QUIET = dict(report_every_s=0)


class SlowSession:
    """A Session stand-in that takes `delay` seconds per frame (and can fail at frame `fail_at`)."""

    def __init__(self, session, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.manifest, self._session = session.manifest, session
        self.delay, self.fail_at, self.calls = delay, fail_at, 0

    def infer(self, frames: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise RuntimeError("engine fell over")
        time.sleep(self.delay)
        return self._session.infer(frames)

    def describe(self) -> dict:
        return self._session.describe()


def frames_in(path) -> int:
    """Frames that decode, counted one by one (not the container's claim)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n
