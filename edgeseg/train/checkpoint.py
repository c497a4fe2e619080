"""edgeseg checkpoints: weights plus plain-data metadata (model, options, dataset), saved atomically
and read only with weights_only=True."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from edgeseg.errors import CheckpointError, reraise_interrupt
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


class NotEdgesegCheckpoint(CheckpointError):
    """A readable file without edgeseg's format: a plain state dict, perhaps torchvision's."""


CHECKPOINT_FIX = "check the path, or train one with `edgeseg train`"
DAMAGED_FIX = "the file was edited, damaged or not written by edgeseg: re-save or re-train it"


def load(path: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Read an edgeseg checkpoint (weights_only) and check it against its schema: every key the rest of
    edgeseg reads, of the right type; finite weights; a class count that agrees with the dataset in its
    metadata. Refusals are CheckpointErrors naming the key, never a KeyError later. `resume`: the
    training state --resume continues from must be there too (best.pt has none)."""
    from edgeseg.inputs import require_file

    require_file(path, "checkpoint", CHECKPOINT_FIX, CheckpointError)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reraise_interrupt(exc)
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}".splitlines()[0],
                              "the file is truncated or not an edgeseg checkpoint; re-save or re-train it") from None
    if not isinstance(payload, dict) or payload.get("format") != "edgeseg-checkpoint/1":
        raise NotEdgesegCheckpoint(f"{path} is not an edgeseg checkpoint",
                              "for a plain state dict use edgeseg.models.weights.read_weights + load_weights")
    _check_payload(payload, f"checkpoint {path}")
    if resume and "train_state" not in payload:
        raise CheckpointError(f"checkpoint {path} holds no training state to resume from",
                              "resume from the run's last.pt, or start a new run without --resume")
    return payload


def _check_payload(payload: dict[str, Any], source: str) -> None:
    """The schema of a checkpoint, in place: `options` and `metadata` default to {} when absent."""
    for key in ("model", "num_classes", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{source} has no '{key}'", DAMAGED_FIX)
    if not isinstance(payload["model"], str) or not payload["model"]:
        _wrong(source, "model", payload["model"], "a model name")
    classes = payload["num_classes"]
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        _wrong(source, "num_classes", classes, "a positive whole number")
    payload.setdefault("options", {})
    payload.setdefault("metadata", {})
    _check_options(payload["options"], source)
    if not isinstance(payload["metadata"], dict):
        _wrong(source, "metadata", payload["metadata"], "a dict")
    _check_state(payload["state_dict"], source)
    _check_metadata(payload["metadata"], classes, source)
    if "train_state" in payload:
        _check_train_state(payload, source)


def _wrong(source: str, key: str, value: object, should: str) -> None:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise CheckpointError(f"{source}: {key} is {shown}, not {should}", DAMAGED_FIX)


_PLAIN = (type(None), bool, int, float, str)


def _check_options(options: object, source: str) -> None:
    """Builder keyword arguments: names to plain values (numbers, strings, lists of them)."""
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        _wrong(source, "options", options, "a dict of option names to values")
    for name, value in options.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, _PLAIN) for v in items):
            _wrong(source, f"options.{name}", value, "a number, string or list of them")


def _check_state(state: object, source: str) -> None:
    """Names to tensors, at least one, all floating-point ones finite."""
    from edgeseg.models.weights import refuse_non_finite

    if not isinstance(state, dict) or not state:
        _wrong(source, "state_dict", type(state).__name__ if isinstance(state, dict) else state,
               "a non-empty dict of tensors")
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        _wrong(source, f"state_dict[{bad!r}]", type(state[bad]).__name__, "a tensor")
    refuse_non_finite(state, source)


def _check_metadata(metadata: dict, num_classes: int, source: str) -> None:
    """The dataset description (classes, palette, ignore index, mean/std) and the input sizes that
    export, eval and build read, and their agreement with the network's class count."""
    dataset = metadata.get("dataset")
    if dataset is not None:
        _check_dataset(dataset, num_classes, source)
    listed = metadata.get("classes")
    if listed is not None:
        if not isinstance(listed, list):
            _wrong(source, "metadata.classes", listed, "a list of class names")
        _agree(num_classes, len(listed), "class names in its metadata", source)
    for key in ("train_crop", "eval_input_size"):
        size = metadata.get(key)
        if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2
                                     and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            _wrong(source, f"metadata.{key}", size, "[height, width] in pixels")


def _check_dataset(dataset: object, num_classes: int, source: str) -> None:
    """metadata.dataset as DatasetInfo.to_dict writes it, with as many classes and colours as outputs."""
    from edgeseg.inputs import is_finite_number

    if not isinstance(dataset, dict):
        _wrong(source, "metadata.dataset", dataset, "a dataset description")
    missing = [k for k in ("name", "classes", "palette", "ignore_index", "mean", "std") if k not in dataset]
    if missing:
        raise CheckpointError(f"{source}: metadata.dataset has no {', '.join(missing)}", DAMAGED_FIX)
    classes, palette = dataset["classes"], dataset["palette"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        _wrong(source, "metadata.dataset.classes", classes, "a list of class names")
    if not isinstance(palette, list) or not all(
            isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette):
        _wrong(source, "metadata.dataset.palette", palette, "a list of [R, G, B] colours")
    ignore = dataset["ignore_index"]
    if not isinstance(ignore, int) or isinstance(ignore, bool) or not 0 <= ignore <= 255:
        _wrong(source, "metadata.dataset.ignore_index", ignore, "a label value from 0 to 255")
    for key in ("mean", "std"):
        value = dataset[key]
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(is_finite_number(v) for v in value)
                and (key == "mean" or all(v > 0 for v in value))):
            _wrong(source, f"metadata.dataset.{key}", value, "three finite numbers" + (" above 0" if key == "std" else ""))
    name = dataset["name"]
    _agree(num_classes, len(classes), f"classes in its metadata ({name})", source)
    _agree(num_classes, len(palette), f"palette colours in its metadata ({name})", source)


def _agree(num_classes: int, count: int, what: str, source: str) -> None:
    """A network with num_classes outputs described by `count` classes/colours is refused: it would be
    built, labelled and scored as `count` classes."""
    if count != num_classes:
        raise CheckpointError(f"{source}: its network predicts {num_classes} classes but it lists {count} {what}",
                              "use the checkpoint `edgeseg train` wrote for this dataset; a network and its class "
                              "list must be saved together")


def _check_train_state(payload: dict[str, Any], source: str) -> None:
    """What --resume reads: the optimizer and scheduler states, the epoch counters, the history."""
    state = payload["train_state"]
    if not isinstance(state, dict):
        _wrong(source, "train_state", state, "a dict")
    missing = [k for k in ("optimizer", "scheduler", "epoch", "best_miou", "best_epoch") if k not in state]
    if missing:
        raise CheckpointError(f"{source}: train_state has no {', '.join(missing)}",
                              "resume from the last.pt `edgeseg train` wrote, or start a new run")
    for key in ("optimizer", "scheduler"):
        if not isinstance(state[key], dict):
            _wrong(source, f"train_state.{key}", type(state[key]).__name__, "a state dict")
    for key in ("epoch", "best_epoch"):
        if not isinstance(state[key], int) or isinstance(state[key], bool):
            _wrong(source, f"train_state.{key}", state[key], "a whole number")
    if not isinstance(payload["metadata"].get("history"), list):
        _wrong(source, "metadata.history", payload["metadata"].get("history"), "a list of epochs")


# Builder options that name a file to open (the ImageNet weights of a backbone). They matter only when
# a network is first built; rebuilt from a checkpoint, its weights come from the state dict.
FILE_OPTIONS = frozenset({"pretrained_backbone"})


def opens_a_file(option: str) -> bool:
    """Whether a builder option names a file: the known ones, and any named like a path or weights."""
    return option in FILE_OPTIONS or option.startswith("pretrained") or option.endswith(
        ("_path", "_file", "_dir", "weights", "checkpoint"))


def rebuild_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options a checkpoint's network is rebuilt with: without any that would open a file, so that
    reading a checkpoint never opens a path written into it."""
    return {name: value for name, value in options.items() if not opens_a_file(name)}


def peek_model(path: str | os.PathLike) -> str | None:
    """The zoo name an edgeseg checkpoint holds (None for another file, e.g. a torchvision state dict):
    what `edgeseg build` dispatches on before it builds anything. Memory-mapped, so the weights are not
    read twice; a file it cannot read is left to `load`, which names the problem."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        reraise_interrupt(exc)
        return None
    if not isinstance(payload, dict) or payload.get("format") != "edgeseg-checkpoint/1":
        return None
    name = payload.get("model")
    return name if isinstance(name, str) else None


def build_from_checkpoint(path: str | os.PathLike, task: str | None = "semantic") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network a checkpoint was saved from and load its weights; a network of another `task`
    than the caller handles is refused before it is built (None: any).

    The payload returned carries the options actually used (file-naming ones dropped)."""
    from edgeseg.errors import EdgesegError
    from edgeseg.models import build, require_task

    payload = load(path)
    if task is not None and isinstance(payload.get("model"), str):
        require_task(payload["model"], task, f"checkpoint {path}")
    payload["options"] = rebuild_options(payload["options"])
    meta = next((k for k, v in payload["state_dict"].items() if v.is_meta), None)
    if meta is not None:
        raise CheckpointError(f"checkpoint {path} holds tensors without values (meta device), e.g. {meta}",
                              "save the checkpoint from a network on the CPU or a GPU")
    try:
        model = build(payload["model"], payload["num_classes"], **payload["options"])
    except EdgesegError:
        raise
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise CheckpointError(f"checkpoint {path}: its options {payload['options']} do not build a "
                              f"{payload['model']} ({exc})", DAMAGED_FIX) from None
    load_weights(model, payload["state_dict"], source=f"checkpoint {path}")
    return model, payload


def compact(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint to ship: floating-point weights in FP16 (half the bytes; they load into FP32 networks
    unchanged in shape), no optimizer state. Measure accuracy on the compacted weights, not the source."""
    from edgeseg.models.weights import refuse_non_finite

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in payload["state_dict"].items()}
    refuse_non_finite(state, "the FP16 copy (a weight beyond FP16's range of 65504)")
    return {**{k: v for k, v in payload.items() if k != "train_state"}, "state_dict": state}
