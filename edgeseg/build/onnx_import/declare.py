"""What a foreign graph cannot say about itself, gathered from the places it can be said: build flags,
a sidecar file (`--meta FILE`, YAML or JSON, the flags' own names), the file's `metadata_props`
(as edgeseg and Ultralytics write them), mmdeploy's `pipeline.json` beside the file, and a preset for
the common sources. In that order: the first place that says a field wins, and each field remembers
where it came from (the manifest records both). A field nobody says is a refusal naming its flag,
never a guess: a wrong mean or colour order shifts every pixel and still "works".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeseg.errors import BadInputError, UnknownNameError

from edgeseg.build.presets import IMAGENET, PRESETS  # noqa: F401 - IMAGENET re-exported

CHANNEL_ORDERS = ("rgb", "bgr")
VALUE_RANGES = (1, 255)


@dataclass(frozen=True)
class Declared:
    """The user's answers (flags, or a sidecar file): None where not said."""

    meta: str | None = None  # sidecar file, YAML or JSON, with the fields below
    preset: str | None = None
    channel_order: str | None = None  # of the image the graph expects
    value_range: int | None = None  # 1: pixels in 0-1; 255: pixels in 0-255 (mean/std in the same units)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size_divisor: int | None = None  # pad the frame (bottom, right) to multiples of this, crop the output back
    classes: Any = None  # a list of names, "a,b,c", a dataset name (camvid, cityscapes, voc) or a file
    palette: Any = None  # a list of [r, g, b], a dataset name or a JSON file
    ignore_index: int | None = None
    input_size: tuple[int, int] | None = None
    output: str | None = None  # which output carries the segmentation
    input_layout: str | None = None  # NCHW or NHWC, where the graph cannot tell
    output_layout: str | None = None  # where the probe cannot tell the class axis

    def said(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("meta", "preset") and getattr(self, f.name) is not None}


FIELDS = tuple(f.name for f in fields(Declared) if f.name not in ("meta",))


@dataclass
class Resolved:
    """Every field with its value and the place that said it ("--mean" (a flag), "sidecar FILE", "metadata_props",
    "mmdeploy pipeline.json", "preset NAME", "default")."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def offer(self, name: str, value: Any, source: str) -> None:
        if value is not None and name not in self.values:
            self.values[name] = value
            self.sources[name] = source

    def record(self) -> dict[str, Any]:
        return {name: {"value": _plain(self.values[name]), "from": self.sources[name]} for name in sorted(self.values)}

    def filled_by(self, source: str) -> list[str]:
        return sorted(name for name, said in self.sources.items() if said == source)


def _plain(value: Any) -> Any:
    return list(_plain(v) for v in value) if isinstance(value, tuple) else value


def gather(declared: Declared, onnx_path: Path, metadata: dict[str, str]) -> Resolved:
    """The fields from every place that can say them, first place first."""
    resolved = Resolved()
    for name, value in declared.said().items():
        resolved.offer(name, value, "--" + name.replace("_", "-"))
    sidecar = read_sidecar(Path(declared.meta)) if declared.meta else {}
    sidecar_preset = sidecar.pop("preset", None)
    preset = declared.preset or sidecar_preset
    for name, value in sidecar.items():
        resolved.offer(name, value, f"sidecar {declared.meta}")
    for name, value in from_metadata_props(metadata).items():
        resolved.offer(name, value, "metadata_props")
    for name, value in from_mmdeploy(onnx_path.parent).items():
        resolved.offer(name, value, "mmdeploy pipeline.json")
    for name, (value, source) in from_huggingface(onnx_path.parent).items():
        resolved.offer(name, value, source)
    if preset:
        if preset not in PRESETS:
            raise UnknownNameError("preset", preset, PRESETS)
        for name, value in PRESETS[preset].items():
            resolved.offer(name, value, f"preset {preset}")
    return resolved


def read_sidecar(path: Path) -> dict[str, Any]:
    """`--meta FILE`: the build flags' fields (mean, std, channel_order, ...) in YAML or JSON."""
    if not path.is_file():
        raise BadInputError(f"--meta {path} is not a file", "pass a YAML or JSON file with the fields to declare")
    text = path.read_text(errors="replace")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise BadInputError(f"--meta {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})",
                            "fix the file's syntax") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"--meta {path} holds a {type(data).__name__}, not a mapping of fields",
                            f"write fields such as 'mean: [0.485, 0.456, 0.406]'; valid fields: {', '.join(FIELDS)}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadInputError(f"--meta {path} has unknown fields: {', '.join(map(str, unknown))}",
                            f"valid fields: {', '.join(FIELDS)}")
    return {name: _normalized(name, value, f"--meta {path}") for name, value in data.items()}


def _normalized(name: str, value: Any, where: str) -> Any:
    """A sidecar's or metadata's value in the type the flag gives."""
    if value is None:
        return None
    if name in ("mean", "std"):
        return float_triple(value, f"{where} {name}")
    if name == "input_size":
        return size_pair(value, f"{where} input_size")
    if name in ("value_range", "size_divisor", "ignore_index"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise BadInputError(f"{where} {name} is {value!r}, not a whole number", f"write {name}: a number") from None
    if name in ("channel_order", "input_layout", "output_layout"):
        return str(value).lower() if name == "channel_order" else str(value).upper()
    return value


def float_triple(value: Any, where: str) -> tuple[float, float, float]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        triple = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3:
        raise BadInputError(f"{where} is {value!r}; it takes three numbers, one per colour channel (R, G, B)",
                            "e.g. 0.485,0.456,0.406")
    return triple  # type: ignore[return-value]


def size_pair(value: Any, where: str) -> tuple[int, int]:
    items = value.lower().split("x") if isinstance(value, str) else value
    try:
        pair = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise BadInputError(f"{where} is {value!r}; it takes a height and a width", "e.g. 360x480 or [360, 480]")
    return pair  # type: ignore[return-value]


# metadata_props keys edgeseg reads: its own (written by `edgeseg export`) and Ultralytics' (names, imgsz, stride)
_METADATA_KEYS = {"classes": "classes", "names": "classes", "labels": "classes", "mean": "mean", "std": "std",
                  "channel_order": "channel_order", "value_range": "value_range", "palette": "palette",
                  "ignore_index": "ignore_index", "size_divisor": "size_divisor", "stride": "size_divisor",
                  "input_size": "input_size", "imgsz": "input_size"}


def from_metadata_props(metadata: dict[str, str]) -> dict[str, Any]:
    from edgeseg.build.onnx_import.graph import metadata_json

    found: dict[str, Any] = {}
    for key, value in metadata.items():
        name = _METADATA_KEYS.get(key.lower().removeprefix("edgeseg."))
        if name is None or name in found:
            continue
        parsed = metadata_json(value)
        if name == "classes" and isinstance(parsed, dict):  # Ultralytics: {0: 'person', 1: ...}
            parsed = [parsed[k] for k in sorted(parsed, key=int)]
        if name == "input_size" and isinstance(parsed, int):
            parsed = (parsed, parsed)
        if name == "size_divisor" and isinstance(parsed, list):  # stride given per level: the largest counts
            parsed = max(parsed)
        found[name] = _normalized(name, parsed, f"metadata_props {key}")
    return found


def from_mmdeploy(folder: Path) -> dict[str, Any]:
    """mmdeploy's SDK files beside the ONNX: Normalize (mean, std, to_rgb), Resize size, Pad size_divisor."""
    pipeline = folder / "pipeline.json"
    if not pipeline.is_file():
        return {}
    try:
        data = json.loads(pipeline.read_text())
        tasks = data["pipeline"]["tasks"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{pipeline} is not an mmdeploy pipeline ({exc})",
                            "remove it from beside the ONNX, or export again with mmdeploy") from exc
    found: dict[str, Any] = {}
    transforms = [t for task in tasks if isinstance(task, dict) for t in task.get("transforms", []) or []]
    for t in transforms:
        kind = t.get("type")
        if kind == "Normalize":
            found["mean"] = float_triple(t["mean"], f"{pipeline} Normalize mean")
            found["std"] = float_triple(t["std"], f"{pipeline} Normalize std")
            found["channel_order"] = "rgb" if t.get("to_rgb", False) else "bgr"  # mmcv reads BGR
            found["value_range"] = 255  # mmcv normalizes the 0-255 image
        elif kind == "Pad" and t.get("size_divisor"):
            found["size_divisor"] = int(t["size_divisor"])
    return found


def from_huggingface(folder: Path) -> dict[str, tuple[Any, str]]:
    """What optimum's export leaves beside the ONNX: config.json's id2label (class names) and
    preprocessor_config.json's image_mean/image_std and rescaling (RGB, as the image processors take)."""
    found: dict[str, tuple[Any, str]] = {}
    config = _json_beside(folder / "config.json")
    labels = config.get("id2label") if isinstance(config, dict) else None
    if isinstance(labels, dict) and labels:
        try:
            found["classes"] = ([labels[k] for k in sorted(labels, key=int)], "config.json id2label")
        except ValueError:
            pass
    pre = _json_beside(folder / "preprocessor_config.json")
    if isinstance(pre, dict) and "image_mean" in pre and "image_std" in pre:
        where = "preprocessor_config.json"
        rescaled = pre.get("do_rescale", True) and abs(float(pre.get("rescale_factor", 1 / 255)) - 1 / 255) < 1e-9
        found["mean"] = (float_triple(pre["image_mean"], f"{where} image_mean"), where)
        found["std"] = (float_triple(pre["image_std"], f"{where} image_std"), where)
        found["value_range"] = (1 if rescaled else 255, where)
        found["channel_order"] = ("rgb", where)
    return found


def _json_beside(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
