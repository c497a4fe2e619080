"""LR-ASPP (Howard et al., Searching for MobileNetV3, ICCV 2019) with torchvision's module names."""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models import ModelEntry
from edgeseg.models._base import SegmentationNet
from edgeseg.models._blocks import ConvBNReLU, upsample_to
from edgeseg.models.backbones import build_backbone


class LRASPPHead(nn.Module):
    """Lite R-ASPP: a 1x1 conv branch gated by a pooled sigmoid branch, plus a stride-8 skip."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128) -> None:
        super().__init__()
        self.cbr = ConvBNReLU(high_channels, inter_channels, 1)
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                   nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = upsample_to(self.cbr(high) * self.scale(high), low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(SegmentationNet):
    """MobileNetV3-Large (output stride 16, last stage dilated) + LR-ASPP head.

    Deviation from the paper, shared with torchvision: the gating branch pools globally instead
    of the paper's 49x49 average pooling with stride (16, 20), which was tied to 1024x2048 training
    crops; global pooling is resolution independent and exports as one GlobalAveragePool.
    The low-level skip is the output of the first stride-8 block (40 ch), as in torchvision.
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = LRASPPHead(backbone.channels["low"], backbone.channels["out"], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.backbone(x)
        out = self.classifier(features["low"], features["out"])
        return self.package_outputs(upsample_to(out, x.shape[-2:]))


def lraspp(num_classes: int, *, backbone: str = "mobilenetv3_large", pretrained_backbone: str | None = None) -> LRASPP:
    net = build_backbone(backbone, ("mobilenetv3_large",), pretrained_backbone, output_stride=16)
    return LRASPP(net, num_classes)


MODELS = [
    ModelEntry("lraspp", "lraspp", lraspp, ("mobilenetv3_large",),
               "Howard et al., Searching for MobileNetV3, ICCV 2019"),
]
