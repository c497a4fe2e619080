"""Latency and throughput of engines, measured side by side in one run, engine-only and end to end.

Engines alternate call by call (A, B, C, A, B, C, ...) rather than one after another, so a slow
second on a noisy machine lands on all of them; the calls are grouped into rounds (windows of wall
time), each round's median is kept, and the regression gate (edgeseg.measure.gate) bootstraps over those
round medians, paired across engines. Every timed call is one frame's whole path through
an application: decode (JPEG/PNG bytes -> BGR), preprocess (resize_to_input), inference
(Session.infer, the engine-only number), postprocess (labels back to frame size + colour LUT), so
engine FPS and application FPS come from the same calls. Torch is imported only for --baseline-torch.

Instance engines (Mask R-CNN) take the same path with their own two stages: inference is
`Session.detect(frame, original size)`, the graph plus the host's mask paste at the frame's size (what a
stream pays before drawing), and postprocess is `render_instances` of the objects scoring 0.5 or more
(`edgeseg stream`'s default). Semantic and instance engines may be timed in one run: each row is its own
engine's application path, so their latencies compare as "time per frame", not as the same work.
"""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.measure.results import (  # noqa: F401
    KIND,
    SCHEMA_VERSION,
    STAGES,
    BenchResult,
    BenchRun,
    from_dict,
    read_json,
    to_json,  # re-exported: bench's results are read where bench is
)
from edgeseg.measure.stats import summarize
from edgeseg.runtime.instance_render import DEFAULT_SCORE_THRESHOLD, detects_instances
from edgeseg.runtime.session import LoadOptions, Session


INSTANCE_ENGINES = "instance_engines"  # the BenchRun.context key naming the instance engines of a run


@dataclass(frozen=True)
class BenchConfig:
    iterations: int = 50  # timed calls per engine in all (ignored when duration is set)
    duration: float = 0.0  # seconds of timed calls per engine in all; 0: use iterations
    warmup: int = 5  # untimed calls per engine first (allocations, lazy compiles, caches)
    rounds: int = 5  # engines take turns this many times
    throughput_seconds: float = 2.0  # per engine, after the rounds; 0 skips throughput mode
    stages: bool = True  # time decode/preprocess/postprocess around inference
    progress: bool = True

    def __post_init__(self) -> None:
        # a count below 1 used to be raised to 1 silently: a bench that timed less than it said
        for flag, value, least in (("--iterations", self.iterations, 1), ("--rounds", self.rounds, 1),
                                   ("--warmup", self.warmup, 0), ("--duration", self.duration, 0),
                                   ("--throughput-seconds", self.throughput_seconds, 0)):
            if not value >= least:  # NaN fails too
                raise BadInputError(f"{flag} {value} must be at least {least}", f"pass {flag} {max(least, 1)} or more")
        if not self.duration and self.iterations < self.rounds:
            raise BadInputError(f"--iterations {self.iterations} is fewer than --rounds {self.rounds}: "
                                "a round would time no call", "pass at least one iteration per round")


@dataclass
class _Engine:
    """A loaded session and what timing it needs."""

    name: str
    path: str
    session: Session
    lut: np.ndarray
    load_rss_mb: float
    artifact_bytes: int | None
    options: LoadOptions = LoadOptions()
    role: str = "engine"
    digest: str | None = None
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    rounds: list[list[float]] = field(default_factory=list)

    @property
    def instances(self) -> bool:
        """An instance engine: detect + render_instances instead of infer + colorize."""
        return detects_instances(self.session)


def encoded_frames(dataset, count: int = 16) -> list[bytes]:
    """The compressed bytes of real frames, so decode is timed as a camera/file app pays it.

    File-backed datasets give their files' own bytes; generated ones are JPEG-encoded (quality 95) once.
    """
    import cv2

    out = []
    for i in range(min(len(dataset), count)):
        pairs = getattr(dataset, "pairs", None)
        if pairs is not None:
            out.append(Path(pairs[i][0]).read_bytes())
            continue
        _, buf = cv2.imencode(".jpg", dataset[i].image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(buf.tobytes())
    if not out:
        raise EdgesegError("the bench data has no frames", "pass --data with at least one image")
    return out


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc; elsewhere the peak as an upper bound)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def artifact_bytes(root: str | os.PathLike, files: Sequence[str]) -> int:
    return sum(os.path.getsize(Path(root) / f) for f in files if (Path(root) / f).is_file())


def _call(engine: _Engine, frames: Sequence[bytes], start: int, stages: bool) -> dict[str, float]:
    """One timed call through the application path; returns ms per stage."""
    import cv2

    from edgeseg.runtime.frames import resize_labels, resize_to_input
    from edgeseg.runtime.instances import render_instances
    from edgeseg.runtime.visualize import colorize

    session = engine.session
    n = session.manifest.input.shape[0] or 1
    picks = [frames[(start + i) % len(frames)] for i in range(n)]
    t0 = time.perf_counter()
    images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in picks]
    t1 = time.perf_counter()
    batch = np.stack([resize_to_input(im, session.manifest.input.size) for im in images])
    t2 = time.perf_counter()
    if engine.instances:  # masks pasted at each frame's own size, as a stream shows them
        labels = [session.detect(b[None], im.shape[:2])[0] for b, im in zip(batch, images)]
    else:
        labels = session.infer(batch)
    t3 = time.perf_counter()
    if stages and engine.instances:
        m = session.manifest
        for im, found in zip(images, labels):
            render_instances(im, found.above(DEFAULT_SCORE_THRESHOLD), m.classes, m.palette)
    elif stages:
        for im, lab in zip(images, labels):
            colorize(resize_labels(lab, im.shape[:2]), engine.lut)
    t4 = time.perf_counter()
    return {"decode": 1e3 * (t1 - t0), "preprocess": 1e3 * (t2 - t1), "inference": 1e3 * (t3 - t2),
            "postprocess": 1e3 * (t4 - t3)}


def _timed_round(engines: list[_Engine], frames: Sequence[bytes], config: BenchConfig, per_round: int,
                 seconds: float, bar) -> None:
    """One round: the engines alternate call by call (A B C A B C ...), `per_round` calls each, or for
    `seconds` per engine when a duration is set. Alternating per call puts every engine's round in the
    same window of wall time, so a burst of load from another process lands on all of them alike and
    the paired round medians cancel it."""
    samples: list[list[float]] = [[] for _ in engines]
    start, i = time.perf_counter(), 0
    budget = seconds * len(engines)
    while (i < per_round) if not seconds else (i == 0 or time.perf_counter() - start < budget):
        for engine, mine in zip(engines, samples):
            ms = _call(engine, frames, len(engine.stages["inference"]), config.stages)
            for stage, value in ms.items():
                engine.stages[stage].append(value)
            mine.append(ms["inference"])
            bar.update()
        i += 1
    for engine, mine in zip(engines, samples):
        engine.rounds.append(mine)


def run_rounds(engines: list[_Engine], frames: Sequence[bytes], config: BenchConfig) -> None:
    """Warm up every engine, then the timed rounds."""
    from edgeseg.progress import progress

    for engine in engines:
        for i in range(config.warmup):
            _call(engine, frames, i, config.stages)
    rounds = max(1, config.rounds)
    per_round = max(1, config.iterations // rounds)
    seconds = config.duration / rounds if config.duration else 0.0
    total = None if seconds else per_round * rounds * len(engines)
    with progress(total=total, desc="bench", unit="call", disable=not config.progress, leave=False) as bar:
        for _ in range(rounds):
            _timed_round(engines, frames, config, per_round, seconds, bar)


def throughput(engine: _Engine, frames: Sequence[bytes], seconds: float) -> dict:
    """Throughput mode: the backend keeps as many requests in flight as it can (Session.run_for; an instance
    engine one, since each result needs its host paste)."""
    import cv2

    from edgeseg.runtime.frames import resize_to_input

    s = engine.session
    n = s.manifest.input.shape[0] or 1
    images = [cv2.imdecode(np.frombuffer(frames[i % len(frames)], np.uint8), cv2.IMREAD_COLOR) for i in range(n)]
    batch = np.stack([resize_to_input(im, s.manifest.input.size) for im in images])
    done, elapsed, requests = s.run_for(batch, seconds)
    return {"fps": done / elapsed if elapsed else 0.0, "requests": requests, "seconds": round(elapsed, 3),
            "frames": done}


def _result(engine: _Engine, config: BenchConfig, tp: dict) -> BenchResult:
    """One engine's BenchResult by keyword, from the pieces: what ran, its latency, its stages, its memory."""
    batch = engine.session.manifest.input.shape[0] or 1
    return BenchResult(**_identity(engine), batch=batch, **_latency(engine, batch), **_stages(engine, config, batch),
                       throughput=tp, load_rss_mb=round(engine.load_rss_mb, 1), artifact_bytes=engine.artifact_bytes)


def _identity(engine: _Engine) -> dict:
    """What was timed: the engine by name and path, its backend, precision and device, how it was loaded."""
    d = engine.session.describe()
    return {"engine": engine.name, "path": engine.path, "backend": d["backend"],
            "precision_requested": d["precision_requested"], "precision_as_run": d["precision_as_run"],
            "device": str(d.get("device")), "random_weights": bool(d.get("random_weights")), "role": engine.role,
            "load_options": _options_dict(engine.options), "files_digest": engine.digest}


def _latency(engine: _Engine, batch: int) -> dict:
    """Inference alone: its statistics, engine FPS, and the raw samples by interleaved round (for the gate)."""
    inference = engine.stages["inference"]
    stats = summarize(inference)
    return {"iterations": len(inference), "latency_ms": stats, "fps": 1000.0 * batch / stats["mean"],
            "round_medians_ms": [float(np.median(r)) for r in engine.rounds],
            "round_sizes": [len(r) for r in engine.rounds], "samples_ms": [round(s, 3) for s in inference]}


def _stages(engine: _Engine, config: BenchConfig, batch: int) -> dict:
    """The application path per stage and its FPS end to end; empty when stages were not timed."""
    if not config.stages:
        return {"stages_ms": {}, "app_fps": None}
    totals = np.sum([engine.stages[s] for s in STAGES], axis=0)
    stages_ms = {s: summarize(engine.stages[s]) for s in STAGES} | {"total": summarize(totals)}
    return {"stages_ms": stages_ms, "app_fps": 1000.0 * batch / stages_ms["total"]["mean"]}


@dataclass(frozen=True)
class EngineSpec:
    """One engine to time: where it is, how to load it, under what name, in what role."""

    path: str
    options: LoadOptions = LoadOptions()
    name: str = ""
    role: str = "engine"


def files_digest(files: dict[str, str]) -> str:
    """One hash for an engine's content: equal digests mean byte-identical engine files."""
    import hashlib

    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _options_dict(options: LoadOptions) -> dict:
    """What a later gate needs to load the engine the same way again."""
    return {"threads": options.threads, "performance_hint": options.performance_hint, "spin": options.spin}


def _open(spec: EngineSpec) -> _Engine:
    from edgeseg.runtime import load
    from edgeseg.runtime.visualize import palette_lut

    before = rss_mb()
    session = load(spec.path, spec.options)
    m = session.manifest
    return _Engine(name=spec.name, path=str(spec.path), session=session, lut=palette_lut(m.palette),
                   load_rss_mb=rss_mb() - before, artifact_bytes=artifact_bytes(spec.path, list(m.files)),
                   options=spec.options, role=spec.role, digest=files_digest(m.files))


def _torch_twin(engine: _Engine) -> _Engine:
    """PyTorch eager FP32 of the checkpoint the engine was built from (hash checked), for speed-up ratios."""
    from edgeseg.measure.torch_baseline import open_torch_baseline

    before = rss_mb()
    session, checkpoint = open_torch_baseline(engine.session.manifest, engine.options)
    return _Engine(name=f"{engine.name} [torch eager]", path=str(checkpoint), session=session, lut=engine.lut,
                   load_rss_mb=rss_mb() - before, artifact_bytes=os.path.getsize(checkpoint),
                   options=engine.options, role="torch")


def unique_names(paths: Sequence[str]) -> list[str]:
    """Engine directory basenames, suffixed #2, #3 where the same name appears again."""
    names, seen = [], {}
    for p in paths:
        base = os.path.basename(os.path.normpath(str(p)))
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def specs_for(paths: Sequence[str], options: LoadOptions, role: str = "engine") -> list[EngineSpec]:
    return [EngineSpec(str(p), options, n, role) for p, n in zip(paths, unique_names(paths))]


def bench_engines(engines: Sequence[str | EngineSpec], frames: Sequence[bytes], options: LoadOptions = LoadOptions(),
                  config: BenchConfig = BenchConfig(), baseline_torch: bool = False, context: dict | None = None,
                  **overrides) -> BenchRun:
    """Load every engine (and the first one's torch twin with `baseline_torch`), time them interleaved,
    close them. Plain paths load with `options`; EngineSpecs carry their own (a re-timed baseline).
    `overrides` replace BenchConfig fields (iterations=, progress=, ...), as the API before it took them."""
    import dataclasses

    from edgeseg.measure.envinfo import fingerprint

    config = dataclasses.replace(config, **overrides)
    specs = [e if isinstance(e, EngineSpec) else None for e in engines]
    plain = specs_for([e for e in engines if not isinstance(e, EngineSpec)], options)
    specs = [s or plain.pop(0) for s in specs]
    loaded: list[_Engine] = []
    try:
        for spec in specs:
            loaded.append(_open(spec))
        if baseline_torch:
            first = next(e for e in loaded if e.role == "engine")
            loaded.insert(0, _torch_twin(first))
        run_rounds(loaded, frames, config)
        tps = [throughput(e, frames, config.throughput_seconds) if config.throughput_seconds > 0 else {}
               for e in loaded]
        results = [_result(e, config, tp) for e, tp in zip(loaded, tps)]
        context = dict(context or {})
        if any(e.instances for e in loaded):  # which rows timed detect + render_instances (read by the report)
            context[INSTANCE_ENGINES] = [e.name for e in loaded if e.instances]
    finally:
        for e in loaded:
            e.session.close()
    return BenchRun(results=results, config=asdict(config), environment=fingerprint(options.threads),
                    context=context, peak_rss_mb=round(peak_rss_mb(), 1))


def bench_sessions(sessions: dict[str, Session], images: Sequence[np.ndarray], iterations: int = 50,
                   warmup: int = 5, rounds: int = 5, progress: bool = True) -> list[BenchResult]:
    """Engine-only timing of sessions the caller opened and closes (the INT8 speed guard), on decoded
    BGR images: interleaved rounds as in bench_engines, no stages, no throughput mode."""
    import cv2

    from edgeseg.runtime.visualize import palette_lut

    frames = [cv2.imencode(".png", im)[1].tobytes() for im in images]  # lossless: the same pixels come back
    engines = [_Engine(name=name, path="", session=s, lut=palette_lut(s.manifest.palette), load_rss_mb=0.0,
                       artifact_bytes=None) for name, s in sessions.items()]
    config = BenchConfig(iterations=iterations, duration=0.0, warmup=warmup, rounds=rounds, throughput_seconds=0.0,
                         stages=False, progress=progress)
    run_rounds(engines, frames, config)
    return [_result(e, config, {}) for e in engines]


def _precision(r: BenchResult) -> str:
    return r.precision_requested + ("" if r.precision_as_run == r.precision_requested else f"->{r.precision_as_run}")


def format_table(results: list[BenchResult], instance_engines: Sequence[str] = ()) -> str:
    """The engine table (ratios to the first row), then the per-stage table when stages were timed;
    `instance_engines` (BenchRun.context["instance_engines"]) are marked and their stages explained."""
    base = results[0].latency_ms["mean"]
    lines = [f"{'engine':34s} {'backend':12s} {'precision':13s} {'mean ms':>8s} {'std':>6s} {'p50':>7s} "
             f"{'p90':>7s} {'p99':>7s} {'FPS':>7s} {'tput FPS':>8s} {'app FPS':>7s} {'speed-up':>8s}"]
    for r in results:
        stamp = (" (random weights)" if r.random_weights else "") + (
            " [instances]" if r.engine in instance_engines else "")
        tput = f"{r.throughput['fps']:8.2f}" if r.throughput else f"{'-':>8s}"
        app = f"{r.app_fps:7.2f}" if r.app_fps else f"{'-':>7s}"
        lat = r.latency_ms
        lines.append(f"{r.engine:34s} {r.backend:12s} {_precision(r):13s} {lat['mean']:8.2f} {lat['std']:6.2f} "
                     f"{lat['p50']:7.2f} {lat['p90']:7.2f} {lat['p99']:7.2f} {r.fps:7.2f} {tput} {app} "
                     f"{base / lat['mean']:7.2f}x{stamp}")
    if results[0].stages_ms:
        lines += ["", f"{'per stage, mean ms':34s} " + " ".join(f"{s:>11s}" for s in (*STAGES, "total"))]
        for r in results:
            lines.append(f"{r.engine:34s} " + " ".join(f"{r.stages_ms[s]['mean']:11.2f}" for s in (*STAGES, "total")))
    if instance_engines:
        lines += ["", f"[instances]: inference = session.detect (the graph + pasting the masks at the frame's size), "
                      f"postprocess = render_instances of the objects scoring {DEFAULT_SCORE_THRESHOLD} or more"]
    return "\n".join(lines)
