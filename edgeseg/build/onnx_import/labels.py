"""A foreign graph's class names, palette and ignore index: from a dataset edgeseg knows
(`--classes cityscapes`), a list, or a file; checked against the number of classes the graph outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import BadInputError


@dataclass(frozen=True)
class Labels:
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int
    source: str  # a dataset name, or where the names came from


def known_datasets() -> dict[str, Any]:
    from edgeseg.data.camvid import CAMVID_INFO
    from edgeseg.data.cityscapes import CITYSCAPES_INFO
    from edgeseg.data.voc import VOC_INFO

    return {info.name: info for info in (CAMVID_INFO, CITYSCAPES_INFO, VOC_INFO)}


def resolve_labels(resolved, num_classes: int | None, path: Path) -> Labels:
    """`resolved` is a declare.Resolved; `num_classes` what the graph outputs (None for a label map)."""
    given = resolved.get("classes")
    if given is None:
        count = f"its {num_classes} classes" if num_classes else "its classes"
        raise BadInputError(f"{path} does not name {count}",
                            "pass --classes camvid|cityscapes|voc, --classes a,b,c, or --classes FILE (one name per "
                            "line, or a JSON list)")
    where = resolved.sources["classes"]
    dataset = known_datasets().get(given) if isinstance(given, str) else None
    classes = tuple(dataset.classes) if dataset else _names(given, where)
    if num_classes is not None and len(classes) != num_classes:
        raise BadInputError(f"{path} outputs {num_classes} classes but {where} names {len(classes)}",
                            "pass the class names of the network's own training set (--classes)")
    if len(set(classes)) != len(classes):
        raise BadInputError(f"the class names from {where} repeat a name", "give each class its own name")
    palette = _palette(resolved, dataset, len(classes))
    ignore = resolved.get("ignore_index")
    if ignore is None:
        ignore = dataset.ignore_index if dataset else 255
        resolved.offer("ignore_index", ignore, f"dataset {dataset.name}" if dataset else "default")
    return Labels(classes, palette, int(ignore), dataset.name if dataset else f"onnx:{path.stem}")


def _names(given: Any, where: str) -> tuple[str, ...]:
    if isinstance(given, (list, tuple)):
        names = [str(n) for n in given]
    elif isinstance(given, str) and Path(given).is_file():
        text = Path(given).read_text(errors="replace")
        if Path(given).suffix.lower() == ".json":
            data = json.loads(text)
            data = data.get("classes", data) if isinstance(data, dict) else data
            names = [str(n) for n in data] if isinstance(data, list) else []
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    elif isinstance(given, str) and "," in given:
        names = [n.strip() for n in given.split(",")]
    else:
        known = ", ".join(known_datasets())
        raise BadInputError(f"classes '{given}' ({where}) is neither a dataset edgeseg knows ({known}), a comma-"
                            "separated list, nor a file", "pass --classes with one of those")
    if not names or any(not n for n in names):
        raise BadInputError(f"the class names from {where} are empty or have a blank name", "name every class")
    return tuple(names)


def _palette(resolved, dataset, count: int) -> tuple[tuple[int, int, int], ...]:
    given = resolved.get("palette")
    if given is None:
        if dataset:
            resolved.offer("palette", "dataset", f"dataset {dataset.name}")
            return tuple(dataset.palette)
        resolved.offer("palette", "generated", "default")
        return tuple(((37 * i + 61) % 256, (91 * i + 127) % 256, (173 * i + 29) % 256) for i in range(count))
    named = known_datasets().get(given) if isinstance(given, str) else None
    if named:
        colours = named.palette
    elif isinstance(given, str) and Path(given).is_file():
        colours = json.loads(Path(given).read_text())
    else:
        colours = given
    try:
        palette = tuple(tuple(int(v) for v in c) for c in colours)
    except (TypeError, ValueError):
        palette = ()
    if len(palette) != count or any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in palette):
        raise BadInputError(f"the palette from {resolved.sources['palette']} is not {count} RGB colours (0-255)",
                            "pass a JSON list of [r, g, b], one per class, or a dataset name")
    return palette
