"""The torch reference session: the checkpoint through the same DeployModel the engines were exported from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.manifest import Manifest
from edgeseg.runtime.session import LoadOptions, Session

ENGINE_FILE = "model.pt"


class TorchSession(Session):
    def __init__(self, manifest: Manifest, root: Path, options: LoadOptions, checkpoint: Path | None = None) -> None:
        """`checkpoint` overrides `root / model.pt`: bench --baseline-torch runs the checkpoint another
        backend's engine was built from (its path and sha256 are in that engine's manifest)."""
        import torch

        from edgeseg.build.export import DeployModel
        from edgeseg.train.checkpoint import build_from_checkpoint

        super().__init__(manifest)
        if options.threads:
            torch.set_num_threads(options.threads)
        model, _ = build_from_checkpoint(checkpoint or root / ENGINE_FILE, task=None)
        self._host_preprocess = False  # DeployModel normalizes in torch, whatever the engine graph does
        if self.detects_instances:  # the module the instance graph was exported from, at the engine's size
            from edgeseg.models.maskrcnn.deploy import DeployMaskRCNN, at_size

            self._model = DeployMaskRCNN(at_size(model, manifest.input.size), manifest.input.size).eval()
            return
        self._model = DeployModel(model, len(manifest.classes), manifest.input.mean, manifest.input.std,
                                  fuse_preprocess=True, fuse_argmax=manifest.output.kind == "labels").eval()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).numpy()

    def _run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            return [out.numpy() for out in self._model(torch.from_numpy(batch))]


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    return TorchSession(manifest, root, options)
