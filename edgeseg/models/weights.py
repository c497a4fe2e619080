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

from edgeseg.errors import CheckpointError, reraise_interrupt

_NESTED = ("state_dict", "model", "model_state")


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (or a checkpoint holding one) without unpickling arbitrary objects.

    The path must be a regular file (a directory or FIFO is named as such, not as missing), and every
    floating-point tensor finite: NaN or inf weights make a network that labels everything one class."""
    from edgeseg.inputs import require_file

    require_file(path, "weights file", "pass a file saved with torch.save(model.state_dict(), path)", CheckpointError)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files, pickles with code, non-torch files
        reraise_interrupt(exc)
        raise CheckpointError(f"cannot read weights from {path}: {exc}".splitlines()[0],
                              "pass a file saved with torch.save(model.state_dict(), path)") from None
    for key in _NESTED:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors",
                              "pass a file saved with torch.save(model.state_dict(), path)")
    refuse_non_finite(obj, f"weights file {path}")
    return dict(obj)


def first_non_finite(state: Mapping[str, torch.Tensor]) -> str | None:
    """The first key (in file order) of a floating-point tensor holding NaN or inf; meta tensors hold no
    values and are skipped."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not tensor.is_meta and not bool(torch.isfinite(tensor).all()):
            return key
    return None


def refuse_non_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """CheckpointError naming the first non-finite tensor: such weights build an engine that labels every
    pixel one class, and every later step (export, INT8 ranges, scores) inherits the NaN silently."""
    key = first_non_finite(state)
    if key is not None:
        bad = int((~torch.isfinite(state[key])).sum())
        raise CheckpointError(f"{source} holds non-finite weights (NaN or inf): {key} has {bad} of "
                              f"{state[key].numel()} values non-finite",
                              "the training diverged or the file was damaged: use an earlier checkpoint "
                              "(e.g. best.pt) or retrain with a lower --lr")


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
