"""Bench results made from chosen numbers, so the statistics and reports are tested without timing."""

from __future__ import annotations

import json

import numpy as np

from edgeseg.measure.results import SCHEMA_VERSION, BenchResult, BenchRun, to_json


def make_result(name: str, rounds: list[list[float]], role: str = "engine") -> BenchResult:
    """A BenchResult from given per-round samples (ms), as bench would record it."""
    flat = [x for r in rounds for x in r]
    stats = {"mean": float(np.mean(flat)), "std": float(np.std(flat)), "min": min(flat), "p50": float(np.median(flat)),
             "p90": float(np.percentile(flat, 90)), "p99": float(np.percentile(flat, 99)), "max": max(flat)}
    stages = {s: {"mean": 1.0, "p50": 1.0} for s in ("decode", "preprocess", "postprocess")}
    stages["inference"] = stats
    stages["total"] = {"mean": stats["mean"] + 3.0, "p50": stats["p50"] + 3.0}
    return BenchResult(engine=name, path=f"engines/{name}", backend="onnxruntime", precision_requested="fp32",
                       precision_as_run="fp32", device="CPU", batch=1, iterations=len(flat), latency_ms=stats,
                       fps=1000.0 / stats["mean"], round_medians_ms=[float(np.median(r)) for r in rounds],
                       stages_ms=stages, app_fps=1000.0 / stages["total"]["mean"],
                       throughput={"fps": 50.0, "requests": 1, "seconds": 1.0, "frames": 50},
                       load_rss_mb=12.0, artifact_bytes=4 << 20, random_weights=False, role=role,
                       load_options={"threads": 1, "performance_hint": "latency"}, files_digest=None,
                       round_sizes=[len(r) for r in rounds], samples_ms=flat)


def noisy_rounds(level: float, seed: int, rounds: int = 12, calls: int = 15) -> list[list[float]]:
    """Latency samples around `level` ms with multiplicative noise and a few slow outliers."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        r = level * rng.lognormal(0.0, 0.05, calls)
        r[rng.random(calls) < 0.05] *= 2.0
        out.append([round(float(x), 3) for x in r])
    return out


def write_run(path, results: list[BenchResult]) -> str:
    env = {"cpu": {"model": "Test CPU", "flags": ["avx2"], "usable_cores": 2}, "threads_requested": 1}
    run = BenchRun(results, {"rounds": 12, "iterations": 180}, env, {"data": "synthetic:4", "command": "test"}, 100.0)
    path.write_text(to_json(run))
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    return str(path)
