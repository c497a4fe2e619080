"""The feature pyramid (Lin et al. 2017) over a ResNet or MobileNetV3 body, with torchvision's names
(`backbone.body.*`, `backbone.fpn.inner_blocks.i.0`, `layer_blocks.i.0`) so its checkpoints load."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.backbones.mobilenetv3 import MobileNetV3Large
from edgeseg.models.backbones.resnet import ResNet


class ConvNorm(nn.Sequential):
    """torchvision's Conv2dNormActivation without activation: conv (bias only without a norm), norm."""

    def __init__(self, cin: int, cout: int, kernel: int, norm: Callable[[int], nn.Module] | None) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, bias=norm is None)]
        if norm is not None:
            layers.append(norm(cout))
        super().__init__(*layers)


class FeaturePyramidNetwork(nn.Module):
    """Lateral 1x1 convs, a nearest-neighbour top-down path and 3x3 output convs; plus a max-pooled level
    ('pool', torchvision's LastLevelMaxPool) that only the RPN uses."""

    def __init__(self, in_channels: list[int], out_channels: int = 256,
                 norm: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(ConvNorm(c, out_channels, 1, norm) for c in in_channels)
        self.layer_blocks = nn.ModuleList(ConvNorm(out_channels, out_channels, 3, norm) for _ in in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, features: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        names, x = list(features), list(features.values())
        last_inner = self.inner_blocks[-1](x[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(x) - 2, -1, -1):
            lateral = self.inner_blocks[idx](x[idx])
            last_inner = lateral + F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[idx](last_inner))
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return OrderedDict(zip(names + ["pool"], results))


class BackboneWithFPN(nn.Module):
    """`body` returns named stage outputs ('0', '1', ...); the pyramid keeps the names."""

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int = 256,
                 norm: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, norm)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict(self.body(x)))


class _ResNetBody(ResNet):
    """ResNet stages returned as '0'..'3' (torchvision's IntermediateLayerGetter names)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {str(i): v for i, v in enumerate(super().forward(x).values())}


def resnet50_fpn(norm: Callable[[int], nn.Module], fpn_norm: Callable[[int], nn.Module] | None,
                 trainable_layers: int = 3) -> BackboneWithFPN:
    body = _ResNetBody("resnet50", norm=norm)
    freeze_resnet_layers(body, trainable_layers)
    return BackboneWithFPN(body, [256, 512, 1024, 2048], 256, fpn_norm)


def freeze_resnet_layers(body: nn.Module, trainable_layers: int) -> None:
    """torchvision's rule: train the last `trainable_layers` of layer4..layer1, conv1 (the 5th)."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be 0..5, got {trainable_layers}")
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        train.append("bn1")
    for name, parameter in body.named_parameters():
        if all(not name.startswith(layer) for layer in train):
            parameter.requires_grad_(False)


# MobileNetV3-Large: torchvision's `_mobilenet_extractor` returns the first block of the last stage (13,
# stride 32) and the last conv (16), the two last of its stage starts [0, 2, 4, 7, 13, 16].
MOBILENET_RETURN = {13: "0", 16: "1"}
MOBILENET_STAGE_STARTS = (0, 2, 4, 7, 13, 16)


def mobilenetv3_large_fpn(norm: Callable[[int], nn.Module], trainable_layers: int = 3) -> BackboneWithFPN:
    body = MobileNetV3Large(return_layers=MOBILENET_RETURN, output_stride=32, norm=norm)
    if not 0 <= trainable_layers <= 6:
        raise ValueError(f"trainable_layers must be 0..6, got {trainable_layers}")
    first_trained = len(body) if trainable_layers == 0 else MOBILENET_STAGE_STARTS[-trainable_layers]
    for index, block in enumerate(body):
        if index < first_trained:
            block.requires_grad_(False)
    channels = [body[i].out_channels for i in MOBILENET_RETURN]
    return BackboneWithFPN(body, channels, 256, None)
