"""Eager PyTorch: the reference every engine is compared with, and the baseline for speed.

Its artifact is the checkpoint itself; it runs the same DeployModel (fused preprocessing and argmax)
that export traces, so it sees exactly what the engines see.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..manifest import Manifest
from .base import Availability, BuildSpec, Built, LoadOptions, Session

NAME = "torch"
ENGINE_FILE = "model.pt"


def availability() -> Availability:
    try:
        import torch
    except ImportError:
        return Availability(False, None, "torch is not installed (pip install 'edgeseg[torch]')")
    return Availability(True, torch.__version__, devices=("cpu",) + (("cuda",) if torch.cuda.is_available() else ()))


def build(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> Built:
    import torch

    if spec.precision != "fp32":
        raise BadInputError(f"the torch reference runs fp32 only, not {spec.precision}",
                            "use --precision fp32 with --backend torch")
    if not spec.checkpoint:
        raise BadInputError("the torch backend needs the checkpoint", "pass --checkpoint PATH")
    shutil.copyfile(spec.checkpoint, out_dir / ENGINE_FILE)
    return Built([ENGINE_FILE], "fp32", "cpu", torch.__version__)


class TorchSession(Session):
    def __init__(self, manifest: Manifest, root: Path, options: LoadOptions, checkpoint: Path | None = None) -> None:
        """`checkpoint` overrides `root / model.pt`: bench --baseline-torch runs the checkpoint another
        backend's engine was built from (its path and sha256 are in that engine's manifest)."""
        import torch

        from ..checkpoint import build_from_checkpoint
        from ..export import DeployModel

        super().__init__(manifest)
        if options.threads:
            torch.set_num_threads(options.threads)
        model, _ = build_from_checkpoint(checkpoint or root / ENGINE_FILE)
        self._host_preprocess = False  # DeployModel normalizes in torch, whatever the engine graph does
        self._model = DeployModel(model, len(manifest.classes), manifest.input.mean, manifest.input.std,
                                  fuse_preprocess=True, fuse_argmax=manifest.output.kind == "labels").eval()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).numpy()


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    return TorchSession(manifest, root, options)
