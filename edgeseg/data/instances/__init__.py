"""Instance-segmentation datasets (Mask R-CNN's data), named by one spec string like the semantic ones.

    coco:ANNOTATIONS.json:IMAGES_DIR[:split]   any dataset in the COCO instances format
    cityscapes-instances:ROOT[:split]          Cityscapes fine, its 8 instance classes
    synthetic-instances[:N][:split]            procedural road scenes: car, pedestrian, bicyclist (the
                                               embedded default; N defaults to 200 for train, 50 otherwise)

Every source gives `InstanceSample`s in torchvision's detection conventions and its split as one COCO
ground truth (`coco_ground_truth()`), so `edgeseg.measure.instance_metrics` scores them all the same way.
Kept apart from `parse_spec`: a semantic dataset cannot train an instance model, nor the reverse.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.data import KINDS as SEMANTIC_KINDS
from edgeseg.data import SPLITS, _split_off
from edgeseg.data.instances.base import (
    Annotations,
    DroppedAnnotationsWarning,
    FirstImages,
    InstanceDataset,
    InstanceInfo,
    InstanceSample,
    masks_to_boxes,
)
from edgeseg.errors import BadInputError, UnknownNameError

INSTANCE_KINDS = ("coco", "cityscapes-instances", "synthetic-instances")


def first(dataset: InstanceDataset, count: int) -> InstanceDataset:
    return FirstImages(dataset, count)


def parse_instance_spec(spec: str, split: str = "train") -> InstanceDataset:
    """Open the instance dataset a spec names; `split` is used when the spec does not give one."""
    kind, _, rest = spec.partition(":")
    if kind not in INSTANCE_KINDS:
        _refuse(kind, spec)
    if kind == "synthetic-instances":
        return _synthetic(rest, split, spec)
    if kind == "coco":
        return _coco(rest, split, spec)
    from edgeseg.data.instances.cityscapes import CityscapesInstances

    path, split = _split_off(rest, split, spec, kind)
    if not path:
        raise BadInputError(f"'{spec}' names no folder", f"write {kind}:PATH[:split]")
    return CityscapesInstances(path, split)


def _refuse(kind: str, spec: str) -> None:
    """An error for a spec of no instance kind, with the spec that was probably meant."""
    if kind in SEMANTIC_KINDS:
        meant = {"cityscapes": "cityscapes-instances:PATH", "synthetic": "synthetic-instances"}.get(
            kind, "coco:ANNOTATIONS.json:IMAGES_DIR")
        raise BadInputError(f"'{kind}' is a semantic segmentation dataset: it has no instances",
                            f"write {meant} (instance kinds: {', '.join(INSTANCE_KINDS)})")
    if spec and Path(spec).is_dir():
        meant = f"cityscapes-instances:{spec}:val" if (Path(spec) / "leftImg8bit").is_dir() else \
            f"coco:ANNOTATIONS.json:{spec} or cityscapes-instances:{spec}"
        raise BadInputError(f"'{spec}' is a folder, not a dataset spec (which names the dataset's format)",
                            f"write {meant}")
    raise UnknownNameError("instance dataset kind", kind, INSTANCE_KINDS)


def _coco(rest: str, split: str, spec: str) -> InstanceDataset:
    from edgeseg.data.instances.coco import CocoInstances

    parts = rest.split(":")
    if len(parts) == 3 and parts[2] in SPLITS:
        split = parts.pop()
    if len(parts) != 2 or not all(parts):
        raise BadInputError(f"cannot read '{spec}'", "write coco:ANNOTATIONS.json:IMAGES_DIR[:split]")
    return CocoInstances(parts[0], parts[1], split)


def _synthetic(rest: str, split: str, spec: str) -> InstanceDataset:
    from edgeseg.data.instances.synthetic import SyntheticInstanceScenes

    count, split = _split_off(rest, split, spec, "synthetic-instances", paths=False)
    if not count:  # held-out splits are smaller by default, as for `synthetic`
        return SyntheticInstanceScenes(count=200 if split == "train" else 50, split=split)
    if not count.isdigit() or int(count) < 1:
        raise BadInputError(f"cannot read the image count '{count}' of synthetic-instances",
                            "write synthetic-instances:N with N of 1 or more, e.g. synthetic-instances:200")
    return SyntheticInstanceScenes(count=int(count), split=split)


__all__ = ["Annotations", "DroppedAnnotationsWarning", "FirstImages", "INSTANCE_KINDS", "first", "InstanceDataset", "InstanceInfo",
           "InstanceSample", "masks_to_boxes", "parse_instance_spec"]
