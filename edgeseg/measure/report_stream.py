"""The streaming part of a report: one row per `edgeseg stream --stats` JSON, so the engine-only
benchmark and what the application reached on a video stand in one document."""

from __future__ import annotations

import json
import os
from html import escape
from typing import Sequence

from edgeseg.errors import EdgesegError
from edgeseg.runtime.stats import SCHEMA_VERSION

HEADERS = ["source", "engine", "precision", "frames", "dropped", "end-to-end FPS", "engine-only FPS",
           "end-to-end / engine-only", "e2e p50 ms", "e2e p95 ms", "infer p50 ms", "render p50 ms"]


def read_stream(path: str | os.PathLike) -> dict:
    """A stats JSON written by `edgeseg stream --stats`, refused with the fix if it is anything else."""
    try:
        data = json.loads(open(path).read())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgesegError(f"cannot read stream stats {path} ({exc})", "pass a file written by "
                           "`edgeseg stream ... --stats FILE.json`") from exc
    if not isinstance(data, dict) or data.get("kind") != "edgeseg.stream" or data.get("schema_version") != SCHEMA_VERSION:
        raise EdgesegError(f"{path} is not stream statistics of schema version {SCHEMA_VERSION}",
                           "pass a file written by `edgeseg stream ... --stats FILE.json` with this edgeseg")
    return data


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
