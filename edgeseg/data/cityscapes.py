"""Cityscapes fine annotations (Cordts et al. 2016) mapped to the 19 training classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data.base import DatasetInfo, PairDataset
from edgeseg.errors import BadInputError
from edgeseg.inputs import require_folder

CITYSCAPES_INFO = DatasetInfo(
    name="cityscapes",
    classes=("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
             "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
    palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
             (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
             (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)),
    ignore_index=255,
)
# labelIds of the 19 evaluated classes, in train-id order (cityscapesScripts' labels.py)
_EVALUATED_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
SPLITS = ("train", "val", "test")


def _train_id_lut() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    lut[list(_EVALUATED_IDS)] = np.arange(len(_EVALUATED_IDS), dtype=np.uint8)
    return lut


def cityscapes(root: str | Path, split: str = "train") -> PairDataset:
    root = Path(root)
    if split not in SPLITS:
        raise BadInputError(f"unknown Cityscapes split '{split}'", f"use one of {', '.join(SPLITS)}")
    require_folder(root, "Cityscapes folder", "pass the folder that holds leftImg8bit/ and gtFine/")
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not images:
        raise BadInputError(f"no images under {root / 'leftImg8bit' / split}",
                            "pass the folder that holds leftImg8bit/ and gtFine/")
    pairs = []
    for image in images:
        stem = image.name[: -len("_leftImg8bit.png")]
        pairs.append((image, root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"))
    return PairDataset(CITYSCAPES_INFO, pairs, split, label_map=_train_id_lut())
