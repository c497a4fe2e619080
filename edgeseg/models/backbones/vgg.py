"""VGG-16 and VGG-16-BN feature extractors with torchvision's child indices.

`features` is an nn.Sequential laid out exactly as torchvision's (`features.N` in ImageNet files),
so an ImageNet file loads key for key. FCN, SegNet and DeepLab-LargeFOV read the pooling outputs;
SegNet also needs each pool's argmax indices and input size for its unpooling decoder.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from edgeseg.models._base import atrous_plan, set_dilation

_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_POOLS = ("pool1", "pool2", "pool3", "pool4", "pool5")


class VGG(nn.Module):
    """The 13 convolutions and 5 max-pools of VGG-16; returns the chosen pooling outputs by name.

    With `return_indices`, forward also returns "<pool>_indices" (argmax positions, as
    F.max_pool2d gives them) and "<pool>_size" (the pool's input H, W) for every pool.
    """

    channels = {"pool1": 64, "pool2": 128, "pool3": 256, "pool4": 512, "pool5": 512}

    def __init__(self, batch_norm: bool = False, return_pools: Sequence[str] = ("pool3", "pool4", "pool5"),
                 ceil_mode: bool = False, return_indices: bool = False, output_stride: int = 32) -> None:
        super().__init__()
        for name in return_pools:
            if name not in _POOLS:
                raise ValueError(f"unknown VGG pool '{name}': choose from {', '.join(_POOLS)}")
        layers: list[nn.Module] = []
        self.pool_index: dict[str, int] = {}  # pool name -> index in `features`
        cin = 3
        for value in _CONFIG:
            if value == "M":
                self.pool_index[_POOLS[len(self.pool_index)]] = len(layers)
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode, return_indices=return_indices))
                continue
            layers.append(nn.Conv2d(cin, value, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(value))
            layers.append(nn.ReLU(inplace=True))
            cin = value
        self.features = nn.Sequential(*layers)
        self.return_pools = tuple(return_pools)
        self.ceil_mode = ceil_mode
        self.return_indices = return_indices
        self._names = {index: name for name, index in self.pool_index.items()}
        # children past the last pool anyone needs are not run (they still hold ImageNet weights)
        self._last = max(self.pool_index[p] for p in _POOLS) if return_indices else \
            max(self.pool_index[p] for p in self.return_pools)
        self.output_stride = 32
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """DeepLab's way to a denser output: a pool that stops striding becomes 3x3 stride 1 (pad 1),
        and the convolutions after a removed stride are dilated to keep their field of view."""
        pool4, pool5 = atrous_plan((True, True), output_stride, stride=8, owner="VGG")
        for name, (stride, _, _) in (("pool4", pool4), ("pool5", pool5)):
            if stride == 2:
                pool = nn.MaxPool2d(2, 2, ceil_mode=self.ceil_mode, return_indices=self.return_indices)
            else:
                pool = nn.MaxPool2d(3, 1, 1, ceil_mode=self.ceil_mode, return_indices=self.return_indices)
            self.features[self.pool_index[name]] = pool
        rate = pool4[2]  # conv5 follows pool4 (fc6's rate is the head's own)
        for index in range(self.pool_index["pool4"] + 1, self.pool_index["pool5"]):
            if isinstance(self.features[index], nn.Conv2d):
                set_dilation(self.features[index], rate)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | torch.Size]:
        out: dict[str, torch.Tensor | torch.Size] = {}
        for index, layer in enumerate(self.features):
            name = self._names.get(index)
            if name is None:
                x = layer(x)
            elif self.return_indices:
                out[f"{name}_size"] = x.shape[-2:]
                x, out[f"{name}_indices"] = layer(x)
            else:
                x = layer(x)
            if name in self.return_pools:
                out[name] = x
            if index == self._last:
                break
        return out

    @staticmethod
    def imagenet_key(key: str) -> str | None:
        """torchvision's `features.N.*` keys are ours; the classifier (fc6-fc8) is not part of the backbone."""
        return key if key.startswith("features.") else None


def vgg16(**options) -> VGG:
    return VGG(batch_norm=False, **options)


def vgg16_bn(**options) -> VGG:
    return VGG(batch_norm=True, **options)
