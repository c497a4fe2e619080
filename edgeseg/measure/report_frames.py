"""The segmentation part of a report: for each engine's eval, the strip of frames (image | ground truth |
reference | engine | disagreement, from `edgeseg eval --engine ... --json`) and its per-class IoU against
the reference with the drop, the classes the engine hurts most marked. The HTML embeds the strip (a data
URI: the page stays one self-contained file); the Markdown links it relative to the Markdown file."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Iterable

HURT_POINTS = 1.0  # a class that loses more IoU points than this is marked
_HURT = "background:#fbd3cc;font-weight:bold"


@dataclass
class Section:
    label: str  # the engine (row label of the report)
    data: dict  # the eval JSON
    strip: Path | None  # the strip's file, where the eval names one

    @property
    def compared(self) -> bool:
        return isinstance(self.data.get("reference"), dict)


def sections(evals: Iterable[tuple[str, dict]]) -> list[Section]:
    """One section per eval (once, if several rows share it) that has a reference or a strip to show."""
    out, seen = [], set()
    for label, data in evals:
        if data is None or id(data) in seen or not ("reference" in data or "samples" in data):
            continue
        seen.add(id(data))
        out.append(Section(label, data, strip_file(data)))
    return out


def strip_file(data: dict) -> Path | None:
    """The strip named in an eval: relative to the eval JSON's folder (`EvalFile.path`), else to here."""
    samples = data.get("samples")
    if not isinstance(samples, dict) or not samples.get("strip"):
        return None
    path = Path(samples["strip"])
    source = getattr(data, "path", None)
    return path if path.is_absolute() or source is None else Path(source).parent / path


def class_rows(data: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """(class, reference IoU %, engine IoU %, drop in points) in class order; None where there is none."""
    ref = (data.get("reference") or {}).get("per_class_iou", {})
    drops = data.get("per_class_iou_drop_points") or {}
    pct = lambda v: None if v is None else 100.0 * v  # noqa: E731
    return [(name, pct(ref.get(name)), pct(value), drops.get(name)) for name, value in data.get("per_class_iou", {}).items()]


def hurt(data: dict, points: float = HURT_POINTS) -> list[tuple[str, float]]:
    """The classes that lose more than `points` IoU points, the worst first."""
    rows = [(name, drop) for name, _, _, drop in class_rows(data) if drop is not None and drop > points]
    return sorted(rows, key=lambda r: -r[1])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value + 0.0:.2f}"  # + 0.0: no "-0.00"


def _frames_note(data: dict) -> str:
    frames = (data.get("samples") or {}).get("frames") or []
    parts = [f"{f.get('name', f.get('index'))}: {100 * f['disagreement']:.2f}%" for f in frames
             if f.get("disagreement") is not None]
    return ("Where engine and reference differ, per frame (a share of the labelled pixels, as pixel agreement "
            "counts them): " + ", ".join(parts) + ".") if parts else ""


def _hurt_note(data: dict, md: bool = False) -> str:
    worst = hurt(data)
    if not worst:
        return f"No class loses more than {HURT_POINTS:g} IoU point against the reference."
    fmt = "**{}** ({:.2f})" if md else "{} ({:.2f})"
    return (f"Classes that lose more than {HURT_POINTS:g} IoU point against the reference (points): "
            + ", ".join(fmt.format(n, d) for n, d in worst) + ".")


def html_sections(items: list[Section]) -> str:
    return "\n".join(_html(s) for s in items)


def _html(s: Section) -> str:
    parts = [f"<h2>Segmentation: {escape(s.label)}</h2>"]
    if s.strip is not None:
        parts.append(_html_strip(s))
    parts.append(_html_table(s))
    return "\n".join(parts)


def _html_strip(s: Section) -> str:
    columns = " | ".join((s.data.get("samples") or {}).get("columns") or [])
    try:
        data = s.strip.read_bytes()
    except OSError as exc:
        return (f"<p class=\"note\">The strip of frames {escape(str(s.strip))} named in the eval could not be read "
                f"({escape(exc.strerror or str(exc))}); run <code>edgeseg eval ... --json</code> again.</p>")
    mime = _image_type(data)
    if mime is None:  # a crafted or damaged eval must not put some other file into a page that is mailed around
        return (f"<p class=\"note\">{escape(str(s.strip))}, named in the eval as its strip of frames, is not a "
                f"JPEG or PNG image; it is left out.</p>")
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    note = ("<p class=\"note\">Frames spread over the evaluated split; columns: " + escape(columns) + ". "
            "Disagreement: red where the engine is wrong and the reference right, green the other way round, "
            "yellow where both are wrong or the pixel has no ground truth. " + escape(_frames_note(s.data)) + "</p>")
    return (f"<img src=\"{uri}\" alt=\"{escape(columns or 'evaluated frames')}\" "
            f"style=\"max-width:100%;height:auto;display:block\">{note}")


def _image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return "image/jpeg" if data.startswith(b"\xff\xd8\xff") else None


def _html_table(s: Section) -> str:
    rows = class_rows(s.data)
    if s.compared:
        head = ["class", "reference IoU %", "engine IoU %", "drop (points)"]
        body = []
        for name, ref, ours, drop in rows:
            style = f" style=\"{_HURT}\"" if drop is not None and drop > HURT_POINTS else ""
            cells = [f"<td>{escape(name)}</td>"] + [f"<td class=\"n\">{_f(v)}</td>" for v in (ref, ours, drop)]
            body.append(f"<tr{style}>{''.join(cells)}</tr>")
        ref = s.data["reference"]
        drop = s.data.get("miou_drop_points")
        body.append(f"<tr><th>mIoU</th><th class=\"n\">{_f(100 * ref['miou'])}</th><th class=\"n\">"
                    f"{_f(100 * s.data['miou'])}</th><th class=\"n\">{_f(drop)}</th></tr>")
        agreement = s.data.get("pixel_agreement")
        note = escape(_hurt_note(s.data)) + ("" if agreement is None else
                                             f" Pixel agreement with the reference: {100 * agreement:.2f}%.")
    else:
        head = ["class", "IoU %"]
        body = [f"<tr><td>{escape(n)}</td><td class=\"n\">{_f(v)}</td></tr>" for n, _, v, _ in rows]
        body.append(f"<tr><th>mIoU</th><th class=\"n\">{_f(100 * s.data['miou'])}</th></tr>")
        note = "No reference in this eval: run <code>edgeseg eval --engine ... --reference ...</code> for the drops."
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(body)}</table><p class=\"note\">{note}</p>"


def markdown_sections(items: list[Section], base: str | os.PathLike | None = None) -> str:
    """Markdown with the strips linked relative to `base` (the Markdown file's folder; None: here)."""
    return "".join(_markdown(s, base) for s in items)


def _markdown(s: Section, base: str | os.PathLike | None) -> str:
    lines = ["", f"### Segmentation: {s.label}", ""]
    if s.strip is not None:
        link = Path(os.path.relpath(s.strip.absolute(), Path(base or ".").absolute())).as_posix()
        columns = " | ".join((s.data.get("samples") or {}).get("columns") or []) or "evaluated frames"
        lines += [f"![{columns}]({link.replace(' ', '%20').replace(')', '%29')})", ""]
        if not s.strip.exists():
            lines += [f"(the strip {s.strip} named in the eval is missing)", ""]
        note = _frames_note(s.data)
        if note:
            lines += [note, ""]
    if s.compared:
        lines += ["| class | reference IoU % | engine IoU % | drop (points) |", "| --- | ---: | ---: | ---: |"]
        for name, ref, ours, drop in class_rows(s.data):
            bold = (lambda t: f"**{t}**") if drop is not None and drop > HURT_POINTS else (lambda t: t)
            lines.append(f"| {bold(_cell(name))} | {_f(ref)} | {_f(ours)} | {bold(_f(drop))} |")
        lines.append(f"| mIoU | {_f(100 * s.data['reference']['miou'])} | {_f(100 * s.data['miou'])} | "
                     f"{_f(s.data.get('miou_drop_points'))} |")
        lines += ["", _hurt_note(s.data, md=True)]
    else:
        lines += ["| class | IoU % |", "| --- | ---: |"]
        lines += [f"| {_cell(name)} | {_f(v)} |" for name, _, v, _ in class_rows(s.data)]
        lines.append(f"| mIoU | {_f(100 * s.data['miou'])} |")
    return "\n".join(lines) + "\n"
