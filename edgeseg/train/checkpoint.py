"""edgeseg checkpoints: weights plus plain-data metadata (model, options, dataset), saved atomically
and read only with weights_only=True."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from edgeseg.errors import CheckpointError
from edgeseg.io import atomic_path
from edgeseg.models.weights import load_weights


def save(path: str | os.PathLike, model: nn.Module, metadata: dict[str, Any] | None = None,
         overwrite: bool = False, train_state: dict[str, Any] | None = None) -> None:
    """Save weights plus plain-data metadata (model name, options, classes...) atomically.

    Everything stored is tensors, numbers, strings, lists and dicts, so weights_only=True reads it.
    """
    payload = {
        "format": "edgeseg-checkpoint/1",
        "model": getattr(model, "edgeseg_name", None),
        "options": getattr(model, "edgeseg_options", {}),
        "num_classes": getattr(model, "num_classes", None),
        "metadata": metadata or {},
        "state_dict": model.state_dict(),
    }
    if train_state is not None:  # optimizer/scheduler state for --resume
        payload["train_state"] = train_state
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read an edgeseg checkpoint (weights_only) and check its format."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist", "check the path, or train one with `edgeseg train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}".splitlines()[0],
                              "the file is truncated or not an edgeseg checkpoint; re-save or re-train it") from None
    if not isinstance(payload, dict) or payload.get("format") != "edgeseg-checkpoint/1":
        raise CheckpointError(f"{path} is not an edgeseg checkpoint",
                              "for a plain state dict use edgeseg.models.weights.read_weights + load_weights")
    return payload


def build_from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network a checkpoint was saved from and load its weights."""
    from edgeseg.models import build

    payload = load(path)
    model = build(payload["model"], payload["num_classes"], **payload["options"])
    load_weights(model, payload["state_dict"], source=f"checkpoint {path}")
    return model, payload
