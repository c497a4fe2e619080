"""What MobileNetV2 and V3 share: channel rounding, stage outputs picked by index (like torchvision's
IntermediateLayerGetter) and the stride switch. Their conv-norm-activation is _blocks.ConvNormAct."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from edgeseg.models._base import atrous_plan, set_dilation


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (keeps ImageNet checkpoints' shapes)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class StagedSequential(nn.Sequential):
    """A Sequential feature extractor that returns the outputs of chosen children by index."""

    def __init__(self, layers: list[nn.Module], return_layers: Mapping[int, str]) -> None:
        last = max(return_layers)
        super().__init__(*layers[: last + 1])  # children past the last output are dropped, as torchvision does
        self.return_layers = {str(i): name for i, name in return_layers.items()}
        self.channels = {name: layers[i].out_channels for i, name in return_layers.items()}

    def set_output_stride(self, output_stride: int) -> None:
        """Blocks expose `spatial_conv` (their 3x3/5x5 conv) and `downsamples` (stride 2 in the original net).

        torchvision's rule: a block that stops striding is dilated already (the plan's dilation out).
        """
        blocks = [m for m in self if hasattr(m, "spatial_conv")]
        # stride 2 after the stem's strided conv
        plan = atrous_plan([m.downsamples for m in blocks], output_stride, stride=2, owner=type(self).__name__)
        for block, (stride, _, dilation) in zip(blocks, plan):
            block.spatial_conv.stride = (stride, stride)
            set_dilation(block.spatial_conv, dilation)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for index, module in self.named_children():
            x = module(x)
            if index in self.return_layers:
                features[self.return_layers[index]] = x
        return features
