"""MobileNetV2 feature extractor with torchvision's child indices (features.N in ImageNet files)."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from edgeseg.models._blocks import ConvNormAct
from edgeseg.models.backbones._mobile import StagedSequential

# expansion t, channels c, repeats n, first stride s (Sandler et al., Table 2)
_CONFIG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(cin, hidden, 1))
        layers += [ConvNormAct(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout
        self.downsamples = stride == 2
        self.out_channels = cout

    @property
    def spatial_conv(self) -> nn.Conv2d:
        return self.conv[-3][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(StagedSequential):
    """Children 0..17 (stem and inverted residuals); torchvision's last 1x1 conv (18) is left out,
    as in DeepLabV3+'s MobileNetV2 variant, so the output has 320 channels."""

    def __init__(self, return_layers: Mapping[int, str] = {3: "low", 17: "out"}, output_stride: int = 32) -> None:
        layers: list[nn.Module] = [ConvNormAct(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in _CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        super().__init__(layers, return_layers)
        self.set_output_stride(output_stride)

    @staticmethod
    def imagenet_key(key: str) -> str | None:
        """torchvision's `features.N.*` -> `N.*`; the 1280-channel conv (18) and classifier are unused."""
        if not key.startswith("features.") or key.startswith("features.18."):
            return None
        return key[len("features."):]


def mobilenetv2(**options) -> MobileNetV2:
    return MobileNetV2(**options)
