"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models import ModelEntry
from edgeseg.models._base import SegmentationNet
from edgeseg.models._blocks import upsample_to


class DoubleConv(nn.Sequential):
    """Two 3x3 convs with ReLU (padded; BN between conv and ReLU when asked, then the conv has no bias)."""

    def __init__(self, cin: int, cout: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pool, then a double conv."""

    def __init__(self, cin: int, cout: int, batch_norm: bool) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout, batch_norm))


class Up(nn.Module):
    """Upsample halving the channels, match the skip's size, concatenate, double conv."""

    def __init__(self, cin: int, cout: int, bilinear: bool, batch_norm: bool) -> None:
        super().__init__()
        self.bilinear = bilinear
        if bilinear:  # 1x1 conv then resize: equal to resize then 1x1 conv, on 4x fewer pixels
            self.up = nn.Conv2d(cin, cin // 2, 1)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, 2)
        self.conv = DoubleConv(cin, cout, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h, w = skip.shape[-2:]
        if self.bilinear:
            x = upsample_to(self.up(x), (h, w))
        else:  # 2 * floor(skip / 2): one row/column short on odd sizes, padded as the paper's crop mirrored
            x = self.up(x)
            dh, dw = h - x.shape[-2], w - x.shape[-1]
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(SegmentationNet):
    """U-Net: 4 down steps (64-128-256-512-1024 double 3x3 convs, 2x2 max-pool), 4 up steps
    (2x2 up-convolution halving the channels, concatenation with the skip, double conv), 1x1 classifier.

    Paper form: no batch norm (`batch_norm=True` adds it), He-normal conv init (std sqrt(2/fan_in)).
    Deviations: 3x3 convs are padded, so the output has the input's size (the paper's unpadded
    convs shrink 572 -> 388 and crop the skips); on odd sizes the upsampled map is zero-padded to
    the skip's size; the paper's dropout at the end of the contracting path is left out;
    `bilinear=True` (not in the paper) replaces each up-convolution with a 1x1 conv + bilinear resize.
    """

    min_input_size = 16

    def __init__(self, num_classes: int, bilinear: bool = False, batch_norm: bool = False,
                 widths: tuple[int, ...] = (64, 128, 256, 512, 1024)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.inc = DoubleConv(3, widths[0], batch_norm)
        self.down = nn.ModuleList(Down(a, b, batch_norm) for a, b in zip(widths[:-1], widths[1:]))
        self.up = nn.ModuleList(Up(b, a, bilinear, batch_norm) for a, b in zip(widths[-2::-1], widths[:0:-1]))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        for module in self.modules():  # the paper's init: std sqrt(2 / incoming connections)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.ConvTranspose2d):  # stride = kernel: each output sees one tap per input channel
                nn.init.normal_(module.weight, std=(2 / module.in_channels) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.inc(x)
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        return self.package_outputs(self.classifier(x))


def unet(num_classes: int, *, bilinear: bool = False, batch_norm: bool = False) -> UNet:
    return UNet(num_classes, bilinear=bilinear, batch_norm=batch_norm)


MODELS = [
    ModelEntry("unet", "unet", unet,
               paper="Ronneberger, Fischer & Brox, U-Net: Convolutional Networks for Biomedical Image "
                     "Segmentation, MICCAI 2015"),
]
