"""What every dataset format shares: its class description and checked image/label reading.

Samples are numpy arrays as OpenCV reads them: image H x W x 3 uint8 BGR, label H x W uint8
(class ids, `ignore_index` for unlabeled pixels). Torch appears only in `edgeseg.data.loader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.inputs import require_file

# ImageNet statistics (RGB, 0..1): every backbone's ImageNet weights were trained with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on the data needs to know: classes, colours, ignore index, normalization."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per class, for visualization
    ignore_index: int = 255
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, 0..1 scale
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetInfo":
        return cls(name=d["name"], classes=tuple(d["classes"]), palette=tuple(tuple(c) for c in d["palette"]),
                   ignore_index=int(d["ignore_index"]), mean=tuple(d["mean"]), std=tuple(d["std"]))

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "palette": [list(c) for c in self.palette],
                "ignore_index": self.ignore_index, "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # H x W x 3 uint8 BGR
    label: np.ndarray  # H x W uint8 class ids
    name: str  # the image's stem, used for saved predictions


class SegDataset:
    """A list of samples with their class description. Subclasses implement `__getitem__`."""

    info: DatasetInfo
    split: str

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError

    def image_names(self) -> list[str]:
        """Stable identities of the images (used to detect calibration/evaluation overlap)."""
        return [self[i].name for i in range(len(self))]


@dataclass
class PairDataset(SegDataset):
    """Image/label file pairs read and checked on access."""

    info: DatasetInfo
    pairs: Sequence[tuple[Path, Path]]
    split: str = "train"
    label_map: np.ndarray | None = field(default=None, repr=False)  # 256-entry LUT raw value -> class id
    label_reader: Callable[[Path], np.ndarray] | None = field(default=None, repr=False)  # default: read_label

    def __post_init__(self) -> None:
        if not self.pairs:
            raise EdgesegError(f"the {self.info.name} {self.split} split has no images",
                               "check the dataset path and split name")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        label = (self.label_reader or read_label)(label_path)
        if self.label_map is not None:
            label = self.label_map[label]
        check_pair(image, label, image_path, label_path, self.info)
        return Sample(image, label, image_path.stem)

    def image_names(self) -> list[str]:
        return [image.stem for image, _ in self.pairs]


def read_image(path: Path) -> np.ndarray:
    # a directory, FIFO or device is named as what it is, not "does not exist" (and a FIFO never blocks imread)
    require_file(path, "image", "check the dataset's list file and folders")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise BadInputError(f"image {path} cannot be read", "the file is corrupt or not an image; replace or remove it")
    return image


def read_label(path: Path) -> np.ndarray:
    require_file(path, "label", "every image needs a label file (a PNG) with the same stem")
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise BadInputError(f"label {path} cannot be read", "the file is corrupt or not a PNG; replace or remove it")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise BadInputError(f"label {path} is {label.dtype} with shape {label.shape}, not a single-channel uint8 map",
                            "save labels as 8-bit single-channel PNGs whose values are class ids")
    return label


def check_pair(image: np.ndarray, label: np.ndarray, image_path, label_path, info: DatasetInfo) -> None:
    if image.shape[:2] != label.shape:
        raise BadInputError(f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label {label_path} "
                            f"is {label.shape[1]}x{label.shape[0]}", "labels must have their image's size")
    valid = (label < info.num_classes) | (label == info.ignore_index)
    if not valid.all():
        bad = np.unique(label[~valid])[:5].tolist()
        raise BadInputError(f"label {label_path} has values {bad} outside 0..{info.num_classes - 1} and the ignore "
                            f"index {info.ignore_index}", f"{info.name} labels must hold class ids (see its README)")


def read_list(path: Path) -> list[tuple[str, str]]:
    """A SegNet-style list: one 'image label' pair per line."""
    require_file(path, "list file", "check the dataset path and split name")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read list file {path}: {exc}", "pass a text file of 'image label' lines") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise BadInputError(f"{path}:{number} should hold 'image label', got '{line.strip()}'",
                                "write one image path and one label path per line")
        pairs.append((parts[0], parts[1]))
    return pairs


def verify(dataset: SegDataset, progress: bool = True) -> None:
    """Read every sample once, so a dataset with unreadable, missing or mismatched files fails
    before training starts, naming the files, instead of an hour into it."""
    from edgeseg.progress import progress as bar

    problems = []
    for index in bar(range(len(dataset)), desc=f"check {dataset.info.name} {dataset.split}", unit="img",
                     disable=not progress, leave=False):
        try:
            dataset[index]
        except BadInputError as exc:
            problems.append(exc.problem)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise BadInputError(f"{len(problems)} of {len(dataset)} samples of {dataset.info.name} {dataset.split} "
                            f"cannot be used: {shown}", "fix or remove those files (and their list entries)")
