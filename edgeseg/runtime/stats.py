"""What a stream measured: per-stage latency percentiles, end-to-end latency, FPS, frame accounting.

Latencies go into fixed-size ring buffers allocated once, so a run of days keeps flat memory; the
percentiles are over the most recent `RING` samples of each stage (all of them in runs shorter than that).
Frame accounting is exact: `captured == processed + dropped` once a stream has ended. The stats are made
on every ending, errors included (`stats_without_stream` when not even the engine loaded), because they
are most wanted after a failure.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgeseg.io import atomic_path

SCHEMA_VERSION = 1
RING = 1 << 16  # samples kept per stage: 65,536 frames, about 36 minutes at 30 FPS, 512 KiB of float64
STAGES = ("capture", "preprocess", "infer", "render", "sink")


class LatencyRing:
    """A preallocated ring of seconds; `add` is O(1) and allocates nothing."""

    def __init__(self, capacity: int = RING) -> None:
        self._values = np.zeros(capacity, np.float64)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:  # several engine workers may time into one ring
            self._values[self._count % len(self._values)] = seconds
            self._count += 1

    def last(self) -> float:
        return float(self._values[(self._count - 1) % len(self._values)]) if self._count else 0.0

    def summary(self) -> "LatencySummary":
        n = min(self._count, len(self._values))
        if not n:
            return LatencySummary(count=0)
        p50, p95, p99 = np.percentile(self._values[:n], (50, 95, 99)) * 1e3
        return LatencySummary(count=self._count, mean_ms=float(self._values[:n].mean() * 1e3),
                              p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99))


@dataclass(frozen=True)
class LatencySummary:
    count: int
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    def short(self) -> str:
        return "-" if self.p50_ms is None else f"{self.p50_ms:.1f}/{self.p95_ms:.1f}"


@dataclass(frozen=True)
class EngineOnly:
    """`session.infer` timed alone, in the same process, on engine inputs made from the stream's own frames:
    `iterations` calls before the stream and as many after it; `fps` pools both, so that a machine whose
    load drifts during the run is not compared against one lucky moment."""

    fps: float
    mean_ms: float
    p50_ms: float
    iterations: int  # before + after
    fps_before: float
    fps_after: float
    batch: int = 1  # frames per call, as the stream batched them (fps counts frames)


@dataclass(frozen=True)
class StreamStats:
    """The stats JSON (`--stats FILE.json`); `ratio` = end-to-end FPS / engine-only FPS."""

    source: dict[str, Any]
    engine: dict[str, Any]
    settings: dict[str, Any]
    frames: dict[str, int]  # captured, processed, dropped (stale or past --max-frames), corrupt, reconnects, resized
    wall_s: float
    fps: float  # processed frames / seconds from the first to the last rendered frame
    stages: dict[str, LatencySummary]
    e2e: LatencySummary  # capture time -> frame handed to the sinks
    stopped_by: str  # "end" | "max-frames" | "signal" | "window" | "error"
    error: str | None = None
    engine_only: EngineOnly | None = None
    ratio: float | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)  # per file sink: path, frames, written
    # instance engines: score_threshold, frames, shown, mean_per_frame, max_per_frame, by_class; null otherwise
    instances: dict[str, Any] | None = None
    # one entry per source (name, source, frames, fps, e2e, capture, stopped_by, error, outputs, instances);
    # the fields above are the sums over all of them (fps: every source's frames over the stream's time)
    sources: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    kind: str = "edgeseg.stream"
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Whole or not at all (atomic rename); a full or read-only disk is an EdgesegError, not a traceback."""
        from edgeseg.runtime.destinations import write_error

        try:
            with atomic_path(path, overwrite=overwrite) as tmp:
                tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise write_error(path, exc, "write the statistics to") from None

    def summary(self) -> str:
        f = self.frames
        lines = [f"streamed {f['processed']} frames in {self.wall_s:.1f}s: {self.fps:.1f} FPS end-to-end, "
                 f"e2e latency p50 {self.e2e.short().replace('/', ' ms, p95 ')} ms; dropped {f['dropped']}, "
                 f"corrupt {f['corrupt']}, reconnects {f['reconnects']}"
                 + (f", resized {f['resized']}" if f.get("resized") else "") + f"; stopped by {self.stopped_by}",
                 "  stage p50/p95 ms: " + ", ".join(f"{k} {v.short()}" for k, v in self.stages.items())]
        if self.engine_only:
            e = self.engine_only
            lines.append(f"  engine-only {e.fps:.1f} FPS ({e.iterations} session.infer calls: {e.fps_before:.1f} FPS "
                         f"before the stream, {e.fps_after:.1f} after); end-to-end / engine-only = {self.ratio:.1%}")
        if len(self.sources) > 1:
            for s in self.sources:
                f = s["frames"]
                lines.append(f"  {s['name']} ({s['source']['kind']}): {f['processed']} frames, {s['fps']:.1f} FPS, "
                             f"e2e p50/p95 {LatencySummary(**s['e2e']).short()} ms; dropped {f['dropped']}, corrupt {f['corrupt']}, "
                             f"reconnects {f['reconnects']}; stopped by {s['stopped_by']}"
                             + (f"; error: {s['error']}" if s.get("error") else ""))
        if self.instances and self.instances.get("frames"):
            i = self.instances
            counts = ", ".join(f"{k} {v}" for k, v in i["by_class"].items())
            lines.append(f"  objects with score >= {i['score_threshold']:.2f}: {i['mean_per_frame']:.2f} per frame "
                         f"(max {i['max_per_frame']}); {i['shown']} in all: {counts}")
        return "\n".join(lines)


class StatsRecorder:
    """Thread-safe counters and rings the pipeline's stages write into."""

    def __init__(self) -> None:
        self.rings = {name: LatencyRing() for name in STAGES}
        self.e2e = LatencyRing()
        self.counts = {"captured": 0, "processed": 0, "dropped": 0, "corrupt": 0, "reconnects": 0, "resized": 0}
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.first_done: float | None = None
        self.last_done: float | None = None

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def done(self, t_capture: float) -> None:
        """A frame reached the sinks: end-to-end latency and the FPS clock."""
        now = time.perf_counter()
        self.e2e.add(now - t_capture)
        with self._lock:
            self.counts["processed"] += 1
            self.first_done = self.first_done or now
            self.last_done = now

    def fps(self) -> float:
        n = self.counts["processed"]
        if n < 2 or self.first_done is None or self.last_done == self.first_done:
            return 0.0
        return (n - 1) / (self.last_done - self.first_done)

    def line(self) -> str:
        """The console line printed every few seconds."""
        c = self.counts
        stages = " ".join(f"{k} {self.rings[k].summary().short()}" for k in ("preprocess", "infer", "render", "sink"))
        return (f"{c['processed']} frames  {self.fps():.1f} FPS  e2e p50/p95 {self.e2e.summary().short()} ms  "
                f"[{stages}]  dropped {c['dropped']} corrupt {c['corrupt']}")

    def source_stats(self, **fields: Any) -> dict[str, Any]:
        """One source's entry of `StreamStats.sources`: its frames, rate, end-to-end latency and capture time."""
        return {**fields, "frames": dict(self.counts), "fps": self.fps(), "e2e": asdict(self.e2e.summary()),
                "capture": asdict(self.rings["capture"].summary())}

    def freeze(self, **fields: Any) -> StreamStats:
        return StreamStats(frames=dict(self.counts), wall_s=time.perf_counter() - self.started, fps=self.fps(),
                           stages={k: r.summary() for k, r in self.rings.items()}, e2e=self.e2e.summary(), **fields)


def error_text(exc: BaseException | None) -> str | None:
    """The `error` field: an EdgesegError's problem, or the exception's type and message."""
    if exc is None:
        return None
    return getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"


def stats_without_stream(source: dict[str, Any], engine: dict[str, Any], settings: dict[str, Any],
                         error: BaseException | None) -> StreamStats:
    """The stats of a stream that never started (the engine did not load): zero frames and the error, so that
    a monitoring script reading --stats sees every ending."""
    stopped_by = "signal" if isinstance(error, KeyboardInterrupt) else "error"
    return StatsRecorder().freeze(source=source, engine=engine, settings=settings, stopped_by=stopped_by,
                                  error=error_text(error))
