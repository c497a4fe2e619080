"""PASCAL VOC 2012 segmentation (Everingham et al.): 21 classes, 255 on object boundaries."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.base import DatasetInfo, PairDataset, read_label
from edgeseg.errors import BadInputError
from edgeseg.inputs import require_file, require_folder


def _voc_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """VOC's bit-interleaved colour map (RGB)."""
    colours = []
    for index in range(count):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


VOC_INFO = DatasetInfo(
    name="voc",
    classes=("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor"),
    palette=_voc_palette(21),
    ignore_index=255,
)
_BOUNDARY_RGB = _voc_palette(256)[255]  # (224, 224, 192)


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_PALETTE_CODES = _colour_codes(np.array(VOC_INFO.palette + (_BOUNDARY_RGB,)))
_PALETTE_IDS = np.array(list(range(21)) + [255], dtype=np.uint8)
_ORDER = np.argsort(_PALETTE_CODES)


def read_voc_label(path: Path) -> np.ndarray:
    """Class ids from a VOC label: OpenCV expands palette PNGs to colours, so map colours back.
    Already index-valued PNGs (e.g. SegmentationClassAug) pass through."""
    require_file(path, "label", "every VOC image needs its SegmentationClass PNG")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim == 2:
        return read_label(path)
    codes = _colour_codes(raw[..., 2::-1])  # BGR -> RGB
    sorted_codes = _PALETTE_CODES[_ORDER]
    slot = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
    if not np.array_equal(sorted_codes[slot], codes):
        raise BadInputError(f"label {path} has colours outside VOC's palette",
                            "VOC labels must be the palette PNGs of SegmentationClass/")
    return _PALETTE_IDS[_ORDER][slot]


def voc(root: str | Path, split: str = "train") -> PairDataset:
    root = require_folder(root, "VOC folder", "pass VOCdevkit or VOCdevkit/VOC2012")
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    require_file(list_file, "split list", "pass VOCdevkit/VOC2012 and a split with a list (train, val)")
    try:
        text = list_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read split list {list_file}: {exc}", "pass a text file of image stems") from None
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    pairs = [(root / "JPEGImages" / f"{s}.jpg", root / "SegmentationClass" / f"{s}.png") for s in stems]
    return PairDataset(VOC_INFO, pairs, split, label_reader=read_voc_label)
