"""Small inline-SVG charts for the HTML report: no plotting library, no scripts, works offline.

Every piece of text goes through `html.escape` (engine names come from directory names, which can hold
anything). Coordinates are plain numbers in a fixed viewBox, so the charts scale with the page.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

import numpy as np

WIDTH = 900
LEFT = 260  # room for engine names
RIGHT = 30
ROW = 34
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


def nice_ticks(high: float, count: int = 6) -> list[float]:
    """Round tick values from 0 to at least `high` (1, 2, 5 x 10^k steps)."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(high / step)) + 1)]


def _text(x: float, y: float, s: str, anchor: str = "start", size: int = 12, extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-family="sans-serif" {extra}>{escape(s)}</text>')


def _x_axis(ticks: list[float], scale, y: float, label: str) -> list[str]:
    parts = [f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#333"/>']
    for t in ticks:
        x = scale(t)
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 5}" stroke="#333"/>')
        parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{y}" stroke="#eee"/>')
        parts.append(_text(x, y + 18, f"{t:g}", "middle", 11))
    parts.append(_text((LEFT + WIDTH - RIGHT) / 2, y + 36, label, "middle", 12))
    return parts


def _svg(height: float, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="100%" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>' + "".join(body) + "</svg>")


def box_strip(rows: Sequence[tuple[str, Sequence[float]]], title: str, unit: str = "ms") -> str:
    """One row per engine: the samples as dots, a box from p25 to p75, the median, whiskers p1..p99."""
    top = 20
    high = max((float(np.percentile(s, 99.5)) for _, s in rows if len(s)), default=1.0) * 1.08
    ticks = nice_ticks(high)
    span = ticks[-1] or 1.0
    scale = lambda v: LEFT + (WIDTH - LEFT - RIGHT) * min(v, span) / span  # noqa: E731
    body = []
    for i, (label, samples) in enumerate(rows):
        y = top + i * ROW + ROW / 2
        body.append(_text(LEFT - 10, y + 4, label, "end"))
        body += _box(np.asarray(samples, np.float64), y, scale, COLORS[i % len(COLORS)])
    axis_y = top + len(rows) * ROW + 6
    body += _x_axis(ticks, scale, axis_y, f"latency per call ({unit}); box p25-p75, line median, whiskers p1-p99")
    return _svg(axis_y + 48, body, title)


def _box(values: np.ndarray, y: float, scale, color: str) -> list[str]:
    if values.size == 0:
        return []
    p1, p25, p50, p75, p99 = np.percentile(values, [1, 25, 50, 75, 99])
    rng = np.random.default_rng(0)  # fixed jitter: the same file renders the same picture
    step = max(1, values.size // 400)
    dots = [f'<circle cx="{scale(v):.1f}" cy="{y + j:.1f}" r="1.6" fill="{color}" fill-opacity="0.35"/>'
            for v, j in zip(values[::step], rng.uniform(-9, 9, values[::step].size))]
    h = 10
    return dots + [
        f'<line x1="{scale(p1):.1f}" y1="{y}" x2="{scale(p99):.1f}" y2="{y}" stroke="#333"/>',
        f'<rect x="{scale(p25):.1f}" y="{y - h:.1f}" width="{max(1.0, scale(p75) - scale(p25)):.1f}" '
        f'height="{2 * h}" fill="none" stroke="#222" stroke-width="1.5"/>',
        f'<line x1="{scale(p50):.1f}" y1="{y - h}" x2="{scale(p50):.1f}" y2="{y + h}" stroke="#c00" stroke-width="2"/>',
    ]


def stacked_bars(rows: Sequence[tuple[str, Sequence[float]]], parts: Sequence[str], title: str) -> str:
    """One bar per engine: mean ms of each stage, end to end."""
    top = 40
    high = max((sum(v) for _, v in rows), default=1.0) * 1.05
    ticks = nice_ticks(high)
    span = ticks[-1] or 1.0
    scale = lambda v: LEFT + (WIDTH - LEFT - RIGHT) * v / span  # noqa: E731
    body = [f'<rect x="{LEFT + i * 150}" y="8" width="12" height="12" fill="{COLORS[i % len(COLORS)]}"/>'
            + _text(LEFT + i * 150 + 18, 19, part) for i, part in enumerate(parts)]
    for i, (label, values) in enumerate(rows):
        y = top + i * ROW
        body.append(_text(LEFT - 10, y + ROW / 2 + 4, label, "end"))
        x = 0.0
        for j, v in enumerate(values):
            tip = escape(f"{label}: {parts[j]} {v:.2f} ms")
            body.append(f'<rect x="{scale(x):.1f}" y="{y + 6}" width="{scale(x + v) - scale(x):.1f}" '
                        f'height="{ROW - 12}" fill="{COLORS[j % len(COLORS)]}"><title>{tip}</title></rect>')
            x += v
        body.append(_text(scale(x) + 4, y + ROW / 2 + 4, f"{x:.1f} ms", size=11))
    axis_y = top + len(rows) * ROW + 6
    body += _x_axis(ticks, scale, axis_y, "mean ms per frame, by stage")
    return _svg(axis_y + 48, body, title)


def scatter(points: Sequence[tuple[str, float, float, str]], title: str, xlabel: str, ylabel: str) -> str:
    """(label, x, y, note) points: accuracy (y) against latency (x). Each dot carries its number and a
    legend below lists "n  label: note": engines of one checkpoint often share an mIoU, and labels
    written beside the dots would then overprint each other."""
    left, top, plot_w, plot_h = 80, 20, WIDTH - 80 - RIGHT, 300
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    xt = nice_ticks(max(xs) * 1.1 if xs else 1.0)
    y_lo = math.floor(min(ys) - 1) if ys else 0.0
    y_hi = math.ceil(max(ys) + 1) if ys else 1.0
    sx = lambda v: left + plot_w * v / (xt[-1] or 1.0)  # noqa: E731
    sy = lambda v: top + plot_h * (1 - (v - y_lo) / ((y_hi - y_lo) or 1.0))  # noqa: E731
    body = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>']
    for t in xt:
        body += [f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{top + plot_h}" stroke="#eee"/>',
                 _text(sx(t), top + plot_h + 16, f"{t:g}", "middle", 11)]
    for t in nice_range(y_lo, y_hi):
        body += [f'<line x1="{left}" y1="{sy(t):.1f}" x2="{left + plot_w}" y2="{sy(t):.1f}" stroke="#eee"/>',
                 _text(left - 6, sy(t) + 4, f"{t:g}", "end", 11)]
    legend_y = top + plot_h + 58
    for i, (label, x, y, note) in enumerate(points):
        color = COLORS[i % len(COLORS)]
        dy = -10 - 12 * (i % 3)  # numbers of coinciding dots step upwards instead of overprinting
        body += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" fill="{color}">'
                 f'<title>{escape(label)}</title></circle>',
                 _text(sx(x), sy(y) + dy, str(i + 1), "middle", 11, 'font-weight="bold"'),
                 f'<circle cx="{left + 6}" cy="{legend_y + 18 * i - 4}" r="5" fill="{color}"/>',
                 _text(left + 18, legend_y + 18 * i, f"{i + 1}  {label}: {note} ({y:.2f}% mIoU, {x:.2f} ms)")]
    body += [_text(left + plot_w / 2, top + plot_h + 36, xlabel, "middle"),
             _text(18, top + plot_h / 2, ylabel, "middle", extra=f'transform="rotate(-90 18 {top + plot_h / 2})"')]
    return _svg(legend_y + 18 * len(points) + 6, body, title)


def nice_range(lo: float, hi: float, count: int = 6) -> list[float]:
    step = nice_ticks(hi - lo, count)[1] if hi > lo else 1.0
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 6) for i in range(int((hi - start) / step) + 1)]
