"""What a bench run wrote: `BenchResult` and `BenchRun`, the JSON (schema_version 2) they are saved as, and
its schema, checked field by field when a file is read (a crafted or damaged baseline must not pass the gate).
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field

from edgeseg.errors import EdgesegError

SCHEMA_VERSION = 2


KIND = "edgeseg-bench"


STAGES = ("decode", "preprocess", "inference", "postprocess")


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


def to_json(run: BenchRun) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "kind": KIND, "context": run.context,
                       "config": run.config, "environment": run.environment, "peak_rss_mb": run.peak_rss_mb,
                       "results": [asdict(r) for r in run.results]}, indent=2) + "\n"


BENCH_FIX = "pass a file written by `edgeseg bench --json FILE`"


def from_dict(data: dict, source: str = "bench JSON") -> BenchRun:
    """A bench JSON (schema 2) back into a BenchRun; anything else is refused with what to do.

    Every field is checked against the schema here, where the file is read: the gate, compare and
    report index these values without guards, so a crafted or cut file would otherwise end in a
    KeyError, or worse, gate on a zero or NaN latency."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise EdgesegError(f"{source} is not an edgeseg bench result (no \"kind\": \"{KIND}\")", BENCH_FIX)
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EdgesegError(f"{source} has bench schema_version {version}; this edgeseg reads version {SCHEMA_VERSION}",
                           "re-run `edgeseg bench ... --json FILE` with this edgeseg to write a version "
                           f"{SCHEMA_VERSION} file")
    _check_run(data, source)
    known = set(BenchResult.__dataclass_fields__)
    results = [BenchResult(**{k: v for k, v in r.items() if k in known}) for r in data["results"]]
    return BenchRun(results=results, config=data.get("config", {}), environment=data.get("environment", {}),
                    context=data.get("context", {}), peak_rss_mb=data.get("peak_rss_mb"))


def read_json(path: str | os.PathLike) -> BenchRun:
    """A bench JSON file: a regular file (not a directory or FIFO), JSON, of the bench schema."""
    from edgeseg.inputs import read_json as read_json_file

    return from_dict(read_json_file(path, "bench JSON", BENCH_FIX), str(path))


class _Schema:
    """Type checks of one bench JSON, each failure naming the field and what it should be."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, should: str, value: object) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise EdgesegError(f"{self.source}: {where} is {shown}, not {should}",
                           f"{BENCH_FIX} (this one was edited, cut short or written by something else)")

    def need(self, ok: bool, where: str, should: str, value: object) -> None:
        if not ok:
            self.fail(where, should, value)

    def dict_(self, value: object, where: str) -> dict:
        self.need(isinstance(value, dict), where, "an object", value)
        return value

    def list_(self, value: object, where: str, nonempty: bool = False) -> list:
        self.need(isinstance(value, list) and (bool(value) or not nonempty), where,
                  "a non-empty list" if nonempty else "a list", value)
        return value

    def number(self, value: object, where: str, positive: bool = False, optional: bool = False,
               signed: bool = False) -> None:
        from edgeseg.inputs import is_finite_number

        if optional and value is None:
            return
        ok = is_finite_number(value) and (signed or (value > 0 if positive else value >= 0))
        should = "a finite number" if signed else "a positive, finite number" if positive else \
            "a finite number, 0 or more"
        self.need(ok, where, should, value)

    def integer(self, value: object, where: str, minimum: int = 0, optional: bool = False) -> None:
        if optional and value is None:
            return
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        self.need(ok, where, f"a whole number of at least {minimum}", value)

    def string(self, value: object, where: str, optional: bool = False) -> None:
        self.need(isinstance(value, str) or (optional and value is None), where, "a string", value)


_STRINGS = ("engine", "path", "backend", "precision_requested", "precision_as_run", "device")


_LATENCY_KEYS = ("mean", "p50", "p90", "p99")  # what tables, reports and charts read


ROLES = ("engine", "baseline", "torch")


_LOAD_OPTIONS = {"threads", "performance_hint", "spin"}  # what _options_dict writes; nothing else is loaded


_REQUIRED = tuple(name for name, spec in BenchResult.__dataclass_fields__.items()
                  if spec.default is MISSING and spec.default_factory is MISSING)


def _check_run(data: dict, source: str) -> None:
    """The run's own fields and every result's."""
    s = _Schema(source)
    for key in ("config", "environment", "context"):
        s.dict_(data.get(key, {}), key)
    environment = data.get("environment", {})
    cpu = s.dict_(environment.get("cpu", {}), "environment.cpu")
    flags = s.list_(cpu.get("flags", []), "environment.cpu.flags")
    s.need(all(isinstance(f, str) for f in flags), "environment.cpu.flags", "a list of strings", flags)
    for i, gpu in enumerate(s.list_(environment.get("gpu") or [], "environment.gpu")):
        s.dict_(gpu, f"environment.gpu[{i}]")
    s.dict_(environment.get("libraries") or {}, "environment.libraries")
    s.number(data.get("peak_rss_mb"), "peak_rss_mb", optional=True)
    for i, result in enumerate(s.list_(data.get("results"), "results", nonempty=True)):
        _check_result(s, s.dict_(result, f"results[{i}]"), f"results[{i}]")


def _check_result(s: _Schema, r: dict, at: str) -> None:
    """One engine's figures: identity strings, latency statistics, per-round medians (the gate's input:
    positive and finite), samples and their split into rounds, stages, throughput, load options."""
    missing = [f for f in _REQUIRED if f not in r]
    if missing:
        s.fail(at, f"a bench result: it lacks {', '.join(missing)}", {k: "..." for k in r})
    for key in _STRINGS:
        s.string(r[key], f"{at}.{key}")
    at = f"{at} ({r['engine']})"
    s.integer(r["batch"], f"{at}.batch", minimum=1)
    s.integer(r["iterations"], f"{at}.iterations")
    _check_latency(s, s.dict_(r["latency_ms"], f"{at}.latency_ms"), f"{at}.latency_ms")
    s.number(r["fps"], f"{at}.fps")
    for j, value in enumerate(s.list_(r["round_medians_ms"], f"{at}.round_medians_ms", nonempty=True)):
        s.number(value, f"{at}.round_medians_ms[{j}]", positive=True)
    samples = s.list_(r.get("samples_ms", []), f"{at}.samples_ms")
    for j, value in enumerate(samples):
        s.number(value, f"{at}.samples_ms[{j}]")
    _check_rounds(s, s.list_(r.get("round_sizes", []), f"{at}.round_sizes"), len(samples), at)
    _check_stages(s, s.dict_(r.get("stages_ms", {}), f"{at}.stages_ms"), f"{at}.stages_ms")
    s.number(r.get("app_fps"), f"{at}.app_fps", optional=True)
    _check_throughput(s, s.dict_(r.get("throughput", {}), f"{at}.throughput"), f"{at}.throughput")
    s.number(r.get("load_rss_mb"), f"{at}.load_rss_mb", optional=True, signed=True)  # RSS can shrink on load
    s.integer(r.get("artifact_bytes"), f"{at}.artifact_bytes", optional=True)
    s.need(isinstance(r.get("random_weights", False), bool), f"{at}.random_weights", "true or false",
           r.get("random_weights"))
    s.need(r.get("role", "engine") in ROLES, f"{at}.role", f"one of {', '.join(ROLES)}", r.get("role"))
    _check_load_options(s, s.dict_(r.get("load_options", {}), f"{at}.load_options"), f"{at}.load_options")
    s.string(r.get("files_digest"), f"{at}.files_digest", optional=True)


def _check_latency(s: _Schema, latency: dict, at: str) -> None:
    for key in _LATENCY_KEYS:
        s.need(key in latency, at, f"latency statistics with {', '.join(_LATENCY_KEYS)}", latency)
        s.number(latency[key], f"{at}.{key}", positive=True)
    for key, value in latency.items():
        s.number(value, f"{at}.{key}")


def _check_rounds(s: _Schema, sizes: list, samples: int, at: str) -> None:
    """round_sizes split samples_ms into rounds (BenchResult.rounds): they must add up to it."""
    for j, value in enumerate(sizes):
        s.integer(value, f"{at}.round_sizes[{j}]")
    if sizes and sum(sizes) != samples:
        s.fail(f"{at}.round_sizes", f"a split of its {samples} samples_ms (they add up to {sum(sizes)})", sizes)


def _check_stages(s: _Schema, stages: dict, at: str) -> None:
    """Empty (stages not timed), or every stage and the total with at least a mean."""
    if not stages:
        return
    for stage in (*STAGES, "total"):
        summary = s.dict_(stages.get(stage), f"{at}.{stage}")
        s.need("mean" in summary, f"{at}.{stage}", "stage statistics with a mean", summary)
        for key, value in summary.items():
            s.number(value, f"{at}.{stage}.{key}")


def _check_throughput(s: _Schema, throughput: dict, at: str) -> None:
    """Empty (throughput mode skipped), or at least fps and requests (the report shows both)."""
    if not throughput:
        return
    s.need("fps" in throughput and "requests" in throughput, at, "throughput with fps and requests", throughput)
    s.number(throughput["fps"], f"{at}.fps")
    s.integer(throughput["requests"], f"{at}.requests")


def _check_load_options(s: _Schema, options: dict, at: str) -> None:
    """Only what a re-timed baseline is loaded with (threads, performance_hint, spin), of the right types:
    the gate passes these to LoadOptions, so an unknown key would be a TypeError there."""
    unknown = sorted(set(options) - _LOAD_OPTIONS)
    s.need(not unknown, at, f"load options among {', '.join(sorted(_LOAD_OPTIONS))} (unknown: "
                            f"{', '.join(map(str, unknown))})", options)
    s.integer(options.get("threads", 0), f"{at}.threads")
    s.need(options.get("performance_hint", "latency") in ("latency", "throughput"), f"{at}.performance_hint",
           "latency or throughput", options.get("performance_hint"))
    s.need(isinstance(options.get("spin", False), bool), f"{at}.spin", "true or false", options.get("spin"))
