"""`coco:ANNOTATIONS.json:IMAGES_DIR`: any dataset in the COCO instances format, read with pycocotools.

Polygons, RLE and crowd (iscrowd = 1) annotations are decoded by pycocotools' own `annToMask`. Category
ids (COCO's run 1..90 with gaps) become contiguous labels 1..K in ascending id order; the ids are kept in
`info.category_ids` so that predictions map back. Annotations whose box has no width or height (inside
the image) cannot train a detector: they are dropped, counted in `dropped` and reported by a
`DroppedAnnotationsWarning`. An image without annotations is kept as a negative image (no instances).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from edgeseg.data.base import read_image
from edgeseg.data.instances.base import (
    Annotations,
    DroppedAnnotationsWarning,
    InstanceDataset,
    InstanceInfo,
    InstanceSample,
    empty_targets,
)
from edgeseg.errors import BadInputError
from edgeseg.inputs import is_finite_number, read_json, require_folder

_FIX = "pass a COCO instances file (images, annotations and categories), e.g. instances_val2017.json"


def _palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """n distinct, repeatable colours (a fixed seed: the same classes always get the same colours)."""
    return tuple(tuple(int(v) for v in c) for c in np.random.default_rng(0).integers(40, 256, (n, 3)))


def _check(data: object, path: Path) -> dict:
    """The COCO dict, or an error naming the first thing that makes it not one."""
    if not isinstance(data, dict):
        raise BadInputError(f"{path} is not a COCO annotation file (a JSON {type(data).__name__}, not an object)", _FIX)
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise BadInputError(f"{path} is not a COCO annotation file: it has no {' or '.join(missing)} list", _FIX)
    if not data["categories"]:
        raise BadInputError(f"{path} lists no categories", _FIX)
    for what, entries, keys in (("category", data["categories"], ("id", "name")),
                                ("image", data["images"], ("id", "file_name", "height", "width")),
                                ("annotation", data["annotations"], ("image_id", "category_id", "bbox",
                                                                     "segmentation"))):
        for k, entry in enumerate(entries):
            lacking = [key for key in keys if not isinstance(entry, dict) or key not in entry]
            if lacking:
                which = f"{what} {entry['id']!r}" if isinstance(entry, dict) and "id" in entry else \
                    f"{what} number {k + 1}"
                raise BadInputError(f"{which} of {path} has no {', '.join(lacking)}",
                                    f"every {what} needs {', '.join(keys)} (the COCO format)")
    for image in data["images"]:
        size = (image["height"], image["width"])
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
            raise BadInputError(f"image {image['id']!r} of {path} has height x width {size[0]!r} x {size[1]!r}",
                                "height and width are the image's size in pixels (positive integers)")
    return data


class CocoInstances(InstanceDataset):
    """The images of a COCO instances JSON found under `images` by their file_name."""

    def __init__(self, annotations: str | Path, images: str | Path, split: str = "train") -> None:
        from pycocotools.coco import COCO

        self.path, self.root, self.split = Path(annotations), Path(images), split
        data = _check(read_json(self.path, "COCO annotation file", _FIX, BadInputError), self.path)
        require_folder(self.root, "COCO image folder", "pass the folder that holds the images the JSON names")
        categories = sorted(data["categories"], key=lambda c: c["id"])
        ids = [c["id"] for c in categories]
        if len(set(ids)) != len(ids):
            raise BadInputError(f"{self.path} lists a category id twice", "give every category its own id")
        self.info = InstanceInfo(f"coco:{self.path.stem}", tuple(str(c["name"]) for c in categories),
                                 _palette(len(ids)), tuple(int(i) for i in ids))
        self._label = {c: k + 1 for k, c in enumerate(ids)}
        self.images = data["images"]
        self._index = {img["id"]: k for k, img in enumerate(self.images)}
        if len(self._index) != len(self.images):
            raise BadInputError(f"{self.path} lists an image id twice", "give every image its own id")
        if not self.images:
            raise BadInputError(f"{self.path} lists no images", _FIX)
        self._annotations: list[list[dict]] = [[] for _ in self.images]
        self.dropped = 0
        for ann in data["annotations"]:
            self._annotations[self._locate(ann)].append(ann)
        for k, anns in enumerate(self._annotations):
            keep = [a for a, ok in zip(anns, self._usable(anns, self.images[k])) if ok]
            self.dropped += len(anns) - len(keep)
            self._annotations[k] = keep
        if self.dropped:
            warnings.warn(f"{self.path}: dropped {self.dropped} annotations whose box has no width or height inside "
                          "its image (a detector cannot learn from them)", DroppedAnnotationsWarning, stacklevel=2)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()

    def _locate(self, ann: dict) -> int:
        """The index of the annotation's image; an unknown image or category is an error."""
        if ann["image_id"] not in self._index:
            raise BadInputError(f"annotation {ann.get('id', '?')} of {self.path} refers to image_id "
                                f"{ann['image_id']!r}, which the file does not list among its images",
                                "add that image to 'images' or remove the annotation")
        if ann["category_id"] not in self._label:
            raise BadInputError(f"annotation {ann.get('id', '?')} of {self.path} has category_id "
                                f"{ann['category_id']!r}, which the file does not list among its categories",
                                "add that category to 'categories' or remove the annotation")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
            raise BadInputError(f"annotation {ann.get('id', '?')} of {self.path} has bbox {bbox!r}",
                                "a COCO bbox is [x, y, width, height] in pixels")
        return self._index[ann["image_id"]]

    @staticmethod
    def _usable(anns: list[dict], image: dict) -> np.ndarray:
        """Which boxes keep a width and height once clipped to the image (torchvision's reference rule)."""
        if not anns:
            return np.zeros(0, bool)
        xyxy = _xyxy(anns, image)
        return (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])

    def __len__(self) -> int:
        return len(self.images)

    def annotations(self, index: int) -> Annotations:
        image, anns = self.images[index], self._annotations[index]
        name = Path(str(image["file_name"])).stem
        if not anns:
            return Annotations(*empty_targets(int(image["height"]), int(image["width"])), name, image["id"])
        masks = []
        for ann in anns:
            try:
                with warnings.catch_warnings():  # pycocotools' decode under numpy 2 warns about __array__'s copy=
                    warnings.simplefilter("ignore", DeprecationWarning)
                    masks.append(self.coco.annToMask(ann))
            except Exception as exc:  # pycocotools raises bare errors on malformed polygons or RLE
                raise BadInputError(f"annotation {ann.get('id', '?')} of {self.path} has a segmentation pycocotools "
                                    f"cannot decode ({type(exc).__name__}: {exc})",
                                    "segmentation must be polygons [[x0, y0, x1, y1, ...]] or an RLE") from None
        labels = np.array([self._label[a["category_id"]] for a in anns], np.int64)
        crowd = np.array([int(bool(a.get("iscrowd", 0))) for a in anns], np.uint8)
        return Annotations(_xyxy(anns, image).astype(np.float32), labels, np.stack(masks).astype(np.uint8), crowd,
                           name, image["id"])

    def __getitem__(self, index: int) -> InstanceSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.info.name} index {index} out of range for {len(self)} images")
        index %= len(self)
        entry = self.images[index]
        path = self.root / str(entry["file_name"])
        image = read_image(path)
        if image.shape[:2] != (entry["height"], entry["width"]):
            raise BadInputError(f"image {path} is {image.shape[1]}x{image.shape[0]} but {self.path} says it is "
                                f"{entry['width']}x{entry['height']}",
                                "pass the images the annotations were made on (not resized copies)")
        return self.annotations(index).with_image(image)

    def image_names(self) -> list[str]:
        return [Path(str(img["file_name"])).stem for img in self.images]

    def coco_ground_truth(self) -> dict:
        """The file's own images and annotations (less the dropped ones), with its bbox and area kept so
        that the numbers match the official COCO evaluation; masks as RLE."""
        from pycocotools import mask as mask_utils

        annotations = []
        for anns in self._annotations:
            for ann in anns:
                rle = self.coco.annToRLE(ann)
                counts = rle["counts"]
                segmentation = {"size": list(rle["size"]),
                                "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
                area = ann.get("area")
                annotations.append({"id": len(annotations) + 1, "image_id": ann["image_id"],
                                    "category_id": ann["category_id"], "segmentation": segmentation,
                                    "area": float(area) if is_finite_number(area) else float(mask_utils.area(rle)),
                                    "bbox": [float(v) for v in ann["bbox"]],
                                    "iscrowd": int(bool(ann.get("iscrowd", 0)))})
        images = [{"id": img["id"], "file_name": str(img["file_name"]), "height": int(img["height"]),
                   "width": int(img["width"])} for img in self.images]
        return {"info": {"description": f"{self.info.name} {self.split}"}, "images": images,
                "annotations": annotations, "categories": self.info.categories()}


def _xyxy(anns: list[dict], image: dict) -> np.ndarray:
    """Boxes x0, y0, x1, y1 of COCO [x, y, w, h] boxes, clipped to the image."""
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    return np.clip(xyxy, 0, [image["width"], image["height"]] * 2)
