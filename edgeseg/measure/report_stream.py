"""The streaming part of a report: one row per `edgeseg stream --stats` JSON, so the engine-only
benchmark and what the application reached on a video stand in one document."""

from __future__ import annotations

import os
from html import escape
from typing import Sequence

from edgeseg.errors import EdgesegError
from edgeseg.runtime.stats import SCHEMA_VERSION

HEADERS = ["source", "engine", "precision", "frames", "dropped", "end-to-end FPS", "engine-only FPS",
           "end-to-end / engine-only", "e2e p50 ms", "e2e p95 ms", "infer p50 ms", "render p50 ms"]


STREAM_FIX = "pass a file written by `edgeseg stream ... --stats FILE.json`"


def read_stream(path: str | os.PathLike) -> dict:
    """A stats JSON written by `edgeseg stream --stats`, refused with the fix if it is anything else.

    The fields the report prints are checked here, where the file is read, so a cut or edited file is
    named instead of ending in a KeyError (or a TypeError) while the report is written."""
    from edgeseg.inputs import read_json

    data = read_json(path, "stream stats", STREAM_FIX)
    if not isinstance(data, dict) or data.get("kind") != "edgeseg.stream" or data.get("schema_version") != SCHEMA_VERSION:
        raise EdgesegError(f"{path} is not stream statistics of schema version {SCHEMA_VERSION}",
                           f"{STREAM_FIX} with this edgeseg")
    _check_stream(data, str(path))
    return data


def _check_stream(data: dict, path: str) -> None:
    """What stream_cells reads: source, engine, frame counts, FPS, ratio, e2e and stage percentiles."""
    source = _need_dict(data, "source", path)
    _need(isinstance(source.get("kind"), str) and "name" in source, path, "source", source, "a source kind and name")
    engine = _need_dict(data, "engine", path)
    for key in ("name", "precision_requested", "precision_as_run"):
        _need(isinstance(engine.get(key), str), path, f"engine.{key}", engine.get(key), "a string")
    frames = _need_dict(data, "frames", path)
    for key in ("processed", "dropped"):
        value = frames.get(key)
        _need(isinstance(value, int) and not isinstance(value, bool) and value >= 0, path, f"frames.{key}", value,
              "a count of 0 or more")
    _number(data.get("fps"), path, "fps")
    _number(data.get("ratio"), path, "ratio", optional=True)
    if data.get("engine_only") is not None:
        _number(_need_dict(data, "engine_only", path).get("fps"), path, "engine_only.fps")
    _percentiles(_need_dict(data, "e2e", path), path, "e2e", ("p50_ms", "p95_ms"))
    stages = _need_dict(data, "stages", path)
    for stage in ("infer", "render"):
        _percentiles(_need_dict(stages, stage, path, "stages."), path, f"stages.{stage}", ("p50_ms",))


def _need(ok: bool, path: str, key: str, value: object, should: str) -> None:
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise EdgesegError(f"{path}: {key} is {shown}, not {should}",
                           f"{STREAM_FIX} (this one was edited, cut short or written by something else)")


def _need_dict(parent: dict, key: str, path: str, prefix: str = "") -> dict:
    value = parent.get(key)
    _need(isinstance(value, dict), path, prefix + key, value, "an object")
    return value


def _number(value: object, path: str, key: str, optional: bool = False) -> None:
    from edgeseg.inputs import is_finite_number

    _need((optional and value is None) or (is_finite_number(value) and value >= 0), path, key, value,
          "a finite number, 0 or more" + (" (or null)" if optional else ""))


def _percentiles(summary: dict, path: str, key: str, names: tuple[str, ...]) -> None:
    """Latency percentiles: null when no frame reached the stage, else finite milliseconds."""
    for name in names:
        _number(summary.get(name), path, f"{key}.{name}", optional=True)


def stream_cells(stats: dict) -> list[str]:
    engine, only = stats["engine"], stats.get("engine_only") or {}
    precision = engine["precision_requested"] + ("" if engine["precision_as_run"] == engine["precision_requested"]
                                                 else f" -> {engine['precision_as_run']}")
    fmt = lambda v, f=".1f": "-" if v is None else format(v, f)  # noqa: E731
    return [f"{stats['source']['kind']} {os.path.basename(str(stats['source']['name']))}",
            engine["name"] + (" (random weights)" if engine.get("random_weights") else ""), precision,
            str(stats["frames"]["processed"]), str(stats["frames"]["dropped"]), fmt(stats["fps"]),
            fmt(only.get("fps")), "-" if stats.get("ratio") is None else f"{100 * stats['ratio']:.1f}%",
            fmt(stats["e2e"]["p50_ms"]), fmt(stats["e2e"]["p95_ms"]), fmt(stats["stages"]["infer"]["p50_ms"]),
            fmt(stats["stages"]["render"]["p50_ms"])]


def markdown_streams(streams: Sequence[dict]) -> str:
    if not streams:
        return ""
    lines = ["", "Streams (`edgeseg stream`):", "", "| " + " | ".join(HEADERS) + " |",
             "| " + " | ".join("---" if i < 3 else "---:" for i in range(len(HEADERS))) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in stream_cells(s)) + " |" for s in streams]
    return "\n".join(lines) + "\n"


def html_streams(streams: Sequence[dict]) -> str:
    if not streams:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{escape(c)}</td>" if i >= 3 else f"<td>{escape(c)}</td>"
                                    for i, c in enumerate(stream_cells(s))) + "</tr>" for s in streams)
    return ("<h2>Streams</h2><table><tr>" + head + "</tr>" + body + "</table><p class=\"note\">End-to-end: "
            "capture to the frame handed to the sinks, every stage on its own thread. Engine-only: "
            "session.infer alone on the stream's frames, timed in the same run before and after it.</p>")
