"""Backbone registry: name -> builder. Each backbone returns a dict of named stage outputs,
exposes `channels` (stage name -> channels), `set_output_stride` and `imagenet_key` (how a key of
torchvision's ImageNet file maps to ours)."""

from __future__ import annotations

from typing import Iterable

from torch import nn

from edgeseg.errors import UnknownNameError
from edgeseg.models.backbones.mobilenetv2 import mobilenetv2
from edgeseg.models.backbones.mobilenetv3 import mobilenetv3_large
from edgeseg.models.backbones.resnet import resnet50, resnet101
from edgeseg.models.backbones.vgg import vgg16, vgg16_bn
from edgeseg.models.backbones.xception import xception65

BACKBONES = {
    "vgg16": vgg16,
    "vgg16_bn": vgg16_bn,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "mobilenetv2": mobilenetv2,
    "mobilenetv3_large": mobilenetv3_large,
    "xception65": xception65,
}


def build_backbone(name: str, allowed: Iterable[str], pretrained: str | None = None, **options) -> nn.Module:
    """Build backbone `name` (one of `allowed` for the calling model), optionally loading ImageNet weights."""
    allowed = tuple(allowed)
    if name not in allowed:
        raise UnknownNameError("backbone", name, allowed)
    backbone = BACKBONES[name](**options)
    if pretrained is not None:
        from edgeseg.models.weights import load_backbone_weights

        load_backbone_weights(backbone, pretrained)
    return backbone
