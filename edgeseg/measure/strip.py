"""A strip of evaluated frames to look at: one row per frame, image | ground truth | reference overlay |
engine overlay | where the two disagree, and a legend. `edgeseg eval --engine ... --json F` writes it as
F.frames.jpg and names it in F (`samples`); `edgeseg report` and the demo's report show it.

Vectorized only (OpenCV resizes, table lookups, masks): no Python loop over pixels or classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import BadInputError
from edgeseg.measure.evaluate import KeptFrame
from edgeseg.runtime.visualize import colorize, hud, legend, overlay, palette_lut

PANEL_WIDTH = 320  # pixels per column: CamVid's 480x360 frames become 320x240
HEADER = 28
SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_SAMPLES = 4

# Disagreement colours (BGR): where the engine is wrong and the reference right, the other way round,
# and where both are wrong or the pixel has no ground truth. Without a reference: the engine's errors.
WORSE, BETTER, OTHER = (40, 40, 230), (60, 200, 60), (0, 215, 255)
_KEY_WITH_LABELS = (("engine wrong, reference right", WORSE), ("engine right, reference wrong", BETTER),
                    ("both wrong, or unlabelled", OTHER))
_KEY_WITHOUT_LABELS = (("engine and reference differ", OTHER),)
_KEY_ERRORS = (("engine wrong", WORSE),)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Strip:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    columns: list[str]
    rows: list[tuple[int, int]]  # (top, height) of each frame's row in `image`


def strip_path_for(json_path: str | os.PathLike) -> Path:
    """Where `eval --json F.json` puts its strip: F.frames.jpg beside it."""
    path = Path(json_path)
    return path.with_name((path.stem if path.suffix.lower() == ".json" else path.name) + ".frames.jpg")


def check_strip_path(path: str | os.PathLike) -> None:
    if Path(path).suffix.lower() not in SUFFIXES:
        raise BadInputError(f"cannot tell the image format of {path}", "name the strip FILE.jpg or FILE.png")


def render(frames: Sequence[KeptFrame], palette, classes: Sequence[str], ignore_index: int | None,
           engine: str = "engine", reference: str = "reference", panel_width: int = PANEL_WIDTH,
           alpha: float = 0.55) -> Strip:
    """The strip of `frames` (from `evaluate(keep=N)`); columns without data (no labels, no reference) are left out."""
    if not frames:
        raise BadInputError("no frames to show", "evaluate with keep=N (eval --samples N) of at least 1")
    lut = palette_lut(palette)
    labelled = any(f.label is not None for f in frames)
    compared = all(f.theirs is not None for f in frames)
    columns = ["image"] + (["ground truth"] if labelled else []) + ([f"reference: {reference}"] if compared else [])
    columns += [f"engine: {engine}"]
    if compared:
        columns.append("disagreement")
    elif labelled:
        columns.append("errors")
    rows = [_row(f, lut, ignore_index, labelled, compared, panel_width, alpha) for f in frames]
    header = _header(columns, panel_width)
    body = np.vstack([header, *rows])
    key = _KEY_WITH_LABELS if compared and labelled else _KEY_WITHOUT_LABELS if compared else _KEY_ERRORS
    side = _legend_column(classes, lut, key if (compared or labelled) else ())
    height = max(body.shape[0], side.shape[0])
    out = np.full((height, body.shape[1] + side.shape[1], 3), 24, np.uint8)
    out[:body.shape[0], :body.shape[1]] = body
    out[:side.shape[0], body.shape[1]:] = side
    tops = np.cumsum([HEADER] + [r.shape[0] for r in rows[:-1]]).tolist()
    return Strip(out, columns, [(int(t), int(r.shape[0])) for t, r in zip(tops, rows)])


def _row(f: KeptFrame, lut: np.ndarray, ignore_index: int | None, labelled: bool, compared: bool, width: int,
         alpha: float) -> np.ndarray:
    h0, w0 = f.image.shape[:2]
    size = (width, max(1, round(h0 * width / w0)))  # (w, h) for OpenCV
    image = _bgr(f.image)
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if w0 > width else cv2.INTER_LINEAR)
    panels = [image.copy()]
    hud(panels[0], [f"#{f.index} {f.name}"[:36]], 0.42)
    unlabelled = None
    if f.label is not None and ignore_index is not None:
        unlabelled = _nearest(f.label == ignore_index, size)
    if labelled:
        if f.label is None:
            panels.append(_dim(image))
        else:
            panels.append(_overlay(image, _nearest(f.label, size), lut, alpha, unlabelled))
    if compared:
        panels.append(_overlay(image, _nearest(f.theirs, size), lut, alpha))
    panels.append(_overlay(image, _nearest(f.ours, size), lut, alpha))
    if compared or f.label is not None:
        panels.append(_differences(f, image, ignore_index, size))
        if f.disagreement is not None:
            scope = "labelled pixels" if f.label is not None and ignore_index is not None else "pixels"
            hud(panels[-1], [f"differ: {100 * f.disagreement:.2f}% of {scope}"], 0.42)
        else:
            wrong = _error_fraction(f, ignore_index)
            hud(panels[-1], [f"wrong: {100 * wrong:.2f}% of labelled pixels"], 0.42)
    elif labelled:
        panels.append(_dim(image))
    for panel in panels[:-1]:
        panel[:, -1:] = 24  # a dark line between columns
    row = np.hstack(panels)
    row[-1:] = 24  # and between rows
    return row


def _bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


def _nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    labels = np.ascontiguousarray(labels).astype(np.uint8)
    return cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)


def _overlay(image: np.ndarray, labels: np.ndarray, lut: np.ndarray, alpha: float,
             unlabelled: np.ndarray | None = None) -> np.ndarray:
    out = overlay(image, colorize(labels, lut), alpha)
    if unlabelled is not None:  # ground truth: pixels without a class show the plain frame
        np.copyto(out, image, where=unlabelled.astype(bool)[..., None])
    return out


def _dim(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return (gray // 5 * 2).astype(np.uint8)


def _error_fraction(f: KeptFrame, ignore_index: int | None) -> float:
    valid = f.label != ignore_index if ignore_index is not None else np.ones(f.label.shape, bool)
    return float(np.count_nonzero((f.ours != f.label) & valid) / max(np.count_nonzero(valid), 1))


def _differences(f: KeptFrame, image: np.ndarray, ignore_index: int | None, size: tuple[int, int]) -> np.ndarray:
    """The frame dimmed to grey, with the pixels where the engine and the reference differ in colour (by who
    is right where there is ground truth); without a reference, the engine's errors against the ground truth.

    Masks are shrunk with INTER_AREA and kept where any of the pixels was set, so a one-pixel sliver at full
    resolution still shows in the small panel."""
    label = f.label
    valid = None
    if label is not None:
        valid = label != ignore_index if ignore_index is not None else np.ones(label.shape, bool)
    if f.theirs is None:
        masks = [(f.ours != label) & valid]
        colours = [WORSE]
    else:
        differ = f.ours != f.theirs
        if label is None:
            masks, colours = [differ], [OTHER]
        else:
            ours_ok, theirs_ok = f.ours == label, f.theirs == label
            worse = differ & valid & theirs_ok
            better = differ & valid & ours_ok
            masks, colours = [differ & ~worse & ~better, better, worse], [OTHER, BETTER, WORSE]
    out = _dim(image)
    for mask, colour in zip(masks, colours):  # later masks are painted over earlier ones
        shrunk = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 0
        out[shrunk] = colour
    return out


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def _fit(text: str, width: int, scale: float) -> str:
    """`text` cut (with ...) to fit `width` pixels."""
    if _text_width(text, scale) <= width:
        return text
    while len(text) > 1 and _text_width(text + "...", scale) > width:
        text = text[:-1]
    return text + "..."


def _header(columns: Sequence[str], width: int) -> np.ndarray:
    bar = np.full((HEADER, width * len(columns), 3), 24, np.uint8)
    for i, name in enumerate(columns):
        cv2.putText(bar, _fit(name, width - 12, 0.5), (i * width + 6, HEADER - 9), _FONT, 0.5, (240, 240, 240), 1,
                    cv2.LINE_AA)
    return bar


def _legend_column(classes: Sequence[str], lut: np.ndarray, key: Sequence[tuple[str, tuple]]) -> np.ndarray:
    panels = [legend(list(classes), lut)]
    if key:
        colours = np.zeros((256, 3), np.uint8)
        colours[:len(key)] = [c for _, c in key]
        panels.append(legend([name for name, _ in key], colours))
    width = max(p.shape[1] for p in panels)
    out = np.full((HEADER + sum(p.shape[0] + 8 for p in panels), width + 8, 3), 24, np.uint8)
    cv2.putText(out, "legend", (6, HEADER - 9), _FONT, 0.5, (240, 240, 240), 1, cv2.LINE_AA)
    top = HEADER
    for p in panels:
        out[top:top + p.shape[0], 4:4 + p.shape[1]] = p
        top += p.shape[0] + 8
    return out


def encode(image: np.ndarray, path: str | os.PathLike) -> bytes:
    """JPEG (quality 88) or PNG bytes, by the suffix of `path`."""
    check_strip_path(path)
    png = Path(path).suffix.lower() == ".png"
    ok, data = cv2.imencode(".png" if png else ".jpg", image, [] if png else [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise BadInputError(f"OpenCV could not encode {path}", "name the strip FILE.jpg or FILE.png")
    return data.tobytes()


def write(strip: Strip, path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write the strip whole or not at all; an existing file is replaced only with `overwrite`."""
    from edgeseg.io import write_result

    write_result(path, encode(strip.image, path), overwrite)


def section(strip: Strip, frames: Sequence[KeptFrame], path: str | os.PathLike,
            json_path: str | os.PathLike | None = None) -> dict:
    """The eval JSON's `samples`: the strip's file (relative to the JSON's folder), its columns, and
    each frame's index, name and disagreement (fraction of labelled pixels, null without a reference)."""
    where = Path(path)
    if json_path is not None:
        where = Path(os.path.relpath(Path(path).absolute(), Path(json_path).absolute().parent))
    return {"strip": where.as_posix(), "columns": list(strip.columns),
            "frames": [{"index": f.index, "name": f.name, "disagreement": f.disagreement} for f in frames]}
