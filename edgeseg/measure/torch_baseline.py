"""`edgeseg bench --baseline-torch`: the PyTorch eager FP32 run of the checkpoint an engine was built from.

The only bench path that imports torch. The checkpoint is the one the engine's manifest records
(model.checkpoint: absolute path and sha256); its hash is checked first, so the baseline is the same
weights the engine was built from, not whatever file now sits at that path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.manifest import Manifest
from edgeseg.runtime.session import LoadOptions, Session


def recorded_checkpoint(manifest: Manifest) -> Path:
    """The checkpoint file the manifest names, hash-verified."""
    from edgeseg.io import sha256_file

    info = manifest.model.get("checkpoint") or {}
    if manifest.random_weights or not info.get("path"):
        raise EdgesegError(f"engine {manifest.name} records no checkpoint (built with --random-weights?)",
                           "drop --baseline-torch, or bench an engine built with --checkpoint")
    path = Path(info["path"])
    if not path.is_file():
        raise EdgesegError(f"the checkpoint engine {manifest.name} was built from, {path}, is missing",
                           "restore the file, or drop --baseline-torch")
    if info.get("sha256") and sha256_file(path) != info["sha256"]:
        raise EdgesegError(f"{path} changed since engine {manifest.name} was built (sha256 differs)",
                           "rebuild the engine from this checkpoint, or restore the original file")
    return path


def open_torch_baseline(manifest: Manifest, options: LoadOptions) -> tuple[Session, Path]:
    """A torch Session over the recorded checkpoint, taking the same frames as the engine."""
    import torch

    from edgeseg.backends.torch.session import TorchSession

    checkpoint = recorded_checkpoint(manifest)
    twin = dataclasses.replace(
        manifest, backend={"name": "torch", "version": torch.__version__, "device": "cpu"},
        precision={"requested": "fp32", "as_run": "fp32"})
    return TorchSession(twin, checkpoint.parent, options, checkpoint=checkpoint), checkpoint
