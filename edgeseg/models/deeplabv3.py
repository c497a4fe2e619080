"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution") and DeepLabV3+ (Chen et al. 2018).

DeepLabV3 keeps torchvision's module names (backbone / classifier / aux_classifier, ASPP's
convs/project), so torchvision's deeplabv3_* checkpoints load with strict=True.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from edgeseg.errors import BadInputError
from edgeseg.models import ModelEntry
from edgeseg.models._base import BackboneHeadNet, OutputStrideSwitch, SegmentationNet, set_dilation
from edgeseg.models._blocks import ConvBNReLU, FCNHead, SeparableConv2d, upsample_to
from edgeseg.models.backbones import build_backbone

# The paper's ASPP rates at each output stride (rates double when the stride halves).
_RATES = {16: (6, 12, 18), 8: (12, 24, 36), 32: (3, 6, 9)}


class ASPPConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, rate: int, separable: bool = False) -> None:
        if separable:
            super().__init__(*SeparableConv2d(cin, cout, 3, dilation=rate))
        else:
            super().__init__(*ConvBNReLU(cin, cout, 3, dilation=rate))

    def set_rate(self, rate: int) -> None:
        set_dilation(self[0], rate)


class ASPPPooling(nn.Sequential):
    """Image-level features: global average, 1x1 conv, BN, ReLU, broadcast back to the map size."""

    def __init__(self, cin: int, cout: int) -> None:
        # not ConvBNReLU: its in-place ReLU before the expand renames the exported Expand node
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Bilinear upsampling of a 1x1 map is a broadcast; expand says so and exports as one Expand.
        return super().forward(x).expand(-1, -1, h, w)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 conv, three atrous 3x3 convs, image pooling; concat; 1x1."""

    def __init__(self, cin: int, rates: Sequence[int], cout: int = 256, dropout: float = 0.5,
                 separable: bool = False) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvBNReLU(cin, cout, 1)]
        branches += [ASPPConv(cin, cout, rate, separable) for rate in rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*ConvBNReLU(len(branches) * cout, cout, 1), nn.Dropout(dropout))

    def set_rates(self, rates: Sequence[int]) -> None:
        for branch, rate in zip(self.convs[1:-1], rates):
            branch.set_rate(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """torchvision's DeepLabV3 head: ASPP, 3x3 conv, BN, ReLU, 1x1 classifier."""

    def __init__(self, cin: int, num_classes: int, rates: Sequence[int]) -> None:
        super().__init__(ASPP(cin, rates), *ConvBNReLU(256, 256, 3), nn.Conv2d(256, num_classes, 1))


class _AtrousNet(OutputStrideSwitch, SegmentationNet):
    """Shared output-stride handling: the backbone's strides and the ASPP rates move together."""

    aspp: ASPP
    output_strides = tuple(sorted(_RATES))  # the strides the paper's ASPP rates are given for

    def _init_stride(self, output_stride: int, multi_grid, atrous_rates: Sequence[int] | None) -> tuple[int, ...]:
        """Record what set_output_stride needs; return the ASPP rates to build with."""
        self._multi_grid = multi_grid
        self._fixed_rates = tuple(atrous_rates) if atrous_rates else None  # user rates do not follow the stride
        return self._fixed_rates or _RATES[output_stride]

    def set_output_stride(self, output_stride: int) -> None:
        """Switch between output stride 8 and 16 (train at 16, infer at 8); weights are untouched."""
        self.validate_output_stride(output_stride)
        if hasattr(self.backbone, "layer4"):
            self.backbone.set_output_stride(output_stride, self._multi_grid)
        else:
            self.backbone.set_output_stride(output_stride)
        self.aspp.set_rates(self._fixed_rates or _RATES[output_stride])


_V3_FEATURES = {  # backbone -> (out key, aux key, low-level key)
    "resnet50": ("layer4", "layer3", "layer1"),
    "resnet101": ("layer4", "layer3", "layer1"),
    "mobilenetv3_large": ("out", "low", None),
    "mobilenetv2": ("out", None, "low"),
    "xception65": ("out", None, "low"),
}


def _backbone(name: str, allowed: Sequence[str], output_stride: int, multi_grid, pretrained, keys) -> nn.Module:
    options: dict = {"output_stride": output_stride}
    if name.startswith("resnet"):
        options["multi_grid"] = multi_grid
        options["return_layers"] = tuple(k for k in ("layer1", "layer2", "layer3", "layer4") if k in keys)
    return build_backbone(name, allowed, pretrained, **options)


class DeepLabV3(_AtrousNet, BackboneHeadNet):
    """DeepLabV3: dilated backbone + ASPP with image-level pooling and BN, optional aux FCN head.

    Paper form: output stride 16 for training with rates (6, 12, 18), 8 for inference with
    (12, 24, 36); ResNet's block4 uses multi-grid (1, 2, 4). torchvision's models equal
    output_stride=8, multi_grid=False (ResNet) and atrous_rates=(12, 24, 36) (MobileNetV3).
    Deviation: ASPP's image-pooling branch broadcasts instead of bilinear-upsampling a 1x1 map
    (identical values).
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, backbone_name: str, num_classes: int, output_stride: int,
                 multi_grid, atrous_rates, aux: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        rates = self._init_stride(output_stride, multi_grid, atrous_rates)
        self.out_key, self.aux_key, _ = _V3_FEATURES[backbone_name]
        self.backbone = backbone
        self.classifier = DeepLabHead(backbone.channels[self.out_key], num_classes, rates)
        self.aux_classifier = FCNHead(backbone.channels[self.aux_key], num_classes) if aux else None

    @property
    def aspp(self) -> ASPP:
        return self.classifier[0]


def deeplabv3(num_classes: int, *, backbone: str = "resnet101", output_stride: int = 16,
              multi_grid: bool | None = None, atrous_rates: Sequence[int] | None = None, aux: bool = False,
              pretrained_backbone: str | None = None) -> DeepLabV3:
    """multi_grid defaults to True on ResNet (the paper's (1, 2, 4)); MobileNetV3 has no block4 for it."""
    allowed = ("resnet50", "resnet101", "mobilenetv3_large")
    if multi_grid and not backbone.startswith("resnet"):
        raise BadInputError(f"multi_grid applies to ResNet backbones, not {backbone}", "drop multi_grid")
    grid = (1, 2, 4) if (multi_grid is None or multi_grid) and backbone.startswith("resnet") else None
    keys = _V3_FEATURES.get(backbone, ("", "", ""))
    DeepLabV3.validate_output_stride(output_stride)
    net = _backbone(backbone, allowed, output_stride, grid, pretrained_backbone, keys)
    return DeepLabV3(net, backbone, num_classes, output_stride, grid, atrous_rates, aux)


class DeepLabV3PlusDecoder(nn.Module):
    """Low-level 1x1 projection to 48 channels, concat with the upsampled ASPP output, two 3x3 convs."""

    def __init__(self, low_channels: int, num_classes: int, separable: bool) -> None:
        super().__init__()
        self.project = ConvBNReLU(low_channels, 48, 1)
        if separable:
            self.fuse = nn.Sequential(SeparableConv2d(304, 256), SeparableConv2d(256, 256))
        else:
            self.fuse = nn.Sequential(*ConvBNReLU(304, 256, 3), *ConvBNReLU(256, 256, 3))
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, encoded: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        encoded = upsample_to(encoded, low.shape[-2:])
        return self.classifier(self.fuse(torch.cat([encoded, self.project(low)], dim=1)))


class DeepLabV3Plus(_AtrousNet):
    """DeepLabV3+: the DeepLabV3 encoder (ASPP, 256 ch) plus a decoder on stride-4 features.

    Paper form; Xception-65 uses depthwise-separable convolutions in ASPP and the decoder
    (`separable`, default on for xception65 and, as an edge-oriented choice, mobilenetv2). The MobileNetV2 variant takes its low-level
    features at stride 4 (24 ch) and drops MobileNetV2's final 1280-ch conv, as common ports do.
    Deviations: ASPP dropout 0.1 (the reference TF code's); the image-pooling branch broadcasts.
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, backbone_name: str, num_classes: int, output_stride: int,
                 atrous_rates, separable: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        rates = self._init_stride(output_stride, None, atrous_rates)
        self._out, _, self._low = _V3_FEATURES[backbone_name]
        self.backbone = backbone
        self.encoder_head = ASPP(backbone.channels[self._out], rates, dropout=0.1, separable=separable)
        self.decoder = DeepLabV3PlusDecoder(backbone.channels[self._low], num_classes, separable)

    @property
    def aspp(self) -> ASPP:
        return self.encoder_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.backbone(x)
        logits = self.decoder(self.encoder_head(features[self._out]), features[self._low])
        return self.package_outputs(upsample_to(logits, x.shape[-2:]))


def deeplabv3plus(num_classes: int, *, backbone: str = "resnet101", output_stride: int = 16,
                  separable: bool | None = None, atrous_rates: Sequence[int] | None = None,
                  pretrained_backbone: str | None = None) -> DeepLabV3Plus:
    allowed = ("resnet50", "resnet101", "mobilenetv2", "xception65")
    keys = _V3_FEATURES.get(backbone, ("", "", ""))
    DeepLabV3Plus.validate_output_stride(output_stride)
    net = _backbone(backbone, allowed, output_stride, None, pretrained_backbone, keys)
    # Separable ASPP/decoder: the paper's form for Xception; for MobileNetV2 it is what keeps the decoder
    # from costing 4x the rest of the network (17.4 vs 3.7 GMACs at 360x480).
    separable = backbone in ("xception65", "mobilenetv2") if separable is None else separable
    return DeepLabV3Plus(net, backbone, num_classes, output_stride, atrous_rates, separable)


MODELS = [
    ModelEntry("deeplabv3", "deeplabv3", deeplabv3, ("resnet50", "resnet101", "mobilenetv3_large"),
               "Chen et al., Rethinking Atrous Convolution for Semantic Image Segmentation, 2017"),
    ModelEntry("deeplabv3plus", "deeplabv3plus", deeplabv3plus, ("resnet50", "resnet101", "mobilenetv2", "xception65"),
               "Chen et al., Encoder-Decoder with Atrous Separable Convolution, ECCV 2018"),
]
