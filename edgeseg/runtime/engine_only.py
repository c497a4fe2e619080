"""The engine timed alone, in the stream's own process and on the stream's own frames.

`edgeseg stream --engine-fps N` times N engine calls before the stream and N after it: the ratio of the
end-to-end rate to this one says what the capture, render and sink threads cost the engine, on the same
machine at the same moment (a machine whose load drifts shows in the before/after pair).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from edgeseg.runtime.stats import EngineOnly


def batches_of(inputs: Sequence[np.ndarray], batch: int) -> list[np.ndarray]:
    """Engine-size frames cycled into (batch, h, w, 3) arrays, as the stream sends them."""
    count = max(1, len(inputs) // batch)
    return [np.stack([inputs[(i * batch + k) % len(inputs)] for k in range(batch)]) for i in range(count)]


def time_infer(session, inputs: Sequence[np.ndarray], iterations: int, warmup: int = 3,
               batch: int = 1) -> np.ndarray:
    """Seconds per `session.infer` call of `batch` frames, cycling the given engine-size frames."""
    calls = batches_of(inputs, batch)
    for i in range(warmup):
        session.infer(calls[i % len(calls)])
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        session.infer(calls[i % len(calls)])
        times[i] = time.perf_counter() - t0
    return times


def engine_only(before: np.ndarray, after: np.ndarray, batch: int = 1) -> EngineOnly:
    """Frames per second of the pooled calls (`batch` frames each), with the before and after rates apart."""
    both = np.concatenate([before, after])
    return EngineOnly(fps=float(batch * len(both) / both.sum()), mean_ms=float(both.mean() * 1e3),
                      p50_ms=float(np.median(both) * 1e3), iterations=len(both),
                      fps_before=float(batch * len(before) / before.sum()),
                      fps_after=float(batch * len(after) / after.sum()), batch=batch)
