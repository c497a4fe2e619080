"""Reference weights that ship inside the package, so that the two usage lines run on a fresh machine:
`edgeseg build --model deeplabv3plus --precision int8` needs no checkpoint and no calibration flag.

Each entry of `index.json` (written by tools/ship_weights.py) names an FP16 edgeseg checkpoint in this
folder, its sha256, the zoo model and options it builds, and its CamVid val figures; `CARD.md` files
next to it give the recipe. A file is checked against its sha256 before torch reads it. The real CamVid
*train* frames INT8 builds of these weights calibrate on by default are in `calibration/camvid-train/`.

Torch-free: `edgeseg models` and the CLI read the index without loading any weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import CheckpointError, EdgesegError

HERE = Path(__file__).resolve().parent
INDEX = HERE / "index.json"
CALIBRATION = HERE / "calibration" / "camvid-train"
REINSTALL = "reinstall edgeseg (pip install --force-reinstall edgeseg), or pass --checkpoint with your own weights"


@dataclass(frozen=True)
class ShippedWeights:
    """One shipped checkpoint: what it builds and how well it segments CamVid val."""

    key: str  # e.g. "deeplabv3plus-mobilenetv2-camvid"
    model: str  # zoo name
    options: dict[str, Any]  # zoo options it was trained with, e.g. {"backbone": "mobilenetv2"}
    file: str  # checkpoint file name in this folder
    sha256: str
    card: str  # the card's file name in this folder
    dataset: str  # what it was trained on, e.g. "CamVid"
    miou: float  # val mIoU, fraction, of these (FP16-stored) weights
    per_class_iou: dict[str, float | None] = field(default_factory=dict)
    calibration: str | None = None  # folder (relative to this one) of the frames INT8 calibrates on

    @property
    def path(self) -> Path:
        return HERE / self.file

    def describe(self) -> str:
        backbone = self.options.get("backbone")
        return (f"{self.model}{f' ({backbone})' if backbone else ''} trained on {self.dataset}, "
                f"{100 * self.miou:.1f}% val mIoU")

    def verified_path(self) -> Path:
        """The checkpoint's path once its bytes match the index: a damaged install is named, not loaded."""
        from edgeseg.io import sha256_file

        if not self.path.is_file():
            raise CheckpointError(f"the shipped weights {self.path} are missing from this install", REINSTALL)
        actual = sha256_file(self.path)
        if actual != self.sha256:
            raise CheckpointError(f"the shipped weights {self.path} do not match their sha256 in {INDEX.name} "
                                  f"({actual[:12]}... instead of {self.sha256[:12]}...)", REINSTALL)
        return self.path

    def calibration_dir(self) -> Path | None:
        return HERE / self.calibration if self.calibration else None

    def manifest_record(self) -> dict[str, Any]:
        """What an engine's manifest says of the weights it was built from."""
        return {"shipped": self.key, "dataset": self.dataset, "val_miou": self.miou, "sha256": self.sha256}


def shipped() -> dict[str, ShippedWeights]:
    """Every shipped checkpoint by key (empty when this install carries none)."""
    if not INDEX.is_file():
        return {}
    try:
        entries = json.loads(INDEX.read_text())["weights"]
        return {e["key"]: ShippedWeights(**e) for e in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgesegError(f"{INDEX} cannot be read ({exc})", REINSTALL) from None


def for_model(model: str, options: dict[str, Any] | None = None) -> ShippedWeights | None:
    """The shipped weights of `model` whose options include every one given (a backbone, say); None when
    there are none. A model shipped in one variant matches its bare name: `deeplabv3plus` is the
    MobileNetV2 flagship even though the zoo's default backbone is ResNet-101."""
    options = options or {}
    matches = [w for w in shipped().values()
               if w.model == model and all(w.options.get(k) == v for k, v in options.items())]
    return matches[0] if matches else None


def require_for_model(model: str, options: dict[str, Any] | None = None) -> ShippedWeights:
    """for_model, or an error that names what does ship and how to bring one's own weights."""
    found = for_model(model, options)
    if found is not None:
        return found
    wanted = model + "".join(f" {k}={v}" for k, v in (options or {}).items())
    available = ", ".join(sorted(f"{w.model} ({w.options.get('backbone', '-')})" for w in shipped().values()))
    raise EdgesegError(f"no --checkpoint given and no weights ship with edgeseg for {wanted}"
                       + (f" (shipped: {available})" if available else ""),
                       f"train one (`edgeseg train --model {model} --data camvid:PATH --out runs/x`) and pass "
                       "--checkpoint runs/x/best.pt, or pass --random-weights for a speed-only experiment")


def checkpoint_path(name_or_path: str) -> str:
    """A checkpoint argument as a path: an existing path as given, else the verified file of the shipped
    weights it names (`deeplabv3plus`, or a key like `deeplabv3plus-mobilenetv2-camvid`), else as given,
    so that the caller's missing-file error names it."""
    import os

    if os.path.exists(name_or_path):
        return name_or_path
    found = shipped().get(name_or_path) or for_model(name_or_path)
    return str(found.verified_path()) if found else name_or_path
