"""Your own data: a folder of images and a folder of label PNGs with the same stems, plus a
classes file (one class per line: `name` or `name R G B`)."""

from __future__ import annotations

from pathlib import Path

from edgeseg.data.base import DatasetInfo, PairDataset
from edgeseg.errors import BadInputError
from edgeseg.inputs import path_kind, require_file, require_folder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_files(folder: str | Path) -> list[Path]:
    """The images directly in `folder`, sorted by name: what a calibration set of unlabelled images is.

    An empty folder is refused with a hint: the usual mistake is a dataset's root (its images are in
    split subfolders), which needs a dataset spec instead."""
    folder = require_folder(folder, "image folder", "pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())[:4]
        inside = f" (it holds the folders {', '.join(subfolders)})" if subfolders else ""
        raise BadInputError(f"folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}){inside}",
                            f"pass a folder of images, or a dataset spec such as camvid:{folder}:train")
    return files


def read_classes(path: Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    fix = "write one class name per line (optionally R G B)"
    path = require_file(path, "classes file", fix)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read classes file {path}: {exc}", fix) from None
    names, colours = [], []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
            names.append(parts[0])
            colours.append(tuple(int(p) for p in parts[1:]))
        elif len(parts) == 1:
            names.append(parts[0])
            colours.append(None)
        else:
            raise BadInputError(f"{path}:{number}: cannot read '{line.strip()}'",
                                "write one class per line: a name, optionally followed by its R G B colour")
    if not names:
        raise BadInputError(f"classes file {path} lists no classes", "write one class name per line")
    fallback = [((37 * i) % 256, (91 * i + 60) % 256, (151 * i + 120) % 256) for i in range(len(names))]
    return tuple(names), tuple(c or f for c, f in zip(colours, fallback))


def _find_classes_file(masks: Path) -> Path:
    for candidate in (masks / "classes.txt", masks.parent / "classes.txt"):
        if path_kind(candidate) != "missing":  # a folder named classes.txt is reported as one, not skipped
            return require_file(candidate, "classes file", "write classes.txt (one class name per line)")
    raise BadInputError(f"no classes.txt in {masks} or {masks.parent}",
                        "write classes.txt (one class name per line) or pass folder:IMAGES,MASKS,CLASSES_FILE")


def folder(images: str | Path, masks: str | Path, classes_file: str | Path | None = None,
           ignore_index: int = 255) -> PairDataset:
    images, masks = Path(images), Path(masks)
    for path, what in ((images, "images"), (masks, "masks")):
        require_folder(path, f"{what} folder", "pass folder:IMAGES_DIR,MASKS_DIR")
    if classes_file:
        classes_file = require_file(classes_file, "classes file", "write one class name per line (optionally R G B)")
    names, palette = read_classes(Path(classes_file) if classes_file else _find_classes_file(masks))
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(p, masks / f"{p.stem}.png") for p in files]
    info = DatasetInfo(name=f"folder:{images.name}", classes=names, palette=palette, ignore_index=ignore_index)
    return PairDataset(info, pairs, split="all")
