"""torchvision's segmentation state dicts in zoo networks: FCN, DeepLabV3 and LR-ASPP are built with
torchvision's module layout, so its files (`torch.save(model.state_dict())`, or the reference
training scripts' `{"model": ...}`) load key for key with strict=True, and a user who fine-tuned one
elsewhere builds an engine from it directly. Which zoo options reproduce which torchvision builder is
the table below; tests/models/test_torchvision_fidelity.py holds the zoo to torchvision's layouts."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from edgeseg.errors import CheckpointError

# (zoo model, backbone) -> (torchvision builder, zoo options, the final classifier's weight key)
VARIANTS: dict[tuple[str, str | None], tuple[str, dict[str, Any], str]] = {
    ("fcn", "resnet50"): ("fcn_resnet50", {"backbone": "resnet50"}, "classifier.4.weight"),
    ("fcn", "resnet101"): ("fcn_resnet101", {"backbone": "resnet101"}, "classifier.4.weight"),
    ("deeplabv3", "resnet50"): ("deeplabv3_resnet50", {"backbone": "resnet50", "output_stride": 8,
                                                        "multi_grid": False}, "classifier.4.weight"),
    ("deeplabv3", "resnet101"): ("deeplabv3_resnet101", {"backbone": "resnet101", "output_stride": 8,
                                                          "multi_grid": False}, "classifier.4.weight"),
    ("deeplabv3", "mobilenetv3_large"): ("deeplabv3_mobilenet_v3_large", {
        "backbone": "mobilenetv3_large", "atrous_rates": [12, 24, 36]}, "classifier.4.weight"),
    ("lraspp", None): ("lraspp_mobilenet_v3_large", {}, "classifier.high_classifier.weight"),
    ("lraspp", "mobilenetv3_large"): ("lraspp_mobilenet_v3_large", {}, "classifier.high_classifier.weight"),
}


def variant(model: str, backbone: str | None) -> tuple[str, dict[str, Any], str]:
    key = (model, backbone)
    if key not in VARIANTS:
        known = ", ".join(f"--model {m}" + (f" --backbone {b}" if b else "") for m, b in VARIANTS)
        raise CheckpointError(f"no torchvision segmentation network is a '{model}'"
                              + (f" with backbone '{backbone}'" if backbone else " without --backbone"),
                              f"torchvision's state dicts build as: {known}")
    return VARIANTS[key]


def build_from_torchvision(path: str | os.PathLike, model: str, backbone: str | None) -> tuple[nn.Module, dict]:
    """The zoo network for torchvision's `model`/`backbone` with the file's weights (strict, weights_only);
    its class count and auxiliary head are read from the file. Returns (network, payload-like record)."""
    from edgeseg.models import build
    from edgeseg.models.weights import load_weights, read_weights

    builder, options, classifier = variant(model, backbone)
    state = read_weights(path)
    if classifier not in state:
        raise CheckpointError(f"{path} has no '{classifier}': it is not a torchvision {builder} state dict",
                              "pass the --model and --backbone it was trained as (see `edgeseg models`)")
    num_classes = int(state[classifier].shape[0])
    options = {**options, **({"aux": True} if any(k.startswith("aux_classifier.") for k in state) else {})}
    network = build(model, num_classes, **options)
    load_weights(network, state, source=f"torchvision {builder} weights {path}")
    return network.eval(), {"model": model, "options": options, "num_classes": num_classes, "torchvision": builder}
