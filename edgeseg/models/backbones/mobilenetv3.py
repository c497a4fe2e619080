"""MobileNetV3-Large feature extractor, child for child torchvision's `features` (Howard et al. 2019)."""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping

import torch
from torch import nn

from edgeseg.models._blocks import ConvNormAct
from edgeseg.models.backbones._mobile import StagedSequential, make_divisible

# in, kernel, expanded, out, squeeze-excite, hard-swish, stride (Howard et al., Table 1)
_LARGE = [
    (16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2), (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2), (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1), (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1), (160, 5, 960, 160, True, True, 1),
]
# torchvision's MobileNetV3 batch norm settings; checkpoints trained with them expect them at inference
_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hswish: bool, stride: int,
                 norm: Callable[[int], nn.Module] = _NORM) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvNormAct(cin, expanded, 1, norm=norm, act=act))
        self._spatial = len(layers)
        layers.append(ConvNormAct(expanded, expanded, kernel, stride, groups=expanded, norm=norm, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(ConvNormAct(expanded, cout, 1, norm=norm, act=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout
        self.downsamples = stride == 2
        self.out_channels = cout

    @property
    def spatial_conv(self) -> nn.Conv2d:
        return self.block[self._spatial][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV3Large(StagedSequential):
    """Children 0..16 like torchvision's `features`; default output stride 16 (torchvision's `dilated=True`)."""

    def __init__(self, return_layers: Mapping[int, str] = {4: "low", 16: "out"}, output_stride: int = 16,
                 norm: Callable[[int], nn.Module] = _NORM) -> None:
        layers: list[nn.Module] = [ConvNormAct(3, 16, 3, 2, norm=norm, act=nn.Hardswish)]
        layers += [InvertedResidual(*cfg, norm=norm) for cfg in _LARGE]
        layers.append(ConvNormAct(160, 960, 1, norm=norm, act=nn.Hardswish))
        super().__init__(layers, return_layers)
        self.set_output_stride(output_stride)

    @staticmethod
    def imagenet_key(key: str) -> str | None:
        """torchvision's `features.N.*` -> `N.*`; the ImageNet classifier is unused."""
        return key[len("features."):] if key.startswith("features.") else None


def mobilenetv3_large(**options) -> MobileNetV3Large:
    return MobileNetV3Large(**options)
