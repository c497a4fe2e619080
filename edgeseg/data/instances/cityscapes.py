"""`cityscapes-instances:ROOT[:split]`: Cityscapes fine instances (Cordts et al. 2016) in its 8 classes.

`gtFine/<split>/<city>/*_gtFine_instanceIds.png` (16-bit) holds labelId * 1000 + k for each object of a
class with instances, and the bare labelId where the annotators marked a group (a crowd of people, a
row of parked cars) instead of objects. Objects become instances; each class's group pixels become one
crowd region (iscrowd = 1), as cityscapesScripts' evaluation ignores them. Caravan and trailer
(labelIds 29, 30, not evaluated by Cityscapes either) are background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.base import read_image
from edgeseg.data.cityscapes import CITYSCAPES_INFO, SPLITS
from edgeseg.data.instances.base import (
    Annotations,
    InstanceDataset,
    InstanceInfo,
    InstanceSample,
    masks_to_boxes,
    split_instance_map,
)
from edgeseg.errors import BadInputError
from edgeseg.inputs import require_file, require_folder

_CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
LABEL_IDS = (24, 25, 26, 27, 28, 31, 32, 33)  # cityscapesScripts' labels.py, in the order of _CLASSES
CITYSCAPES_INSTANCE_INFO = InstanceInfo(
    name="cityscapes-instances", classes=_CLASSES,
    palette=tuple(CITYSCAPES_INFO.palette[CITYSCAPES_INFO.classes.index(c)] for c in _CLASSES),
    category_ids=LABEL_IDS)
_LABEL = np.zeros(256, np.int64)  # labelId -> contiguous label (0: not an instance class)
_LABEL[list(LABEL_IDS)] = np.arange(1, len(LABEL_IDS) + 1)


class CityscapesInstances(InstanceDataset):
    info = CITYSCAPES_INSTANCE_INFO

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root, self.split = Path(root), split
        if split not in SPLITS:
            raise BadInputError(f"unknown Cityscapes split '{split}'", f"use one of {', '.join(SPLITS)}")
        require_folder(self.root, "Cityscapes folder", "pass the folder that holds leftImg8bit/ and gtFine/")
        self.images = sorted((self.root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        if not self.images:
            raise BadInputError(f"no images under {self.root / 'leftImg8bit' / split}",
                                "pass the folder that holds leftImg8bit/ and gtFine/")

    def __len__(self) -> int:
        return len(self.images)

    def _name(self, index: int) -> str:
        return self.images[index].name[: -len("_leftImg8bit.png")]

    def instance_path(self, index: int) -> Path:
        image = self.images[index]
        return self.root / "gtFine" / self.split / image.parent.name / f"{self._name(index)}_gtFine_instanceIds.png"

    def annotations(self, index: int) -> Annotations:
        path = require_file(self.instance_path(index), "instance map",
                            "every image needs its gtFine *_gtFine_instanceIds.png (from gtFine_trainvaltest.zip)")
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if ids is None:
            raise BadInputError(f"instance map {path} cannot be read", "the file is corrupt; replace it")
        if ids.ndim != 2 or ids.dtype != np.uint16:
            raise BadInputError(f"instance map {path} is {ids.dtype} with shape {ids.shape}, not a 16-bit "
                                "single-channel map", "use Cityscapes' own *_instanceIds.png files")
        values = np.unique(ids)
        label_ids = np.where(values >= 1000, values // 1000, values)
        labels = _LABEL[np.minimum(label_ids, 255)]
        values, labels = values[labels > 0], labels[labels > 0]
        masks = split_instance_map(ids, values)
        return Annotations(masks_to_boxes(masks), labels, masks, (values < 1000).astype(np.uint8), self._name(index),
                           index + 1)

    def __getitem__(self, index: int) -> InstanceSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"cityscapes-instances index {index} out of range for {len(self)} images")
        index %= len(self)
        image = read_image(self.images[index])
        target = self.annotations(index)
        if image.shape[:2] != target.masks.shape[1:]:
            raise BadInputError(f"image {self.images[index]} is {image.shape[1]}x{image.shape[0]} but its instance "
                                f"map {self.instance_path(index)} is {target.masks.shape[2]}x{target.masks.shape[1]}",
                                "instance maps must have their image's size")
        return target.with_image(image)

    def image_names(self) -> list[str]:
        return [self._name(i) for i in range(len(self))]
