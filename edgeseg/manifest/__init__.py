"""The contract between build time and run time.

`manifest.json` says what an engine expects (input size, layout, preprocessing), what it returns, its
classes and palette, its precision as requested and as run, and the sha256 of every file it names.
The runtime reads it with numpy and the standard library only: no torch on a vehicle.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.io import MANIFEST_NAME, sha256_file
from edgeseg.manifest.onnx_refs import external_data_locations
from edgeseg.manifest.schema import CACHE_DIR, REBUILD, SCHEMA_VERSION, ManifestError, _Fields, safe_name, validate

__all__ = ["SCHEMA_VERSION", "MANIFEST_NAME", "CACHE_DIR", "ManifestError", "InputSpec", "OutputSpec", "Manifest",
           "hash_files", "read_manifest", "verify_files", "load_manifest"]


@dataclass(frozen=True)
class InputSpec:
    """What `Session.infer` takes. With `preprocess == "fused"` the graph takes the frames as they are."""

    name: str
    shape: tuple[int | None, ...]  # None marks a dynamic dimension
    dtype: str  # "uint8" for fused preprocessing, else "float32"
    layout: str  # "NHWC" (fused) or "NCHW"
    color: str = "BGR"  # of the frames the session takes; the graph or the session converts to RGB
    preprocess: str = "fused"  # "fused": in the graph; "host": the session normalizes with mean/std
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    resize: str = "frames are resized to (H, W) with cv2.INTER_LINEAR before inference"

    @property
    def size(self) -> tuple[int | None, int | None]:
        return (self.shape[1], self.shape[2]) if self.layout == "NHWC" else (self.shape[2], self.shape[3])


@dataclass(frozen=True)
class OutputSpec:
    name: str
    # "labels": (N, H, W) class ids; "logits": (N, C, H, W) float; "lowres-logits": (N, C, h, w) float
    # that the session upsamples (bilinear, half-pixel) to the input size and argmaxes (edgeseg.runtime.tail)
    kind: str
    dtype: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class Manifest:
    name: str
    model: dict[str, Any]  # name, options, num_classes, checkpoint (path, sha256) or random_weights
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int
    input: InputSpec
    output: OutputSpec
    precision: dict[str, str]  # {"requested": "fp16", "as_run": "bf16", "note": "..."}
    backend: dict[str, Any]  # name, version, device, engine file(s), options
    onnx: dict[str, Any]  # file, exporter, opset, nodes before/after simplification
    hardware: dict[str, Any]
    files: dict[str, str]  # relative path -> sha256
    build_seconds: float
    created: str
    command: str
    edgeseg_version: str
    random_weights: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Build from parsed JSON; `read_manifest` validates the fields first, so this only converts."""
        data = dict(data)
        spec = dict(data["input"])
        for key in ("mean", "std"):
            if key in spec:
                spec[key] = tuple(spec[key])
        data["input"] = InputSpec(**{**spec, "shape": tuple(spec["shape"])})
        data["output"] = OutputSpec(**{**data["output"], "shape": tuple(data["output"]["shape"])})
        data["classes"] = tuple(data["classes"])
        data["palette"] = tuple(tuple(c) for c in data["palette"])
        return cls(**data)


def hash_files(root: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(root / name) for name in sorted(names)}


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Read `root/manifest.json` and validate its fields, refusing other schema versions, without
    checking file hashes."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path} does not exist", f"pass an engine directory written by `edgeseg build`, or {REBUILD}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc})", REBUILD) from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema_version {version!r:.20}; this edgeseg reads {SCHEMA_VERSION}",
                            f"{REBUILD}, or use the edgeseg version that wrote it")
    validate(data, path)
    return Manifest.from_dict(data)


def verify_files(manifest: Manifest, root: str | os.PathLike) -> None:
    """Check every file the manifest names against its sha256 before anything parses it, and that
    nothing unverified can be loaded with them: no file reached through a symbolic link or from
    outside the directory, no unlisted file beside them, no ONNX external data the manifest does not hash."""
    root = Path(root).resolve()
    check = _Fields(root / MANIFEST_NAME)
    if not manifest.files:
        check.fail("files", "is empty: nothing the engine loads would be verified", REBUILD)
    for name, expected in manifest.files.items():
        path = inside(root, safe_name(name, check, f"files[{name!r}]"))
        actual = sha256_file(path)
        if actual != expected:
            raise ManifestError(f"{path} changed since it was built (sha256 {actual[:12]}..., manifest says {expected[:12]}...)",
                                f"the file is corrupt or was replaced: copy it again or {REBUILD}")
    refuse_unlisted(root, manifest.files)
    for name in manifest.files:
        if name.endswith(".onnx"):
            _check_external_data(root, name, manifest.files)


def inside(root: Path, name: str) -> Path:
    """`root/name` as a regular file reached without symbolic links (so it cannot lead outside `root`)."""
    path = root.joinpath(*name.split("/"))
    if not os.path.lexists(path):
        raise ManifestError(f"{path} named in the manifest is missing",
                            f"copy the whole engine directory, or {REBUILD}")
    if path.resolve() != path or not stat.S_ISREG(os.lstat(path).st_mode):
        raise ManifestError(f"{path} is a symbolic link or not a regular file; engine files must be plain files "
                            f"inside the engine directory, or they could be swapped without changing the engine",
                            f"copy the engine directory with its files dereferenced (cp -rL), or {REBUILD}")
    return path


def refuse_unlisted(root: Path, files: dict[str, str]) -> None:
    """Refuse files the manifest does not list. A backend opens more than the engine file (ONNX
    external data, OpenVINO's .bin beside the .xml, a plan by its fixed name), so an unhashed file
    in the directory could be loaded unverified. Only manifest.json and the compiled-model cache may
    be there unlisted."""
    for parent, dirs, names in os.walk(root):
        rel = Path(parent).relative_to(root)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d != CACHE_DIR]
            names = [n for n in names if n != MANIFEST_NAME]
        for name in names + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            key = (rel / name).as_posix()
            if key not in files:
                raise ManifestError(f"{root / key} is in the engine directory but not in its manifest: it would not "
                                    "be verified, and a backend may load it (ONNX external data, an OpenVINO .bin)",
                                    f"remove it (engine directories hold only what `edgeseg build` wrote), or {REBUILD}")


def _check_external_data(root: Path, name: str, files: dict[str, str]) -> None:
    """Every external-data file a listed ONNX graph reads must be listed (so hashed) and inside."""
    folder = posixpath.dirname(name)
    for location in external_data_locations(root / name):
        resolved = posixpath.normpath(posixpath.join(folder, location))
        outside = resolved == ".." or resolved.startswith("../") or location.startswith("/") or "\\" in location
        if outside or resolved not in files:
            raise ManifestError(f"{root / name} reads tensor data from external file {location!r}, which the manifest "
                                "does not hash inside the engine directory",
                                f"{REBUILD} (edgeseg exports graphs with their weights inside)")


def load_manifest(root: str | os.PathLike) -> Manifest:
    """Read, validate and verify: the manifest's fields, then every file's sha256 and the directory."""
    manifest = read_manifest(root)
    verify_files(manifest, root)
    return manifest
