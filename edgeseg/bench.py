"""Latency and throughput of engines, measured side by side in one run.

Engines take turns in rounds (A, B, C, A, B, C, ...) rather than one after another, so a slow
minute on a noisy machine lands on all of them; the table reports each engine's ratio to the first.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .backends import LoadOptions, Session
from .data.transforms import resize_to_input

SCHEMA_VERSION = 1


@dataclass
class BenchResult:
    engine: str
    backend: str
    precision_requested: str
    precision_as_run: str
    device: str
    batch: int
    iterations: int
    latency_ms: dict[str, float]  # per inference call: mean, p50, p90, p99, min
    fps: float  # frames per second = batch / mean latency
    random_weights: bool = False
    samples_ms: list[float] = field(default_factory=list, repr=False)


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    return {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
            "p90": float(np.percentile(values, 90)), "p99": float(np.percentile(values, 99)),
            "min": float(values.min())}


def frames_for(session: Session, images: Sequence[np.ndarray]) -> np.ndarray:
    """A batch of real frames at the engine's input size, as the runtime would feed it."""
    batch = session.manifest.input.shape[0] or 1
    size = session.manifest.input.size
    picked = [resize_to_input(images[i % len(images)], size) for i in range(batch)]
    return np.stack(picked)


def bench_sessions(sessions: dict[str, Session], images: Sequence[np.ndarray], iterations: int = 50,
                   warmup: int = 5, rounds: int = 5, progress: bool = True) -> list[BenchResult]:
    """Time `session.infer` (frames in, label maps out) for every session, interleaved in rounds."""
    batches = {name: frames_for(s, images) for name, s in sessions.items()}
    for name, session in sessions.items():
        for _ in range(warmup):
            session.infer(batches[name])
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    per_round = max(1, iterations // rounds)
    from tqdm import tqdm

    with tqdm(total=per_round * rounds * len(sessions), desc="bench", unit="run", disable=not progress,
              leave=False) as bar:
        for _ in range(rounds):
            for name, session in sessions.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    session.infer(batches[name])
                    samples[name].append(1000 * (time.perf_counter() - start))
                    bar.update()
    return [_result(name, sessions[name], batches[name].shape[0], samples[name]) for name in sessions]


def _result(name: str, session: Session, batch: int, samples: list[float]) -> BenchResult:
    d = session.describe()
    stats = percentiles(samples)
    return BenchResult(name, d["backend"], d["precision_requested"], d["precision_as_run"], str(d.get("device")),
                       batch, len(samples), stats, 1000.0 * batch / stats["mean"], bool(d.get("random_weights")),
                       [round(s, 3) for s in samples])


def bench_engines(engine_dirs: Iterable[str], images: Sequence[np.ndarray], options: LoadOptions = LoadOptions(),
                  **kwargs) -> list[BenchResult]:
    from .runtime import load

    sessions = {os.path.basename(os.path.normpath(d)): load(d, options) for d in engine_dirs}
    try:
        return bench_sessions(sessions, images, **kwargs)
    finally:
        for session in sessions.values():
            session.close()


def format_table(results: list[BenchResult]) -> str:
    base = results[0].latency_ms["mean"]
    lines = [f"{'engine':34s} {'backend':12s} {'precision':15s} {'mean ms':>8s} {'p50':>7s} {'p90':>7s} "
             f"{'FPS':>7s} {'speed-up':>8s}"]
    for r in results:
        precision = r.precision_requested + ("" if r.precision_as_run == r.precision_requested else f"->{r.precision_as_run}")
        stamp = " (random weights)" if r.random_weights else ""
        lines.append(f"{r.engine:34s} {r.backend:12s} {precision:15s} {r.latency_ms['mean']:8.2f} "
                     f"{r.latency_ms['p50']:7.2f} {r.latency_ms['p90']:7.2f} {r.fps:7.2f} "
                     f"{base / r.latency_ms['mean']:7.2f}x{stamp}")
    return "\n".join(lines)


def to_json(results: list[BenchResult], context: dict | None = None) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "kind": "edgeseg-bench", "context": context or {},
                       "results": [asdict(r) for r in results]}, indent=2) + "\n"
