"""ResNet-50/101 (v1.5: stride on the 3x3 conv) with torchvision's module names.

Keeping torchvision's names (conv1, bn1, layer1..layer4, downsample.0/1) is what lets an ImageNet
file in torchvision's format, and torchvision's FCN/DeepLabV3 checkpoints, load with strict=True.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from edgeseg.models._base import atrous_plan, set_dilation

_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _make_layer(cin: int, planes: int, blocks: int, stride: int, norm: Callable[[int], nn.Module]) -> nn.Sequential:
    downsample = None
    if stride != 1 or cin != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), norm(planes * 4))
    layers = [Bottleneck(cin, planes, stride, downsample, norm)]
    layers += [Bottleneck(planes * 4, planes, norm=norm) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """Feature extractor: returns {"layer1": stride 4, ..., "layer4": output stride} feature maps."""

    channels = {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}

    def __init__(self, depth_name: str, output_stride: int = 32, multi_grid: Sequence[int] | None = None,
                 return_layers: Sequence[str] = ("layer1", "layer2", "layer3", "layer4"),
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        blocks = _LAYERS[depth_name]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _make_layer(64, 64, blocks[0], 1, norm)
        self.layer2 = _make_layer(256, 128, blocks[1], 2, norm)
        self.layer3 = _make_layer(512, 256, blocks[2], 2, norm)
        self.layer4 = _make_layer(1024, 512, blocks[3], 2, norm)
        self.return_layers = tuple(return_layers)
        self.output_stride = 32
        self.set_output_stride(output_stride, multi_grid)

    def set_output_stride(self, output_stride: int, multi_grid: Sequence[int] | None = None) -> None:
        """Turn the strides of layer3/layer4 into dilations (weights untouched).

        Follows torchvision: the first block of a dilated layer keeps the previous dilation.
        `multi_grid` (DeepLabV3's (1, 2, 4)) multiplies layer4's per-block rates.
        """
        layer3, layer4 = atrous_plan((True, True), output_stride, stride=8, owner="ResNet")
        self._configure(self.layer3, *layer3)
        grid = tuple(multi_grid) if multi_grid else None
        self._configure(self.layer4, *layer4, grid=grid)
        self.output_stride = output_stride

    @staticmethod
    def _configure(layer: nn.Sequential, stride: int, first_rate: int, rate: int, grid=None) -> None:
        layer[0].conv2.stride = (stride, stride)
        layer[0].downsample[0].stride = (stride, stride)
        for i, block in enumerate(layer):
            if grid is not None:  # DeepLabV3 multi-grid: every unit gets rate * grid[i]
                block_rate = rate * grid[i % len(grid)]
            else:
                block_rate = first_rate if i == 0 else rate
            set_dilation(block.conv2, block_rate)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        last = self.return_layers[-1]
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            if name in self.return_layers:
                features[name] = x
            if name == last:
                break
        return features

    @staticmethod
    def imagenet_key(key: str) -> str | None:
        """Map a key of torchvision's ImageNet ResNet file to ours; None for the classifier (fc)."""
        return None if key.startswith("fc.") else key


def resnet50(**options) -> ResNet:
    return ResNet("resnet50", **options)


def resnet101(**options) -> ResNet:
    return ResNet("resnet101", **options)
