"""The contract between build time and run time.

`manifest.json` says what an engine expects (input size, layout, preprocessing), what it returns, its
classes and palette, its precision as requested and as run, and the sha256 of every file it names.
The runtime reads it with numpy and the standard library only: no torch on a vehicle.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.io import sha256_file

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ManifestError(EdgesegError):
    """A manifest or an engine file that cannot be trusted: missing, unreadable, changed since build."""


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
        data = dict(data)
        data["input"] = InputSpec(**{**data["input"], "shape": tuple(data["input"]["shape"]),
                                     "mean": tuple(data["input"]["mean"]), "std": tuple(data["input"]["std"])})
        data["output"] = OutputSpec(**{**data["output"], "shape": tuple(data["output"]["shape"])})
        data["classes"] = tuple(data["classes"])
        data["palette"] = tuple(tuple(c) for c in data["palette"])
        return cls(**data)


def hash_files(root: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(root / name) for name in sorted(names)}


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Read `root/manifest.json`, refusing other schema versions, without checking file hashes."""
    path = Path(root) / MANIFEST_NAME
    rebuild = "rebuild the engine with `edgeseg build ... --force`"
    if not path.is_file():
        raise ManifestError(f"{path} does not exist", f"pass an engine directory written by `edgeseg build`, or {rebuild}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc})", rebuild) from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema_version {version!r}; this edgeseg reads {SCHEMA_VERSION}",
                            f"{rebuild}, or use the edgeseg version that wrote it")
    try:
        return Manifest.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is missing or has malformed fields ({exc})", rebuild) from exc


def verify_files(manifest: Manifest, root: str | os.PathLike) -> None:
    """Check every file the manifest names against its sha256 before anything parses it."""
    root = Path(root)
    for name, expected in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise ManifestError(f"{path} named in the manifest is missing",
                                "copy the whole engine directory, or rebuild with `edgeseg build ... --force`")
        actual = sha256_file(path)
        if actual != expected:
            raise ManifestError(f"{path} changed since it was built (sha256 {actual[:12]}..., manifest says {expected[:12]}...)",
                                "the file is corrupt or was replaced: copy it again or rebuild with `edgeseg build ... --force`")


def load_manifest(root: str | os.PathLike) -> Manifest:
    manifest = read_manifest(root)
    verify_files(manifest, root)
    return manifest
