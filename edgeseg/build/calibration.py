"""Calibration data for INT8: real images, fed exactly as the engine will see them, never random.

A `CalibrationSet` is an iterator of ready input batches (uint8 N x H x W x 3 BGR at the engine's
input size, through the one `resize_to_input` that eval, bench and stream use), plus a fingerprint of
its pixels that keys the range cache. Every backend's calibrator adapter is fed from it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.runtime.frames import resize_to_input
from edgeseg.weights import CALIBRATION

DEFAULT_SIZE = 300  # a few hundred images: ranges stop moving well before that on road scenes
CACHE_DIR = Path("calibration") / "cache"


class CalibrationOverlapWarning(UserWarning):
    """Calibration images that are also in the split used to report accuracy."""


@dataclass
class CalibrationSet:
    spec: str
    names: list[str]
    frames: np.ndarray  # (N, H, W, 3) uint8 BGR at the engine input size
    batch: int = 1
    overlap: list[str] = field(default_factory=list)  # names shared with the evaluation split

    def __len__(self) -> int:
        return len(self.frames)

    def batches(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.frames) - self.batch + 1, self.batch):
            yield self.frames[start:start + self.batch]

    @property
    def fingerprint(self) -> str:
        """sha256 of the pixels, their order and shape: a changed image or size is a changed set."""
        digest = hashlib.sha256(repr(self.frames.shape).encode())
        digest.update(np.ascontiguousarray(self.frames).tobytes())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"spec": self.spec, "images": len(self), "size": list(self.frames.shape[1:3]),
                "fingerprint": self.fingerprint, "overlap_with_eval": len(self.overlap)}


def _list_paths(path: Path) -> list[Path]:
    """The image paths an image list names (one per line, relative to the list's folder; # comments)."""
    from edgeseg.inputs import require_file

    require_file(path, "calibration list", "write one image path per line, relative to the list's folder")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read calibration list {path}: {exc}", "pass a text file, one image path per line") \
            from None
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [Path(line) if os.path.isabs(line) else path.parent / line for line in lines]


def _read_image(image_path: Path, where: str, fix: str) -> tuple[str, np.ndarray]:
    """(stem, BGR image) of one calibration image; a missing, non-file or undecodable one is named."""
    from edgeseg.inputs import path_kind

    kind = path_kind(image_path)
    if kind != "a file":
        state = "does not exist" if kind == "missing" else f"is {kind}, not a file"
        raise BadInputError(f"calibration image {image_path} ({where}) {state}", fix)
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise BadInputError(f"calibration image {image_path} ({where}) cannot be read", fix)
    return image_path.stem, image


def _list_images(path: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """The images of a list, `count` of them spread over it; only those are decoded."""
    paths = _list_paths(path)
    fix = "fix the path in the list; paths are relative to the list's folder"
    return [_read_image(paths[i], f"listed in {path}", fix) for i in _evenly(count, len(paths))]


def _folder_images(folder: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """The images of a folder (calibration needs no labels), `count` of them spread over it."""
    from edgeseg.data.folder import image_files

    paths = image_files(folder)
    fix = "remove or replace the unreadable image"
    return [_read_image(paths[i], f"in {folder}", fix) for i in _evenly(count, len(paths))]


def _evenly(count: int, total: int) -> list[int]:
    """A deterministic spread over the whole split (sequences are ordered: the first N are one street)."""
    if count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, count)})


CALIB_FIX = ("pass --calib camvid:PATH:train (a split you do not report accuracy on), --calib folder:DIR "
             "(a folder of images from your cameras) or --calib calibration/LIST.txt; for road scenes like "
             f"CamVid's, --calib folder:{CALIBRATION} holds the frames shipped with edgeseg")


def open_calibration(spec: str | None, size: tuple[int, int], count: int | None = None, batch: int = 1,
                     eval_spec: str | None = None, progress: bool = True) -> CalibrationSet:
    """Load the calibration images a spec names: a dataset spec, a folder of images (`folder:DIR` or the
    folder's path: calibration needs images only, no labels) or an image list (.txt).

    `count` None takes DEFAULT_SIZE (or all there are); 0 or a negative count is refused, not replaced."""
    from edgeseg.inputs import count as checked_count

    if not spec:
        raise EdgesegError("INT8 needs calibration images and none were given (edgeseg never calibrates on "
                           "random data)", CALIB_FIX)
    count = checked_count(count, "the number of calibration images (--calib-size)",
                          f"pass --calib-size N with N of 1 or more, or leave it out for {DEFAULT_SIZE}")
    count = DEFAULT_SIZE if count is None else count
    if spec.endswith(".txt"):  # a list, even when something else sits at that path: say what it is
        pairs = _list_images(Path(spec), count)
    elif (folder := image_folder(spec)) is not None:
        pairs = _folder_images(folder, count)
    else:
        pairs = _dataset_images(spec, count, progress)
    if not pairs:
        raise BadInputError(f"calibration set {spec} has no images", "point --calib at a split with images")
    frames = np.stack([resize_to_input(image, size) for _, image in pairs])
    frames = frames[: len(frames) - len(frames) % batch] if len(frames) >= batch else frames
    names = [name for name, _ in pairs][: len(frames)]
    overlap = _overlap(names, eval_spec)
    if overlap:
        message = (f"{len(overlap)} of {len(names)} calibration images are also in the evaluation split "
                   f"{eval_spec} (e.g. {overlap[0]}): the reported INT8 accuracy will be optimistic. "
                   "Calibrate on the train split instead.")
        warnings.warn(message, CalibrationOverlapWarning, stacklevel=2)
        print(f"WARNING: {message}", file=sys.stderr)
    return CalibrationSet(spec, names, frames, batch, overlap)


def image_folder(spec: str) -> Path | None:
    """The folder of images a calibration spec names (`folder:DIR`, or an existing folder's path), else
    None. `folder:IMAGES,MASKS[,CLASSES]` is a labelled dataset and goes to parse_spec."""
    kind, sep, rest = spec.partition(":")
    if Path(spec).is_dir():
        return Path(spec)
    if kind == "folder" and sep and "," not in rest:
        from edgeseg.inputs import path_kind

        found = path_kind(rest) if rest else "missing"
        if found != "a directory":
            raise BadInputError(f"calibration folder {rest or '(none)'} "
                                + ("does not exist" if found == "missing" else f"is {found}, not a folder"),
                                "write --calib folder:DIR with DIR a folder of images")
        return Path(rest)
    return None


def _dataset_images(spec: str, count: int, progress: bool) -> list[tuple[str, np.ndarray]]:
    """`count` images spread over the split a dataset spec names."""
    from edgeseg.progress import progress as bar

    dataset = _open_split(spec, "train")
    pairs = []
    for i in bar(_evenly(count, len(dataset)), desc="calibration images", unit="img", disable=not progress,
                 leave=False):
        sample = dataset[i]
        pairs.append((sample.name, sample.image))
    return pairs


def _overlap(names: list[str], eval_spec: str | None) -> list[str]:
    if not eval_spec:
        return []
    held_out = set(_open_split(eval_spec, "val").image_names())
    return sorted(set(names) & held_out)


def _open_split(spec: str, split: str):
    """A semantic or an instance dataset (`coco:...`, `synthetic-instances`...): calibration reads images only."""
    from edgeseg.data import parse_spec
    from edgeseg.data.instances import INSTANCE_KINDS, parse_instance_spec

    return (parse_instance_spec if spec.partition(":")[0] in INSTANCE_KINDS else parse_spec)(spec, split)


def cache_path(onnx_sha256: str, calib: CalibrationSet, method: str, root: Path = CACHE_DIR) -> Path:
    """The range cache for one graph, one calibration set and one method: any change is a new key,
    so a stale cache is never found, let alone used."""
    return root / f"{onnx_sha256[:16]}-{calib.fingerprint[:16]}-{method}.json"


def cache_is_valid(path: Path, key: dict) -> bool:
    """A cache is used only when its sidecar's key matches, its bytes are the ones written, and its
    ranges are ranges (see `cache_problem`)."""
    return cache_problem(path, key) is None


def cache_problem(path: Path, key: dict) -> str | None:
    """Why the cache at `path` cannot be used for `key` (a phrase: "is stale or was modified"), or None.

    The sidecar's key and sha256 only prove that the bytes are the ones sealed; a cache crafted with
    the right key and a matching sidecar is still read by ONNX Runtime as is, so its content is checked
    too: ONNX Runtime's schema, the calibration method, and finite ranges with lowest <= highest (NaN or
    inf ranges otherwise become the scales of the published graph)."""
    import json

    from edgeseg.io import sha256_file

    meta = path.with_suffix(".key.json")
    if not (path.is_file() and meta.is_file()):
        return "is missing or not a file"
    try:
        stored = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "has an unreadable key file"
    if not (isinstance(stored, dict) and isinstance(stored.get("key"), dict) and isinstance(stored.get("sha256"), str)):
        return "has a key file of the wrong shape"
    if stored["key"] != key or stored["sha256"] != sha256_file(path):
        return "is stale or was modified"
    return _content_problem(path, key)


def _content_problem(path: Path, key: dict) -> str | None:
    """ONNX Runtime's JSON range caches are checked field by field; other caches (TensorRT's implicit
    calibrator writes its own format, method "trt-entropy2") are trusted on their key and sha256."""
    method = key.get("method")
    return ranges_problem(path, method) if method in _METHOD_NAMES else None


# ONNX Runtime's CalibrationMethod member for each --calib-method
_METHOD_NAMES = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# TensorData fields ONNX Runtime accepts; those it requires float16/float32 arrays for
_TENSOR_FIELDS = {"avg", "std", "lowest", "highest", "hist", "hist_edges", "bins"}
_FLOAT_FIELDS = {"avg", "std", "lowest", "highest", "hist_edges"}
_ARRAY_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64"}


def ranges_problem(path: Path, method: str) -> str | None:
    """Why the range cache ONNX Runtime wrote (or would read) at `path` is unusable, or None.

    Mirrors what `onnxruntime.quantization.calibrate.TensorsData.from_dict` reads, so nothing it would
    crash on (a missing key, an unknown field, a wrong dtype) or silently use (NaN, inf, lowest >
    highest) gets through."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "is not readable JSON"
    if not isinstance(data, dict) or data.get("CLS") != "TensorsData" or not isinstance(data.get("data"), dict):
        return "is not a range cache (no TensorsData)"
    recorded = data.get("calibration_method")
    wanted = _METHOD_NAMES.get(method)
    if not (isinstance(recorded, dict) and recorded.get("CLS") == "CalibrationMethod"
            and isinstance(recorded.get("value"), str) and recorded["value"].split(".")[-1] == wanted):
        return f"was not made by {method} calibration"
    if data.get("smooth_quant", False) is not False:
        return "was made with SmoothQuant, which edgeseg does not use"
    if not data["data"]:
        return "holds no ranges"
    for name, tensor in data["data"].items():
        problem = _tensor_problem(tensor)
        if problem:
            return f"has an unusable range for tensor {name!r}: {problem}"
    return None


def _tensor_problem(tensor: object) -> str | None:
    """One tensor's TensorData: known fields, numbers or numpy.array objects, finite, lowest <= highest."""
    if not isinstance(tensor, dict) or tensor.get("CLS", "TensorData") != "TensorData":
        return "not a TensorData object"
    fields = set(tensor) - {"CLS"}
    if fields - _TENSOR_FIELDS:
        return f"unknown fields {sorted(fields - _TENSOR_FIELDS)}"
    if not {"lowest", "highest"} <= fields:
        return "no lowest/highest"
    values = {}
    for field_name in fields:
        values[field_name], problem = _array(tensor[field_name], field_name in _FLOAT_FIELDS)
        if problem:
            return f"{field_name} {problem}"
    lowest, highest = values["lowest"], values["highest"]
    if lowest.shape != highest.shape:
        return f"lowest {lowest.shape} and highest {highest.shape} differ in shape"
    if (lowest > highest).any():
        return "lowest is above highest"
    return None


def _array(value: object, floating: bool) -> tuple[np.ndarray | None, str | None]:
    """A number, or ONNX Runtime's {"CLS": "numpy.array", "data": ..., "dtype": ...}, as an array of
    finite values; else (None, why)."""
    if isinstance(value, bool):
        return None, "is a boolean"
    if isinstance(value, (int, float)):
        array = np.asarray(value, np.float64)
    elif isinstance(value, dict) and value.get("CLS") == "numpy.array" and "data" in value:
        dtype = value.get("dtype")
        allowed = {"float16", "float32"} if floating else _ARRAY_DTYPES
        if dtype not in allowed:
            return None, f"has dtype {dtype!r}, not one of {', '.join(sorted(allowed))}"
        try:
            array = np.asarray(value["data"], np.float64)
        except (TypeError, ValueError):
            return None, "is not an array of numbers"
        if array.dtype == object:
            return None, "is not an array of numbers"
    else:
        return None, "is not a number or an array"
    if not np.isfinite(array).all():
        return None, "is not finite (NaN or inf)"
    return array, None


def discard_cache(path: Path) -> None:
    """Remove a cache and its sidecar before recalibrating. Something other than a file at either path
    (a directory someone made there) is not removed but refused: ONNX Runtime cannot write over it."""
    from edgeseg.inputs import path_kind

    for target in (path, path.with_suffix(".key.json")):
        kind = path_kind(target)
        if kind == "missing":
            continue
        if kind not in ("a file", "a broken symbolic link"):
            raise BadInputError(f"calibration cache {target} is {kind}, not a file",
                                f"remove {target}; edgeseg writes the range cache there")
        target.unlink()


def seal_cache(path: Path, key: dict) -> None:
    """Write the sidecar that lets `cache_is_valid` recognise this cache, and only this one. Ranges
    that are not finite (or otherwise unusable) are refused, not sealed for every later build."""
    import json

    from edgeseg.io import atomic_path, sha256_file

    problem = _content_problem(path, key)
    if problem:
        raise EdgesegError(f"calibration cache {path} {problem}",
                           "check the calibration images and the network's weights (a NaN activation makes "
                           "NaN ranges), or try another --calib-method")
    with atomic_path(path.with_suffix(".key.json"), overwrite=True) as tmp:
        tmp.write_text(json.dumps({"key": key, "sha256": sha256_file(path)}, indent=1))
