"""What every instance-segmentation source shares: the sample, the class description, and one COCO
ground truth, so that evaluation (`edgeseg.measure.instance_metrics`) is the same for every source.

Conventions are torchvision's detection models' (Mask R-CNN trains on them unchanged): labels are
contiguous 1..K with 0 kept for the background; boxes are x0, y0, x1, y1 in pixels where the box of a
mask is [xmin, ymin, xmax + 1, ymax + 1] (COCO's and pycocotools' convention); masks are N x H x W
uint8 0/1 at the image's size; crowd regions are instances with iscrowd = 1, which the COCO evaluation
treats as regions to ignore rather than objects to find. Images are H x W x 3 uint8 BGR as OpenCV reads
them. No torch here: the loader converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgeseg.data.base import IMAGENET_MEAN, IMAGENET_STD
from edgeseg.errors import BadInputError


class DroppedAnnotationsWarning(UserWarning):
    """Annotations a source could not use (degenerate boxes) were left out; the count is in the message."""


@dataclass(frozen=True)
class InstanceInfo:
    """What a detector trained on the data needs: the foreground classes (classes[i] is label i + 1),
    their colours, the COCO category id of each (so predictions map back to the source's ids), and the
    normalization."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per foreground class, for visualization
    category_ids: tuple[int, ...] = ()  # COCO category id of label i + 1; () means 1..K
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, 0..1 scale
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not self.category_ids:
            object.__setattr__(self, "category_ids", tuple(range(1, len(self.classes) + 1)))
        if not len(self.classes) == len(self.palette) == len(self.category_ids):
            raise BadInputError(f"{self.name}: {len(self.classes)} classes, {len(self.palette)} colours and "
                                f"{len(self.category_ids)} category ids", "give one colour and one id per class")

    @property
    def num_classes(self) -> int:
        """What torchvision's detection models call num_classes: the foreground classes plus background."""
        return len(self.classes) + 1

    def categories(self) -> list[dict]:
        """COCO categories; "label" records the contiguous label so evaluation needs no other mapping."""
        return [{"id": int(c), "name": n, "label": i + 1} for i, (n, c) in enumerate(zip(self.classes,
                                                                                        self.category_ids))]

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "palette": [list(c) for c in self.palette],
                "category_ids": list(self.category_ids), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "InstanceInfo":
        return cls(name=d["name"], classes=tuple(d["classes"]), palette=tuple(tuple(c) for c in d["palette"]),
                   category_ids=tuple(int(c) for c in d["category_ids"]), mean=tuple(d["mean"]), std=tuple(d["std"]))


@dataclass(frozen=True)
class InstanceSample:
    image: np.ndarray  # H x W x 3 uint8 BGR
    boxes: np.ndarray  # N x 4 float32 x0, y0, x1, y1 (pixels; a mask's box is [xmin, ymin, xmax + 1, ymax + 1])
    labels: np.ndarray  # N int64, 1..K (0 is the background)
    masks: np.ndarray  # N x H x W uint8 0/1
    iscrowd: np.ndarray  # N uint8: 1 for a crowd region (ignored by the evaluation, usually skipped in training)
    name: str  # the image's stem
    image_id: int  # the id in `coco_ground_truth()`, which predictions are keyed by


class Annotations(NamedTuple):
    """A sample without its image: what the ground truth needs, cheaper to read for some sources."""

    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    iscrowd: np.ndarray
    name: str
    image_id: int

    def with_image(self, image: np.ndarray) -> InstanceSample:
        return InstanceSample(image, *self)


class InstanceDataset:
    """A list of instance samples with their class description. Subclasses implement `__len__` and
    `__getitem__`, and `annotations` when the targets can be read without decoding the image."""

    info: InstanceInfo
    split: str

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> InstanceSample:
        raise NotImplementedError

    def annotations(self, index: int) -> Annotations:
        s = self[index]
        return Annotations(s.boxes, s.labels, s.masks, s.iscrowd, s.name, s.image_id)

    def image_names(self) -> list[str]:
        """Stable identities of the images (used to detect calibration/evaluation overlap)."""
        return [self.annotations(i).name for i in range(len(self))]

    def coco_ground_truth(self) -> dict:
        """The whole split as a COCO instances dict (RLE masks), the input of `evaluate_instances`."""
        images, annotations = [], []
        for index in range(len(self)):
            a = self.annotations(index)
            h, w = a.masks.shape[1:]
            images.append({"id": int(a.image_id), "file_name": a.name, "height": int(h), "width": int(w)})
            annotations += coco_annotations(a, self.info, first_id=len(annotations) + 1)
        return {"info": {"description": f"{self.info.name} {self.split}"}, "images": images,
                "annotations": annotations, "categories": self.info.categories()}


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO compressed RLEs of N x H x W masks, with text counts so the result is JSON."""
    from pycocotools import mask as mask_utils

    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def coco_annotations(a: Annotations, info: InstanceInfo, first_id: int) -> list[dict]:
    """COCO annotations of one image; ids count from `first_id` (COCOeval reads id 0 as 'unmatched')."""
    rles = encode_masks(a.masks)
    areas = a.masks.sum((1, 2), dtype=np.int64)
    xywh = np.concatenate([a.boxes[:, :2], a.boxes[:, 2:] - a.boxes[:, :2]], 1).astype(float)
    return [{"id": first_id + k, "image_id": int(a.image_id), "category_id": int(info.category_ids[a.labels[k] - 1]),
             "segmentation": rles[k], "area": int(areas[k]), "bbox": xywh[k].tolist(), "iscrowd": int(a.iscrowd[k])}
            for k in range(len(rles))]


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """N x 4 float32 boxes [xmin, ymin, xmax + 1, ymax + 1] of non-empty N x H x W masks."""
    if len(masks) == 0:
        return np.zeros((0, 4), np.float32)
    rows, cols = masks.any(2), masks.any(1)
    h, w = masks.shape[1:]
    y0, y1 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    return np.stack([x0, y0, x1, y1], 1).astype(np.float32)


def split_instance_map(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """N x H x W uint8 masks of the pixels of `ids` equal to each of `values` (one vectorized compare)."""
    return (ids[None] == np.asarray(values).reshape(-1, 1, 1)).astype(np.uint8)


def empty_targets(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """boxes, labels, masks, iscrowd of a negative image (no instances) of size h x w."""
    return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, h, w), np.uint8), np.zeros(0, np.uint8)


class FirstImages(InstanceDataset):
    """The first `count` images of a dataset (eval --limit), with its classes and ids."""

    def __init__(self, dataset: InstanceDataset, count: int) -> None:
        self.dataset, self.count = dataset, min(count, len(dataset))
        self.info, self.split = dataset.info, dataset.split

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> InstanceSample:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.dataset[index]

    def annotations(self, index: int) -> Annotations:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.dataset.annotations(index)
