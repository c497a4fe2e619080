"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from edgeseg.errors import BadInputError
from edgeseg.models import ModelEntry
from edgeseg.models._base import BackboneHeadNet
from edgeseg.models._blocks import FCNHead, adaptive_avg_pool, upsample_to
from edgeseg.models.backbones import build_backbone

BINS = (1, 2, 3, 6)


class PyramidPooling(nn.Module):
    """Pyramid pooling module: per bin, average-pool to bin x bin, 1x1 conv to in/len(bins) channels,
    BN, ReLU, upsample back; concatenate with the input (2 x in channels).

    Pooling uses `adaptive_avg_pool` (matmul form): equal to F.adaptive_avg_pool2d, but it exports
    to ONNX also when a bin does not divide the feature size (bins 3 and 6 on most inputs).
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = BINS) -> None:
        super().__init__()
        self.bins = tuple(bins)
        inter = in_channels // len(self.bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, inter, 1, bias=False), nn.BatchNorm2d(inter), nn.ReLU())
            for _ in self.bins
        )
        self.out_channels = in_channels + inter * len(self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [upsample_to(stage(adaptive_avg_pool(x, bins)), size) for bins, stage in zip(self.bins, self.stages)]
        return torch.cat([x, *pooled], dim=1)


class PSPHead(nn.Sequential):
    """Pyramid pooling, 3x3 conv to 512 + BN + ReLU, dropout 0.1, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        ppm = PyramidPooling(in_channels)
        super().__init__(
            ppm,
            nn.Conv2d(ppm.out_channels, 512, 3, padding=1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(512, num_classes, 1),
        )


class PSPNet(BackboneHeadNet):
    """PSPNet: dilated ResNet (output stride 8) + pyramid pooling (bins 1, 2, 3, 6) + 3x3 conv head.

    Paper form: ResNet-50/101 at output stride 8, PPM with 1/4-width branches concatenated with the
    2048-ch features, 3x3 conv 512 + BN + ReLU, dropout 0.1, 1x1 classifier, bilinear upsampling;
    auxiliary loss on res4b22 (layer3) during training. `aux` defaults to True for that reason; the
    aux head (FCN-style 3x3 conv 1024->256, BN, ReLU, dropout 0.1, 1x1) only runs in training mode.
    Deviations: torchvision's ResNet v1.5 (7x7 stem, stride on the 3x3 conv) instead of the paper's
    deep 3x3 stem ResNet; with BN in the PPM branches, training needs a batch of at least 2 (bin 1
    pools to 1x1). `output_stride` 16 is offered as a cheaper option (not in the paper); the
    smallest input is the output stride (one feature pixel), so `min_input_size` follows it.
    """

    min_input_size = 8

    def __init__(self, backbone: nn.Module, num_classes: int, output_stride: int, aux: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = PSPHead(backbone.channels["layer4"], num_classes)
        self.aux_classifier = FCNHead(backbone.channels["layer3"], num_classes) if aux else None
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Switch between output stride 8 (paper) and 16; weights are untouched."""
        if output_stride not in (8, 16):
            raise BadInputError(f"PSPNet's output_stride must be 8 or 16, got {output_stride}", "use 8 or 16")
        self.backbone.set_output_stride(output_stride)
        self.output_stride = output_stride
        self.min_input_size = output_stride


def pspnet(num_classes: int, *, backbone: str = "resnet50", aux: bool = True, output_stride: int = 8,
           pretrained_backbone: str | None = None) -> PSPNet:
    if output_stride not in (8, 16):
        raise BadInputError(f"PSPNet's output_stride must be 8 or 16, got {output_stride}", "use 8 or 16")
    net = build_backbone(backbone, ("resnet50", "resnet101"), pretrained_backbone, output_stride=output_stride,
                         return_layers=("layer3", "layer4"))
    return PSPNet(net, num_classes, output_stride, aux)


MODELS = [
    ModelEntry("pspnet", "pspnet", pspnet, ("resnet50", "resnet101"),
               "Zhao et al., Pyramid Scene Parsing Network, CVPR 2017"),
]
