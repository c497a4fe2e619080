"""Small building blocks shared by several families, written so they export to ONNX as static graphs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv -> BatchNorm -> ReLU; the conv has no bias because BN supplies it."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 groups: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel - 1) // 2, dilation, groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class FCNHead(nn.Sequential):
    """torchvision's FCN head (3x3 conv to in/4, BN, ReLU, dropout, 1x1 classifier); also the aux head."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )


def upsample_to(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize with half-pixel centres (align_corners=False), ONNX Resize's default semantics."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _adaptive_pool_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    # Bin i covers [floor(i*size/bins), ceil((i+1)*size/bins)), exactly as torch's adaptive pooling.
    i = torch.arange(bins, device=like.device)
    start = (i * size) // bins
    end = ((i + 1) * size + bins - 1) // bins
    pos = torch.arange(size, device=like.device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    weights = inside.to(like.dtype)
    return weights / weights.sum(dim=1, keepdim=True)


def adaptive_avg_pool(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling as two small matmuls.

    Equal to F.adaptive_avg_pool2d(x, bins) for every input size, but also exportable when the
    bins do not divide the feature size (PSPNet's bins 3 and 6 at 360x480), where ONNX has no op.
    """
    h, w = x.shape[-2:]
    rows = _adaptive_pool_matrix(h, bins, x)  # bins x H
    cols = _adaptive_pool_matrix(w, bins, x)  # bins x W
    return rows @ x @ cols.transpose(0, 1)


def max_unpool(x: torch.Tensor, indices: torch.Tensor, output_size) -> torch.Tensor:
    """Place pooled values back at their max-pooling positions (SegNet's decoder), zeros elsewhere.

    Equal to F.max_unpool2d, written as a scatter so that it exports to ONNX ScatterElements.
    """
    n, c = x.shape[:2]
    h, w = output_size
    flat = x.new_zeros(n, c, h * w)
    flat = flat.scatter(2, indices.flatten(2), x.flatten(2))
    return flat.view(n, c, h, w)


class SeparableConv2d(nn.Sequential):
    """Depthwise conv -> BN -> pointwise conv -> BN (-> ReLU): DeepLabV3+'s separable convolution."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cin, kernel, stride, dilation * (kernel - 1) // 2, dilation, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
