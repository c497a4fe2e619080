"""Latency and throughput of engines, measured side by side in one run, engine-only and end to end.

Engines alternate call by call (A, B, C, A, B, C, ...) rather than one after another, so a slow
second on a noisy machine lands on all of them; the calls are grouped into rounds (windows of wall
time), each round's median is kept, and the regression gate (edgeseg.measure.gate) bootstraps over those
round medians, paired across engines. Every timed call is one frame's whole path through
an application: decode (JPEG/PNG bytes -> BGR), preprocess (resize_to_input), inference
(Session.infer, the engine-only number), postprocess (labels back to frame size + colour LUT), so
engine FPS and application FPS come from the same calls. Torch is imported only for --baseline-torch.
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

from edgeseg.errors import EdgesegError
from edgeseg.measure.stats import summarize
from edgeseg.runtime.session import LoadOptions, Session

SCHEMA_VERSION = 2
KIND = "edgeseg-bench"
STAGES = ("decode", "preprocess", "inference", "postprocess")


@dataclass(frozen=True)
class BenchConfig:
    iterations: int = 50  # timed calls per engine in all (ignored when duration is set)
    duration: float = 0.0  # seconds of timed calls per engine in all; 0: use iterations
    warmup: int = 5  # untimed calls per engine first (allocations, lazy compiles, caches)
    rounds: int = 5  # engines take turns this many times
    throughput_seconds: float = 2.0  # per engine, after the rounds; 0 skips throughput mode
    stages: bool = True  # time decode/preprocess/postprocess around inference
    progress: bool = True


@dataclass
class BenchResult:
    """One engine's figures; every *_ms is milliseconds per call, a call being one batch."""

    engine: str
    path: str
    backend: str
    precision_requested: str
    precision_as_run: str
    device: str
    batch: int
    iterations: int
    latency_ms: dict[str, float]  # inference only: mean, std, min, p50, p90, p99, max
    fps: float  # engine FPS, latency mode: batch * 1000 / mean inference latency
    round_medians_ms: list[float]  # one per interleaved round
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> mean, p50, ...; and "total"
    app_fps: float | None = None  # end to end, one frame after another: batch * 1000 / mean total
    throughput: dict = field(default_factory=dict)  # fps, requests (in flight), seconds, frames
    load_rss_mb: float | None = None  # resident memory added by loading and warming this engine
    artifact_bytes: int | None = None  # the engine directory's files listed in its manifest
    random_weights: bool = False
    role: str = "engine"  # "engine" | "baseline" (re-timed for the gate) | "torch" (--baseline-torch)
    load_options: dict = field(default_factory=dict)  # threads, performance_hint: enough to time it again
    files_digest: str | None = None  # sha256 of the manifest's file hashes: the same engine, byte for byte
    round_sizes: list[int] = field(default_factory=list)  # calls per round: samples_ms split into rounds
    samples_ms: list[float] = field(default_factory=list, repr=False)  # inference, in call order

    def rounds(self) -> list[list[float]]:
        """samples_ms split back into its interleaved rounds."""
        out, start = [], 0
        for n in self.round_sizes or [len(self.samples_ms)]:
            out.append(self.samples_ms[start:start + n])
            start += n
        return out


@dataclass
class BenchRun:
    results: list[BenchResult]
    config: dict
    environment: dict
    context: dict = field(default_factory=dict)  # data, command, created
    peak_rss_mb: float | None = None  # of the whole process: engines share it (ru_maxrss)


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
    from edgeseg.runtime.visualize import colorize

    session = engine.session
    n = session.manifest.input.shape[0] or 1
    picks = [frames[(start + i) % len(frames)] for i in range(n)]
    t0 = time.perf_counter()
    images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in picks]
    t1 = time.perf_counter()
    batch = np.stack([resize_to_input(im, session.manifest.input.size) for im in images])
    t2 = time.perf_counter()
    labels = session.infer(batch)
    t3 = time.perf_counter()
    if stages:
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
    from tqdm import tqdm

    for engine in engines:
        for i in range(config.warmup):
            _call(engine, frames, i, config.stages)
    rounds = max(1, config.rounds)
    per_round = max(1, config.iterations // rounds)
    seconds = config.duration / rounds if config.duration else 0.0
    total = None if seconds else per_round * rounds * len(engines)
    with tqdm(total=total, desc="bench", unit="call", disable=not config.progress, leave=False) as bar:
        for _ in range(rounds):
            _timed_round(engines, frames, config, per_round, seconds, bar)


def throughput(engine: _Engine, frames: Sequence[bytes], seconds: float) -> dict:
    """Throughput mode: the backend keeps as many requests in flight as it can (Session.run_for)."""
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
    d = engine.session.describe()
    batch = engine.session.manifest.input.shape[0] or 1
    inference = engine.stages["inference"]
    stats = summarize(inference)
    stages_ms, app_fps = {}, None
    if config.stages:
        totals = np.sum([engine.stages[s] for s in STAGES], axis=0)
        stages_ms = {s: summarize(engine.stages[s]) for s in STAGES} | {"total": summarize(totals)}
        app_fps = 1000.0 * batch / stages_ms["total"]["mean"]
    return BenchResult(engine.name, engine.path, d["backend"], d["precision_requested"], d["precision_as_run"],
                       str(d.get("device")), batch, len(inference), stats, 1000.0 * batch / stats["mean"],
                       [float(np.median(r)) for r in engine.rounds], stages_ms, app_fps, tp,
                       round(engine.load_rss_mb, 1), engine.artifact_bytes, bool(d.get("random_weights")),
                       engine.role, _options_dict(engine.options),
                       engine.digest, [len(r) for r in engine.rounds], [round(s, 3) for s in inference])


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
    return _Engine(spec.name, str(spec.path), session, palette_lut(m.palette), rss_mb() - before,
                   artifact_bytes(spec.path, list(m.files)), spec.options, spec.role, files_digest(m.files))


def _torch_twin(engine: _Engine) -> _Engine:
    """PyTorch eager FP32 of the checkpoint the engine was built from (hash checked), for speed-up ratios."""
    from edgeseg.measure.torch_baseline import open_torch_baseline

    before = rss_mb()
    session, checkpoint = open_torch_baseline(engine.session.manifest, engine.options)
    return _Engine(f"{engine.name} [torch eager]", str(checkpoint), session, engine.lut, rss_mb() - before,
                   os.path.getsize(checkpoint), engine.options, "torch")


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
    finally:
        for e in loaded:
            e.session.close()
    return BenchRun(results, asdict(config), fingerprint(options.threads), context or {}, round(peak_rss_mb(), 1))


def bench_sessions(sessions: dict[str, Session], images: Sequence[np.ndarray], iterations: int = 50,
                   warmup: int = 5, rounds: int = 5, progress: bool = True) -> list[BenchResult]:
    """Engine-only timing of sessions the caller opened and closes (the INT8 speed guard), on decoded
    BGR images: interleaved rounds as in bench_engines, no stages, no throughput mode."""
    import cv2

    from edgeseg.runtime.visualize import palette_lut

    frames = [cv2.imencode(".png", im)[1].tobytes() for im in images]  # lossless: the same pixels come back
    engines = [_Engine(name, "", s, palette_lut(s.manifest.palette), 0.0, None) for name, s in sessions.items()]
    config = BenchConfig(iterations, 0.0, warmup, rounds, 0.0, False, progress)
    run_rounds(engines, frames, config)
    return [_result(e, config, {}) for e in engines]


def _precision(r: BenchResult) -> str:
    return r.precision_requested + ("" if r.precision_as_run == r.precision_requested else f"->{r.precision_as_run}")


def format_table(results: list[BenchResult]) -> str:
    """The engine table (ratios to the first row), then the per-stage table when stages were timed."""
    base = results[0].latency_ms["mean"]
    lines = [f"{'engine':34s} {'backend':12s} {'precision':13s} {'mean ms':>8s} {'std':>6s} {'p50':>7s} "
             f"{'p90':>7s} {'p99':>7s} {'FPS':>7s} {'tput FPS':>8s} {'app FPS':>7s} {'speed-up':>8s}"]
    for r in results:
        stamp = " (random weights)" if r.random_weights else ""
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
    return "\n".join(lines)


def to_json(run: BenchRun) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "kind": KIND, "context": run.context,
                       "config": run.config, "environment": run.environment, "peak_rss_mb": run.peak_rss_mb,
                       "results": [asdict(r) for r in run.results]}, indent=2) + "\n"


def from_dict(data: dict, source: str = "bench JSON") -> BenchRun:
    """A bench JSON (schema 2) back into a BenchRun; anything else is refused with what to do."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise EdgesegError(f"{source} is not an edgeseg bench result (no \"kind\": \"{KIND}\")",
                           "pass a file written by `edgeseg bench --json FILE`")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EdgesegError(f"{source} has bench schema_version {version}; this edgeseg reads version {SCHEMA_VERSION}",
                           "re-run `edgeseg bench ... --json FILE` with this edgeseg to write a version "
                           f"{SCHEMA_VERSION} file")
    known = set(BenchResult.__dataclass_fields__)
    results = [BenchResult(**{k: v for k, v in r.items() if k in known}) for r in data["results"]]
    return BenchRun(results, data.get("config", {}), data.get("environment", {}), data.get("context", {}),
                    data.get("peak_rss_mb"))


def read_json(path: str | os.PathLike) -> BenchRun:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EdgesegError(f"{path} does not exist",
                           "pass a bench JSON written by `edgeseg bench --json FILE`") from None
    except json.JSONDecodeError as exc:
        raise EdgesegError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})",
                           "pass a bench JSON written by `edgeseg bench --json FILE`") from None
    return from_dict(data, str(path))
