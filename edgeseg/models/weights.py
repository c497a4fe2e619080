"""Weight files into zoo networks: read only with weights_only=True, and checked key by key against
the model before anything is copied, so a mismatch is named instead of half-loaded.

Lives with the models (the backbones load ImageNet files through it); edgeseg's own checkpoints
(weights plus metadata) are edgeseg.train.checkpoint.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

from edgeseg.errors import CheckpointError

_NESTED = ("state_dict", "model", "model_state")


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (or a checkpoint holding one) without unpickling arbitrary objects."""
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist", "check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files, pickles with code, non-torch files
        raise CheckpointError(f"cannot read weights from {path}: {exc}".splitlines()[0],
                              "pass a file saved with torch.save(model.state_dict(), path)") from None
    for key in _NESTED:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors",
                              "pass a file saved with torch.save(model.state_dict(), path)")
    return dict(obj)


def _sample(keys, n: int = 3) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming missing/unexpected keys and shape mismatches (class count first)."""
    expected = model.state_dict()
    # BatchNorm fills a missing num_batches_tracked itself; files from before PyTorch 0.4.1 (torchvision's
    # original ImageNet ResNet/VGG-BN weights among them) lack it, and load fine with strict=True.
    missing = {k for k in expected.keys() - state.keys() if not k.endswith("num_batches_tracked")}
    unexpected = state.keys() - expected.keys()
    shapes = {k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape}
    classes = getattr(model, "num_classes", None)
    for key in sorted(shapes):
        got, want = tuple(state[key].shape), tuple(expected[key].shape)
        if classes is not None and want and want[0] == classes and got[0] != classes and len(got) == len(want):
            raise CheckpointError(
                f"{source} has {got[0]} classes but the model was built with {classes} (at {key})",
                f"build the model with num_classes={got[0]}, or fine-tune from it with a new classifier")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_sample(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_sample(unexpected)}")
    if shapes:
        key = sorted(shapes)[0]
        problems.append(f"{len(shapes)} shape mismatches, e.g. {key}: file {tuple(state[key].shape)} "
                        f"vs model {tuple(expected[key].shape)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems),
                              "check that the model name, backbone and options match the ones it was trained with")


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
    return model


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Load an ImageNet classification file in torchvision's format into a zoo backbone.

    The backbone maps each file key to its own (`imagenet_key`); the classifier keys map to None.
    """
    state = read_weights(path)
    mapped = {}
    for key, value in state.items():
        ours = backbone.imagenet_key(key)
        if ours is not None:
            mapped[ours] = value
    if not mapped:
        raise CheckpointError(f"{path} has no keys that belong to a {type(backbone).__name__} backbone",
                              "pass an ImageNet classification checkpoint in torchvision's format for this backbone")
    load_weights(backbone, mapped, source=f"backbone weights {path}")
