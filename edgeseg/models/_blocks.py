"""Small building blocks shared by several families, written so they export to ONNX as static graphs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

PYRAMID_BINS = (1, 2, 3, 6)  # PSPNet's, kept by Fast-SCNN


class ConvNormAct(nn.Sequential):
    """Conv -> norm -> activation, children 0, 1, 2 as torchvision's Conv2dNormActivation (whose ImageNet
    keys the MobileNets load). The conv has no bias because the norm supplies it; odd kernels keep the size."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
                 act: Callable[..., nn.Module] | None = nn.ReLU6, dilation: int = 1) -> None:
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 * dilation, dilation, groups, bias=False),
                  norm(cout)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class ConvBNReLU(ConvNormAct):
    """Conv -> BatchNorm -> ReLU (or no activation): the zoo's own layers, in the argument order they read best in."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 groups: int = 1, relu: bool = True) -> None:
        super().__init__(cin, cout, kernel, stride, groups, act=nn.ReLU if relu else None, dilation=dilation)


class FCNHead(nn.Sequential):
    """torchvision's FCN head (3x3 conv to in/4, BN, ReLU, dropout, 1x1 classifier); also the aux head,
    and PSPNet's head after its pyramid (there the conv goes to 512)."""

    def __init__(self, in_channels: int, num_classes: int, inter_channels: int | None = None) -> None:
        inter = in_channels // 4 if inter_channels is None else inter_channels
        super().__init__(*ConvBNReLU(in_channels, inter, 3), nn.Dropout(0.1), nn.Conv2d(inter, num_classes, 1))


def he_init_convs(module: nn.Module) -> None:
    """He-normal init of every conv in `module`: fan_in for depthwise convs (their real fan-in, 9; torch's
    fan_out for them counts every channel) and fan_out for the rest. For the nets trained from scratch
    (Fast-SCNN, Xception-65), whose signal PyTorch's default init lets fade along the depthwise stacks."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            mode = "fan_in" if conv.groups > 1 else "fan_out"
            nn.init.kaiming_normal_(conv.weight, mode=mode, nonlinearity="relu")


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
    """Depthwise conv -> BN (-> ReLU) -> pointwise conv -> BN (-> ReLU): DeepLabV3+'s separable convolution.

    One flat Sequential (children 0..4, or 0..5 with `depthwise_relu`), the layout checkpoints name.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 relu: bool = True, depthwise_relu: bool = False) -> None:
        super().__init__(*ConvBNReLU(cin, cin, kernel, stride, dilation, groups=cin, relu=depthwise_relu),
                         *ConvBNReLU(cin, cout, 1, relu=relu))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module, also Fast-SCNN's: per bin, average-pool to bin x bin, 1x1 conv to
    in/len(bins) channels + BN + ReLU, upsample back; concatenate with the input (2 x in channels).

    With `out_channels` (Fast-SCNN) a 1x1 conv + BN + ReLU projects the concatenation to that width;
    without (PSPNet) `project` is the identity and the head takes all 2 x in channels.
    Pooling uses `adaptive_avg_pool` (matmul form): equal to F.adaptive_avg_pool2d, but it exports
    to ONNX also when a bin does not divide the feature size (bins 3 and 6 on most inputs).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, bins: Sequence[int] = PYRAMID_BINS) -> None:
        super().__init__()
        self.bins = tuple(bins)
        inter = in_channels // len(self.bins)
        self.stages = nn.ModuleList(ConvBNReLU(in_channels, inter, 1) for _ in self.bins)
        concat = in_channels + inter * len(self.bins)
        self.project: nn.Module = nn.Identity() if out_channels is None else ConvBNReLU(concat, out_channels, 1)
        self.out_channels = concat if out_channels is None else out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [upsample_to(stage(adaptive_avg_pool(x, b)), size) for b, stage in zip(self.bins, self.stages)]
        return self.project(torch.cat([x, *pooled], dim=1))
