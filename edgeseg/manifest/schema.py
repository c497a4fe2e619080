"""A manifest's fields against their schema: every type, choice and cross-field rule the sessions rely on,
each failure naming the field, so a hand-edited or foreign manifest fails clearly instead of being misread.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, NoReturn

from edgeseg.errors import EdgesegError
from edgeseg.io import MANIFEST_NAME

SCHEMA_VERSION = 1


CACHE_DIR = ".cache"  # OpenVINO's compiled-model cache: the one entry an engine directory may hold unlisted


OUTPUT_KINDS = ("labels", "logits", "lowres-logits", "instances")  # "lowres-logits" is edgeseg.runtime.tail.KIND


INSTANCE_OUTPUTS = ("boxes", "labels", "scores", "masks")  # an instance graph's outputs, in this order


INPUT_FORMS = {"fused": ("uint8", "NHWC"), "host": ("float32", "NCHW")}  # preprocess -> (dtype, layout)


LABEL_DTYPES = ("uint8", "int32", "int64")


LOGIT_DTYPES = ("float32", "float16")


PRECISIONS = ("fp32", "fp16", "int8")


REBUILD = "rebuild the engine with `edgeseg build ... --force`"


class ManifestError(EdgesegError):
    """A manifest or an engine file that cannot be trusted: missing, unreadable, changed since build."""



class _Fields:
    """Type checks that name the field and the manifest, so a hand-edited or foreign manifest fails
    with "'output.kind' is 'probs'" instead of a KeyError traceback or, worse, a wrong answer."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str = REBUILD) -> NoReturn:
        raise ManifestError(f"{self.path}: '{where}' {problem}", fix)

    def get(self, obj: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str,
            required: bool = True) -> Any:
        if key not in obj:
            if required:
                self.fail(f"{where}{key}", "is missing")
            return None
        value = obj[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            self.fail(f"{where}{key}", f"is {type(value).__name__} {value!r:.60}; expected {expected}")
        return value

    def choice(self, value: Any, choices: tuple[str, ...], where: str) -> None:
        if value not in choices:
            self.fail(where, f"is {value!r:.60}; expected one of {', '.join(choices)}")

    def known_keys(self, obj: dict[str, Any], known: set[str], where: str) -> None:
        unknown = sorted(set(obj) - known)
        if unknown:
            self.fail(f"{where}{unknown[0]}", f"is not a field of this schema (schema_version {SCHEMA_VERSION})",
                      f"{REBUILD}, or use the edgeseg version that wrote it")

    def shape(self, value: Any, ndim: int, where: str) -> None:
        if not isinstance(value, list) or len(value) != ndim or not all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in value):
            self.fail(where, f"is {value!r:.60}; expected {ndim} dimensions, each a positive int or null (dynamic)")

    def numbers(self, value: Any, count: int, where: str, positive: bool = False) -> None:
        ok = isinstance(value, list) and len(value) == count and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
            for v in value)
        if not ok:
            self.fail(where, f"is {value!r:.60}; expected {count} finite {'positive ' if positive else ''}numbers")


_TOP = {"name": str, "model": dict, "classes": list, "palette": list, "ignore_index": int, "input": dict,
        "output": dict, "precision": dict, "backend": dict, "onnx": dict, "hardware": dict, "files": dict,
        "build_seconds": (int, float), "created": str, "command": str, "edgeseg_version": str,
        "schema_version": int}


_TOP_OPTIONAL = {"random_weights": bool, "extra": dict}


_INPUT = {"name", "shape", "dtype", "layout", "color", "preprocess", "mean", "std", "resize"}


_OUTPUT = {"name", "kind", "dtype", "shape"}


_SHA256 = re.compile(r"[0-9a-f]{64}")


def validate(data: Any, path: Path) -> None:
    """Refuse a manifest whose fields the runtime would misread: every type, choice and cross-field
    rule the sessions rely on, each failure naming the field."""
    check = _Fields(path)
    if not isinstance(data, dict):
        check.fail("(top level)", f"is {type(data).__name__}; expected a JSON object")
    for key, kinds in _TOP.items():
        check.get(data, key, kinds, "")
    for key, kinds in _TOP_OPTIONAL.items():
        check.get(data, key, kinds, "", required=False)
    check.known_keys(data, set(_TOP) | set(_TOP_OPTIONAL), "")
    _validate_files(check, data["files"])
    _validate_labels(check, data)
    _validate_input(check, data["input"])
    _validate_output(check, data["output"], len(data["classes"]))
    check.choice(check.get(data["precision"], "requested", str, "precision."), PRECISIONS, "precision.requested")
    check.get(data["precision"], "as_run", str, "precision.")
    check.get(data["backend"], "name", str, "backend.")
    check.get(data["backend"], "options", dict, "backend.", required=False)
    check.get(data["model"], "checkpoint", dict, "model.", required=False)  # path + sha256, for bench's torch baseline
    check.get(data["model"], "weights", dict, "model.", required=False)  # shipped weights: key, dataset, val mIoU
    _validate_named_file(check, data["backend"], "engine", "backend.", data["files"], required=True)
    _validate_named_file(check, data["onnx"], "file", "onnx.", data["files"], required=False)


def _validate_files(check: _Fields, files: dict[str, Any]) -> None:
    if not files:
        check.fail("files", "is empty: nothing the engine loads would be verified",
                   f"{REBUILD}; a manifest must list and hash every file of its engine")
    for name, digest in files.items():
        safe_name(name, check, f"files[{name!r}]")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            check.fail(f"files[{name!r}]", f"is {digest!r:.60}; expected a sha256 (64 lowercase hex digits)")


def _validate_labels(check: _Fields, data: dict[str, Any]) -> None:
    classes, palette = data["classes"], data["palette"]
    if not classes or not all(isinstance(c, str) for c in classes):
        check.fail("classes", "must be a non-empty list of class names")
    if len(palette) != len(classes):
        check.fail("palette", f"has {len(palette)} colours for {len(classes)} classes; expected one per class")
    for i, colour in enumerate(palette):
        if not isinstance(colour, list) or len(colour) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour):
            check.fail(f"palette[{i}]", f"is {colour!r:.60}; expected [B, G, R] ints in 0..255")
    num = data["model"].get("num_classes", len(classes))
    background = 1 if isinstance(data.get("output"), dict) and data["output"].get("kind") == "instances" else 0
    if num != len(classes) + background:  # an instance network counts its background class; `classes` does not
        check.fail("model.num_classes", f"is {num!r:.20} but 'classes' names {len(classes)}"
                   + (" (an instance network has one more: the background)" if background else ""))


def _validate_input(check: _Fields, spec: dict[str, Any]) -> None:
    check.known_keys(spec, _INPUT, "input.")
    check.get(spec, "name", str, "input.")
    preprocess = spec.get("preprocess", "fused")
    check.choice(preprocess, tuple(INPUT_FORMS), "input.preprocess")
    dtype, layout = INPUT_FORMS[preprocess]
    check.choice(check.get(spec, "dtype", str, "input."), (dtype,), "input.dtype")
    check.choice(check.get(spec, "layout", str, "input."), (layout,), "input.layout")
    check.choice(spec.get("color", "BGR"), ("BGR",), "input.color")
    shape = spec["shape"]
    check.shape(shape, 4, "input.shape")
    channels = shape[3] if layout == "NHWC" else shape[1]
    if channels != 3:
        check.fail("input.shape", f"is {shape}; a {layout} input has 3 channels at index {3 if layout == 'NHWC' else 1}")
    for key in ("mean", "std"):
        if key in spec:
            check.numbers(spec[key], 3, f"input.{key}", positive=key == "std")
    check.get(spec, "resize", str, "input.", required=False)


def _validate_output(check: _Fields, spec: dict[str, Any], num_classes: int) -> None:
    check.known_keys(spec, _OUTPUT, "output.")
    check.get(spec, "name", str, "output.")
    kind = check.get(spec, "kind", str, "output.")
    check.choice(kind, OUTPUT_KINDS, "output.kind")
    dtype = check.get(spec, "dtype", str, "output.")
    check.choice(dtype, LABEL_DTYPES if kind == "labels" else LOGIT_DTYPES, "output.dtype")
    shape = check.get(spec, "shape", list, "output.")
    if kind == "instances":  # four outputs, named in order; the shape is the masks' (detections, M, M)
        if spec["name"] != ",".join(INSTANCE_OUTPUTS):
            check.fail("output.name", f"is {spec['name']!r:.80}; an instance engine's outputs are "
                       f"{','.join(INSTANCE_OUTPUTS)!r}")
        check.shape(shape, 3, "output.shape")
        if shape[0] is not None or shape[1] != shape[2]:
            check.fail("output.shape", f"is {shape}; instance masks are (None, M, M): any number of square masks")
        return
    check.shape(shape, 3 if kind == "labels" else 4, "output.shape")
    if kind != "labels" and shape[1] not in (None, num_classes):
        check.fail("output.shape", f"is {shape}: {shape[1]} channels for {num_classes} classes")


def _validate_named_file(check: _Fields, section: dict[str, Any], key: str, where: str, files: dict[str, Any],
                         required: bool) -> None:
    name = check.get(section, key, str, where, required=required)
    if name is None:
        return
    safe_name(name, check, f"{where}{key}")
    if name not in files:
        check.fail(f"{where}{key}", f"names {name!r}, which 'files' does not hash: it would be loaded unverified",
                   f"{REBUILD}; every file a backend opens must be listed in 'files'")


def safe_name(name: Any, check: _Fields, where: str) -> str:
    """A relative POSIX path that stays inside the engine directory: no absolute paths, no '..', no
    '.' or empty parts, no backslashes, and never the manifest itself or the compiled-model cache."""
    parts = name.split("/") if isinstance(name, str) else []
    if (not parts or name.startswith("/") or "\\" in name or "\0" in name or ":" in parts[0]
            or any(part in ("", ".", "..") for part in parts)):
        check.fail(where, f"is {name!r:.80}; engine files must be plain relative paths inside the engine directory")
    if parts[0] in (MANIFEST_NAME, CACHE_DIR):
        check.fail(where, f"is {name!r}: the manifest and the {CACHE_DIR} folder are not engine files")
    return name
