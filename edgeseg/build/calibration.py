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


def _list_images(path: Path) -> list[tuple[str, np.ndarray]]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    images = []
    for line in lines:
        image_path = Path(line) if os.path.isabs(line) else path.parent / line
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise BadInputError(f"calibration image {image_path} (listed in {path}) cannot be read",
                                "fix the path in the list; paths are relative to the list's folder")
        images.append((image_path.stem, image))
    return images


def _evenly(count: int, total: int) -> list[int]:
    """A deterministic spread over the whole split (sequences are ordered: the first N are one street)."""
    if count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, count)})


def open_calibration(spec: str | None, size: tuple[int, int], count: int | None = None, batch: int = 1,
                     eval_spec: str | None = None, progress: bool = True) -> CalibrationSet:
    """Load the calibration images a spec names: a dataset spec or an image list (.txt)."""
    if not spec:
        raise EdgesegError("INT8 needs calibration images and none were given (edgeseg never calibrates on "
                           "random data)", "pass --calib camvid:PATH:train (a split you do not report accuracy "
                           "on) or --calib calibration/LIST.txt")
    count = count or DEFAULT_SIZE
    if spec.endswith(".txt"):
        if not Path(spec).is_file():
            raise BadInputError(f"calibration list {spec} does not exist", "write one image path per line")
        pairs = _list_images(Path(spec))
        pairs = [pairs[i] for i in _evenly(count, len(pairs))]
    else:
        from edgeseg.data import parse_spec

        dataset = parse_spec(spec, "train")
        picked = _evenly(count, len(dataset))
        pairs = []
        from tqdm import tqdm

        for i in tqdm(picked, desc="calibration images", unit="img", disable=not progress, leave=False):
            sample = dataset[i]
            pairs.append((sample.name, sample.image))
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


def _overlap(names: list[str], eval_spec: str | None) -> list[str]:
    if not eval_spec:
        return []
    from edgeseg.data import parse_spec

    held_out = set(parse_spec(eval_spec, "val").image_names())
    return sorted(set(names) & held_out)


def cache_path(onnx_sha256: str, calib: CalibrationSet, method: str, root: Path = CACHE_DIR) -> Path:
    """The range cache for one graph, one calibration set and one method: any change is a new key,
    so a stale cache is never found, let alone used."""
    return root / f"{onnx_sha256[:16]}-{calib.fingerprint[:16]}-{method}.json"


def cache_is_valid(path: Path, key: dict) -> bool:
    """A cache is used only when its sidecar's key matches and its bytes are the ones written."""
    import json

    from edgeseg.io import sha256_file

    meta = path.with_suffix(".key.json")
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        stored = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return stored.get("key") == key and stored.get("sha256") == sha256_file(path)


def seal_cache(path: Path, key: dict) -> None:
    """Write the sidecar that lets `cache_is_valid` recognise this cache, and only this one."""
    import json

    from edgeseg.io import atomic_path, sha256_file

    with atomic_path(path.with_suffix(".key.json"), overwrite=True) as tmp:
        tmp.write_text(json.dumps({"key": key, "sha256": sha256_file(path)}, indent=1))
