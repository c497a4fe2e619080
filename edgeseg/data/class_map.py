"""Scoring a network on a dataset whose classes are not its own: a class map (model class -> dataset class).

A Cityscapes-19 or VOC-21 network scored on CamVid-11 predicts classes the labels do not have. A class-map
file (JSON) says which model class counts as which dataset class:

    {"description": "...", "map": {"road": "road", "truck": "car", "rider": "bicyclist"}, "ignore": ["terrain"]}

Keys are the model's classes, values the dataset's, by name (case, `_` and `-` do not matter) or by index;
a model class that is not mapped (listed under "ignore", mapped to null, or left out) has no dataset class.
Resolved against one model's and one dataset's classes (`ClassMap`), it is a lookup table applied to
whole label maps with one fancy index: no Python loop over pixels. Scoring rules (`score_predictions`,
`score_labels`): a pixel predicted as an unmapped class is a miss for its ground-truth class, so a map
can never raise a score by leaving classes out; a dataset class no model class maps to cannot be
predicted, so its ground truth is not scored and its IoU is reported as null (VOC's network has no road).

Numpy only: the engine evaluation and the INT8 budget use it, and neither imports torch.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.errors import BadInputError

SHIPPED_DIR = Path(__file__).with_name("class_maps")
DOC = "docs/int8.md, 'Another dataset's classes'"
_KEYS = ("map", "ignore", "description")
_EXAMPLE = '{"map": {"road": "road", "truck": "car"}, "ignore": ["terrain"]}'

Key = str | int  # a class as a map names it: its name, or its index


def shipped_maps() -> dict[str, Path]:
    """The maps shipped with edgeseg, by name (`cityscapes-to-camvid`): what `--class-map NAME` finds."""
    return {path.stem: path for path in sorted(SHIPPED_DIR.glob("*.json"))}


def mismatch_fix() -> str:
    """The fix for a model whose classes are not the dataset's, naming the shipped maps and the doc."""
    return (f"evaluate on the dataset the model was trained for, or pass --class-map FILE (model class -> "
            f"dataset class, JSON) or a shipped map ({', '.join(shipped_maps())}); see {DOC}")


@dataclass(frozen=True)
class ClassMapFile:
    """A class map as written, before it meets any model or dataset."""

    source: str  # the shipped name or the path, as given
    sha256: str  # of the file's bytes: the record says exactly which map scored
    pairs: tuple[tuple[Key, Key | None], ...]  # model class -> dataset class, None: no dataset class
    description: str = ""
    shipped: bool = False

    def bind(self, model_classes: Sequence[str], dataset_classes: Sequence[str], ignore_index: int) -> "ClassMap":
        """This map between `model_classes` and `dataset_classes` (names checked; unknown ones refused)."""
        model, dataset = tuple(model_classes), tuple(dataset_classes)
        small = 0 <= ignore_index <= 255 and len(dataset) <= 256  # uint8: what label PNGs hold
        lut = np.full(len(model), ignore_index, dtype=np.uint8 if small else np.int64)
        seen: dict[int, Key] = {}
        for key, value in self.pairs:
            index = _find(key, model, self.source, "the model")
            if index in seen:
                raise BadInputError(f"class map {self.source} lists the model's class '{model[index]}' twice "
                                    f"(as {seen[index]!r} and {key!r})", "list each model class once")
            seen[index] = key
            if value is not None:
                lut[index] = _find(value, dataset, self.source, "the dataset")
        if not (lut != ignore_index).any():
            raise BadInputError(f"class map {self.source} maps none of the model's classes to a dataset class: "
                                "nothing could be scored", f"map at least one class, e.g. {_EXAMPLE}")
        lut.setflags(write=False)
        return ClassMap(self.source, self.sha256, model, dataset, ignore_index, lut, self.shipped)


@dataclass(frozen=True)
class ClassMap:
    """A class map resolved against one model's classes and one dataset's: the table eval and the budget apply."""

    source: str
    sha256: str
    model_classes: tuple[str, ...]
    dataset_classes: tuple[str, ...]
    ignore_index: int  # the dataset's: where a model class has no dataset class
    lut: np.ndarray = field(compare=False, repr=False)  # (num model classes,): dataset id or ignore_index
    shipped: bool = False

    @property
    def unscored(self) -> tuple[int, ...]:
        """Dataset classes no model class maps to: never predicted, so their ground truth is not scored."""
        reached = set(self.lut.tolist())
        return tuple(i for i in range(len(self.dataset_classes)) if i not in reached)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Model class ids (any shape) -> dataset class ids, the dataset's ignore index where none: what is
        saved and drawn."""
        return _lookup(self.lut, labels, self.model_classes)

    def score_predictions(self, labels: np.ndarray) -> np.ndarray:
        """Model class ids -> dataset class ids for a confusion matrix with a "none" column: an unmapped
        class becomes len(dataset_classes), a miss wherever the ground truth has a class."""
        table = np.where(self.lut == self.ignore_index, len(self.dataset_classes), self.lut)
        return _lookup(table, labels, self.model_classes)

    def score_labels(self, labels: np.ndarray) -> np.ndarray:
        """Ground truth with the classes the model cannot predict (`unscored`) set to the ignore index."""
        unscored = self.unscored
        if not unscored:
            return labels
        return np.where(np.isin(labels, unscored), np.asarray(self.ignore_index, labels.dtype), labels)

    def table(self) -> dict[str, str | None]:
        """Model class name -> dataset class name (None: no dataset class), in the model's order."""
        return {name: (None if int(t) == self.ignore_index else self.dataset_classes[int(t)])
                for name, t in zip(self.model_classes, self.lut)}

    def to_dict(self) -> dict[str, Any]:
        """The record in eval JSON and the budget report: which map, its hash, and what it did."""
        return {"source": self.source, "shipped": self.shipped, "sha256": self.sha256, "table": self.table(),
                "unscored": [self.dataset_classes[i] for i in self.unscored]}

    def summary(self) -> str:
        mapped = sum(v is not None for v in self.table().values())
        text = (f"class map {self.source} (sha256 {self.sha256[:12]}): {mapped} of {len(self.model_classes)} model "
                f"classes onto {len(self.dataset_classes)} dataset classes")
        unscored = [self.dataset_classes[i] for i in self.unscored]
        return text + (f"; not scored (no model class maps to them): {', '.join(unscored)}" if unscored else "")


def _lookup(table: np.ndarray, labels: np.ndarray, model_classes: Sequence[str]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.size and (int(labels.max()) >= len(table) or int(labels.min()) < 0):
        raise BadInputError(f"prediction holds class {int(labels.max())} but the class map's model has "
                            f"{len(model_classes)} classes", "pass the class map made for this model's classes")
    return table[labels]


def read_class_map(name_or_path: str | Path) -> ClassMapFile:
    """A class map from a JSON file, or a shipped one by name (`cityscapes-to-camvid`)."""
    path, shipped = _locate(str(name_or_path))
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadInputError(f"class map {name_or_path} is not readable JSON ({exc})",
                            f"write a JSON object such as {_EXAMPLE}") from None
    import hashlib

    return parse_class_map(data, str(name_or_path), hashlib.sha256(raw).hexdigest(), shipped)


def _locate(spec: str) -> tuple[Path, bool]:
    from edgeseg.inputs import path_kind, require_file

    fix = f"pass a JSON file, or one of the shipped maps: {', '.join(shipped_maps())}"
    if path_kind(spec) != "missing":
        return require_file(spec, "class-map file", fix), False
    if spec in shipped_maps():
        return shipped_maps()[spec], True
    if "/" in spec or "\\" in spec or spec.lower().endswith(".json"):
        raise BadInputError(f"class-map file {spec} does not exist", fix)
    close = difflib.get_close_matches(spec, list(shipped_maps()), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise BadInputError(f"'{spec}' is neither a class-map file nor a shipped class map", hint + fix)


def parse_class_map(data: Any, source: str, sha256: str = "", shipped: bool = False) -> ClassMapFile:
    """Check a parsed class map's layout (not yet its names: `bind` does that against real classes)."""
    fix = f"write a JSON object such as {_EXAMPLE}"
    if not isinstance(data, dict) or not isinstance(data.get("map"), dict):
        raise BadInputError(f"class map {source} has no \"map\" object (model class -> dataset class)", fix)
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise BadInputError(f"class map {source} has the unknown key '{unknown[0]}'", f"use only {', '.join(_KEYS)}")
    ignore = data.get("ignore", [])
    if not isinstance(ignore, list) or not all(_is_key(k) for k in ignore):
        raise BadInputError(f"class map {source}: \"ignore\" must be a list of model class names or indices", fix)
    for key, value in data["map"].items():
        if value is not None and not _is_key(value):
            raise BadInputError(f"class map {source}: '{key}' maps to {value!r}, not a class name, index or null", fix)
    description = data.get("description", "")
    pairs = tuple(data["map"].items()) + tuple((k, None) for k in ignore)
    return ClassMapFile(source, sha256, pairs, description if isinstance(description, str) else "", shipped)


def _is_key(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _norm(name: str) -> str:
    return " ".join(name.casefold().replace("_", " ").replace("-", " ").split())


def _find(key: Key, classes: tuple[str, ...], source: str, whose: str) -> int:
    """The index of `key` (a name, loosely matched, or an index) among `classes`, or a refusal listing them."""
    if isinstance(key, int):
        if 0 <= key < len(classes):
            return key
        raise BadInputError(f"class map {source}: class index {key} is out of range: {whose} has {len(classes)} "
                            f"classes (0-{len(classes) - 1})", f"{whose}'s classes: {_listing(classes)}")
    if key in classes:
        return classes.index(key)
    loose = [i for i, name in enumerate(classes) if _norm(name) == _norm(key)]
    if len(loose) == 1:
        return loose[0]
    if key.strip().isdigit():
        return _find(int(key), classes, source, whose)
    by_norm = {_norm(name): name for name in classes}
    close = difflib.get_close_matches(_norm(key), list(by_norm), n=1)
    hint = f"did you mean '{by_norm[close[0]]}'? " if close else ""
    raise BadInputError(f"class map {source}: '{key}' is not a class of {whose}",
                        f"{hint}{whose}'s classes: {_listing(classes)}")


def _listing(classes: Sequence[str], most: int = 40) -> str:
    shown = ", ".join(f"{i} {name}" for i, name in enumerate(classes[:most]))
    return shown + (f", ... ({len(classes)} in all)" if len(classes) > most else "")


def resolve_class_map(name_or_path: str | Path, model_classes: Sequence[str], dataset_classes: Sequence[str],
                      ignore_index: int) -> ClassMap:
    """Read a class map (file or shipped name) and resolve it against the model's and the dataset's classes."""
    return read_class_map(name_or_path).bind(model_classes, dataset_classes, ignore_index)


def require_same_classes(model_classes: Sequence[str], dataset_classes: Sequence[str], dataset: str) -> None:
    """Refuse to score a model on a dataset whose classes differ (count, names or order) without a class map.

    Names match loosely (case, `_`, `-`), so a folder dataset's "Road" is the model's "road"."""
    model, data = list(model_classes), list(dataset_classes)
    if len(model) != len(data):
        raise BadInputError(f"the model predicts {len(model)} classes but {dataset} has {len(data)} (model: "
                            f"{_brief(model)}; {dataset}: {_brief(data)})", mismatch_fix())
    differ = [i for i, (a, b) in enumerate(zip(model, data)) if _norm(a) != _norm(b)]
    if not differ:
        return
    i = differ[0]
    order = " (the same classes in another order)" if sorted(map(_norm, model)) == sorted(map(_norm, data)) else ""
    raise BadInputError(f"the model's classes are not {dataset}'s{order}: class {i} is '{model[i]}' in the model, "
                        f"'{data[i]}' in {dataset} ({len(differ)} of {len(model)} differ; model: {_brief(model)}; "
                        f"{dataset}: {_brief(data)})", mismatch_fix())


def _brief(classes: Sequence[str], most: int = 6) -> str:
    return ", ".join(classes[:most]) + (f", ... {len(classes) - most} more" if len(classes) > most else "")
