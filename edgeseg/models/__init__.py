"""The model zoo: `build(name, num_classes, **options)` and `names()`.

Each family lives in its own module with one builder per variant; this module only gathers
them into one plain registry, so adding a network is adding a builder and an entry in its
family's `MODELS` list.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from edgeseg.errors import BadInputError, UnknownNameError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    backbones: tuple[str, ...] = ()
    paper: str = ""
    task: str = "semantic"  # "semantic": a label per pixel; "instance": boxes, classes, scores, masks

    @property
    def default_backbone(self) -> str | None:
        if not self.backbones:
            return None
        return inspect.signature(self.builder).parameters["backbone"].default

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(p for p in inspect.signature(self.builder).parameters if p != "num_classes")


def _collect() -> dict[str, ModelEntry]:
    from edgeseg.models import deeplab, deeplabv3, fastscnn, fcn, lraspp, maskrcnn, pspnet, refinenet, segnet, unet

    registry: dict[str, ModelEntry] = {}
    for module in (fcn, segnet, unet, pspnet, deeplab, deeplabv3, refinenet, lraspp, fastscnn, maskrcnn):
        for entry in module.MODELS:
            if entry.name in registry:
                raise RuntimeError(f"model '{entry.name}' is registered twice")
            registry[entry.name] = entry
    return registry


_REGISTRY: dict[str, ModelEntry] | None = None


def registry() -> dict[str, ModelEntry]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _collect()
    return _REGISTRY


def names(task: str | None = None) -> list[str]:
    """Every model name `build` accepts, in the registry's order (classic families first); with `task`
    ("semantic" or "instance"), those of that task only."""
    return [name for name, e in registry().items() if task is None or e.task == task]


def entry(name: str) -> ModelEntry:
    try:
        return registry()[name]
    except KeyError:
        raise UnknownNameError("model", name, registry()) from None


# Where an instance network goes when a semantic step is given one.
INSTANCE_STEPS_FIX = ("build an instance engine (`edgeseg build --checkpoint runs/maskrcnn/best.pt`), then "
                      "`edgeseg eval --engine ... --data synthetic-instances:50:val` or `edgeseg stream --engine ...`; "
                      "in PyTorch: `edgeseg eval --checkpoint ... --data synthetic-instances:50:val`")


def task_of(name: str) -> str | None:
    """"semantic" or "instance" for a zoo name; None for a name the zoo does not have."""
    return registry()[name].task if name in registry() else None


def require_task(name: str, task: str, what: str) -> None:
    """Refuse a network of another task (an instance network given to a semantic step, or the reverse)."""
    if name not in registry() or entry(name).task == task:
        return
    found = entry(name).task
    fix = INSTANCE_STEPS_FIX if found == "instance" else "use a semantic step (`edgeseg eval --engine ...`)"
    raise BadInputError(f"{what} is an {found} segmentation network ({name}); this step takes {task} networks",
                        fix)


def build(name: str, num_classes: int, **options) -> nn.Module:
    """Build zoo network `name` with `num_classes` outputs.

    Returns a module that maps N x 3 x H x W float images to N x num_classes x H x W logits in
    eval mode. Options are the builder's keyword arguments (backbone, output_stride, aux, ...).
    """
    model_entry = entry(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise BadInputError(f"num_classes must be a positive integer, got {num_classes!r}",
                            "pass the number of classes of your dataset, e.g. 11 for CamVid")
    valid = model_entry.options
    for option in options:
        if option not in valid:
            raise UnknownNameError(f"option of {name}", option, valid)
    model = model_entry.builder(num_classes=num_classes, **options)
    model.edgeseg_name = name
    # what a checkpoint needs to rebuild the network; the ImageNet file only matters at first build
    model.edgeseg_options = {k: v for k, v in options.items() if k != "pretrained_backbone"}
    return model
