"""Reports from bench JSONs (schema 2) and eval JSONs: a Markdown table and a self-contained HTML page.

The HTML has no scripts and no external resources (inline SVG, inline CSS), so it opens offline, as
a CI artifact or an e-mail attachment. All text is escaped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Sequence

from edgeseg.measure.envinfo import short
from edgeseg.measure.report_frames import html_sections, markdown_sections, sections
from edgeseg.measure.report_stream import html_streams, markdown_streams
from edgeseg.measure.results import STAGES, BenchResult, BenchRun, read_json
from edgeseg.measure.svgplot import box_strip, scatter, stacked_bars


@dataclass
class Row:
    """One engine of one run, with its accuracy where an eval was given."""

    label: str
    result: BenchResult
    run: BenchRun
    miou: float | None = None  # percent
    drop: float | None = None  # points against the eval's reference
    evaluation: dict | None = field(default=None, repr=False)  # the eval JSON: per-class IoU, strip of frames


def collect(paths: Sequence[str], evals: dict[str | None, dict] | None = None) -> tuple[list[Row], list[BenchRun]]:
    """Read every bench JSON (refusing unknown schemas) and attach evals by engine name."""
    runs = [read_json(p) for p in paths]
    rows = []
    for path, run in zip(paths, runs):
        for r in run.results:
            label = r.engine if len(runs) == 1 else f"{r.engine} ({Path(path).stem})"
            rows.append(Row(label, r, run))
    for row in rows:
        data = (evals or {}).get(row.result.engine, (evals or {}).get(row.label))
        if data is not None:
            _attach(row, data)
    if evals and None in evals and len(rows) == 1:
        _attach(rows[0], evals[None])
    return rows, runs


def _attach(row: Row, data: dict) -> None:
    drop = data.get("miou_drop_points")
    row.miou, row.drop = 100.0 * data["miou"], None if drop is None else drop + 0.0  # + 0.0: no "-0.00"
    row.evaluation = data


def _precision(r: BenchResult) -> str:
    return r.precision_requested + ("" if r.precision_as_run == r.precision_requested else f" -> {r.precision_as_run}")


def _f(value, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def table_cells(row: Row) -> list[str]:
    """The report's columns for one engine, as plain text (escaped later for HTML)."""
    r = row.result
    lat, st = r.latency_ms, r.stages_ms
    tput = f"{r.throughput['fps']:.2f} ({r.throughput['requests']} req)" if r.throughput else "-"
    stage = [_f(st[s]["mean"]) if st else "-" for s in STAGES]
    size = None if r.artifact_bytes is None else r.artifact_bytes / 2**20
    acc = "-" if row.miou is None else f"{row.miou:.2f}" + ("" if row.drop is None else f" (drop {row.drop:.2f})")
    crf = (row.evaluation or {}).get("crf")
    if isinstance(crf, dict) and crf.get("miou_with") is not None:  # edgeseg eval --crf: the dense CRF's column
        acc += f"; dense CRF {100 * crf['miou_with']:.2f} (+{_f(crf.get('crf_ms_per_frame'), '.0f')} ms)"
    name = row.label + (" (random weights)" if r.random_weights else "") + (
        " [instances]" if r.engine in row.run.context.get("instance_engines", ()) else "")  # bench.INSTANCE_ENGINES
    return [name, r.backend, _precision(r), _f(lat["p50"]), _f(lat["p90"]), _f(lat["p99"]),
            f"{lat['mean']:.2f} ± {lat.get('std', 0.0):.2f}", _f(r.fps), tput, _f(r.app_fps), *stage,
            _f(r.load_rss_mb, ".0f"), _f(size, ".1f"), acc]


HEADERS = ["engine", "backend", "precision", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "engine FPS",
           "throughput FPS", "app FPS", *[f"{s} ms" for s in STAGES], "load RSS MB", "size MB", "mIoU %"]
NUMERIC = set(range(3, len(HEADERS) - 1))


def markdown(rows: list[Row], runs: list[BenchRun], streams: Sequence[dict] = (),
             base: str | os.PathLike | None = None) -> str:
    """A Markdown table (GitHub flavour) with one line per run saying where it ran, then each eval's
    segmentation (strip of frames linked relative to `base`, the Markdown file's folder; per-class IoU)."""
    lines = ["| " + " | ".join(HEADERS) + " |",
             "| " + " | ".join("---:" if i in NUMERIC else "---" for i in range(len(HEADERS))) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in table_cells(row)) + " |")
    lines.append("")
    for i, run in enumerate(runs, 1):
        cfg = run.config
        lines.append(f"Run {i}: {short(run.environment)}; {cfg.get('rounds')} interleaved rounds, "
                     f"{len(run.results[0].samples_ms) if run.results else 0} timed calls per engine; "
                     f"data {run.context.get('data', '?')}; peak RSS {_f(run.peak_rss_mb, '.0f')} MB (whole process).")
    segmentation = markdown_sections(sections((r.label, r.evaluation) for r in rows), base)
    return "\n".join(lines) + "\n" + markdown_streams(streams) + segmentation


CSS = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 18px}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}h2{margin-top:28px}
.note{color:#555;font-size:13px}"""


def html(rows: list[Row], runs: list[BenchRun], title: str = "edgeseg benchmark report",
         streams: Sequence[dict] = ()) -> str:
    """The whole page: results table, latency distribution, stage breakdown, accuracy vs latency, environment."""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>", _html_table(rows), html_streams(streams)]
    parts += ["<h2>Latency distribution (inference, engine only)</h2>",
              box_strip([(r.label, r.result.samples_ms) for r in rows], "latency distribution per engine")]
    staged = [r for r in rows if r.result.stages_ms]
    if staged:
        parts += ["<h2>End to end, by stage</h2>",
                  stacked_bars([(r.label, [r.result.stages_ms[s]["mean"] for s in STAGES]) for r in staged],
                               STAGES, "mean milliseconds per stage")]
    scored = [r for r in rows if r.miou is not None]
    if scored:
        points = [(r.label, r.result.latency_ms["p50"], r.miou,
                   "no reference" if r.drop is None else f"mIoU drop {r.drop:.2f} pts") for r in scored]
        parts += ["<h2>Accuracy vs latency</h2>",
                  scatter(points, "accuracy vs latency", "p50 latency per call (ms)", "mIoU (%)")]
        parts.append(html_sections(sections((r.label, r.evaluation) for r in scored)))
    else:
        parts.append("<p class=\"note\">No eval results given: pass <code>--eval ENGINE=FILE.json</code> "
                     "(from <code>edgeseg eval --engine ... --json</code>) for the accuracy-vs-latency chart.</p>")
    parts += [_html_env(runs), "</body></html>"]
    return "\n".join(parts) + "\n"


def _html_table(rows: list[Row]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    body = []
    for row in rows:
        cells = table_cells(row)
        body.append("<tr>" + "".join(f"<td class=\"n\">{escape(c)}</td>" if i in NUMERIC else f"<td>{escape(c)}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    note = ("<p class=\"note\">Engine FPS: one request at a time (latency mode). Throughput FPS: the backend's "
            "asynchronous requests/streams where it has them (else one at a time). App FPS: decode + preprocess + "
            "inference + postprocess (colorize), one frame after another; [instances] engines: inference is "
            "detect with the masks pasted at the frame's size, postprocess render_instances. Load RSS: memory "
            "added by loading and warming each engine.</p>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def _html_env(runs: list[BenchRun]) -> str:
    out = ["<h2>Environment</h2>"]
    for i, run in enumerate(runs, 1):
        env = run.environment
        cpu = env.get("cpu", {})
        libs = ", ".join(f"{k} {v}" for k, v in (env.get("libraries") or {}).items() if v)
        items = [("run", f"{i}: {run.context.get('command', '')}"), ("data", str(run.context.get("data", ""))),
                 ("created", str(run.context.get("created", ""))), ("CPU", str(cpu.get("model", "?"))),
                 ("CPU flags", " ".join(cpu.get("flags", []))),
                 ("cores / threads", f"{cpu.get('usable_cores')} usable / {env.get('threads_requested')}"),
                 ("GPU", str(env.get("gpu") or "none found")), ("power mode", str(env.get("power") or "not readable")),
                 ("libraries", libs), ("load average", str(env.get("load_average"))),
                 ("config", ", ".join(f"{k}={v}" for k, v in run.config.items())),
                 ("peak RSS (process)", f"{_f(run.peak_rss_mb, '.0f')} MB")]
        out.append("<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
                   + "</table>")
    return "\n".join(out)


def write_report(out: str | os.PathLike, rows: list[Row], runs: list[BenchRun], title: str,
                 streams: Sequence[dict] = (), overwrite: bool = False) -> str:
    """Write HTML (.html/.htm) or Markdown (anything else) atomically, replacing a file only with
    `overwrite`; returns what was written."""
    from edgeseg.io import atomic_path

    text = html(rows, runs, title, streams) if str(out).lower().endswith((".html", ".htm")) else \
        markdown(rows, runs, streams, Path(out).parent)
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return text
