"""What MobileNetV2 and V3 share: torchvision's Conv2dNormActivation layout, channel rounding,
stage outputs picked by index (like torchvision's IntermediateLayerGetter) and the stride switch."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from edgeseg.models._base import set_dilation


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (keeps ImageNet checkpoints' shapes)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormAct(nn.Sequential):
    """torchvision's Conv2dNormActivation: children 0 (conv), 1 (norm), 2 (activation, if any)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
                 act: Callable[..., nn.Module] | None = nn.ReLU6, dilation: int = 1) -> None:
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 * dilation, dilation, groups, bias=False),
                  norm(cout)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class StagedSequential(nn.Sequential):
    """A Sequential feature extractor that returns the outputs of chosen children by index."""

    def __init__(self, layers: list[nn.Module], return_layers: Mapping[int, str]) -> None:
        last = max(return_layers)
        super().__init__(*layers[: last + 1])  # children past the last output are dropped, as torchvision does
        self.return_layers = {str(i): name for i, name in return_layers.items()}
        self.channels = {name: layers[i].out_channels for i, name in return_layers.items()}

    def set_output_stride(self, output_stride: int) -> None:
        """Blocks expose `spatial_conv` (their 3x3/5x5 conv) and `downsamples` (stride 2 in the original net)."""
        blocks = [(m.spatial_conv, m.downsamples) for m in self if hasattr(m, "spatial_conv")]
        configure_strides(blocks, output_stride)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for index, module in self.named_children():
            x = module(x)
            if index in self.return_layers:
                features[self.return_layers[index]] = x
        return features


def configure_strides(blocks: list[tuple[nn.Conv2d, bool]], output_stride: int, stem_stride: int = 2) -> None:
    """Set stride and dilation of each block's spatial conv so the net reaches `output_stride`.

    `blocks` is (spatial conv, downsamples in the original net) per block in order. Once the
    target stride is reached, a downsampling block keeps stride 1 and the dilation doubles from it on.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    stride, dilation = stem_stride, 1
    for conv, downsamples in blocks:
        if downsamples and stride >= output_stride:
            dilation *= 2
            conv.stride = (1, 1)
        elif downsamples:
            stride *= 2
            conv.stride = (2, 2)
        set_dilation(conv, dilation)
