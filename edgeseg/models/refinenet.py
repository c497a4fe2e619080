"""RefineNet (Lin et al., CVPR 2017) and Light-Weight RefineNet (Nekrasov et al., BMVC 2018).

Both cascade from the stride-32 backbone output down to stride 4: each level fuses the coarser
level's output with the backbone features of its own stride, then pools context with chained
residual pooling. The backbone keeps its strides (output stride 32): resolution is recovered by
the cascade, not by dilation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models import ModelEntry
from edgeseg.models._base import SegmentationNet
from edgeseg.models._blocks import upsample_to
from edgeseg.models.backbones import build_backbone

_LEVELS = ("layer1", "layer2", "layer3", "layer4")  # strides 4, 8, 16, 32
# MobileNetV2 children ending each stride (24, 32, 96, 320 ch), named like ResNet's stages
_MOBILENETV2_LEVELS = {3: "layer1", 6: "layer2", 13: "layer3", 17: "layer4"}


def _conv(cin: int, cout: int, kernel: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)


class ResidualConvUnit(nn.Module):
    """RCU: ReLU -> 3x3 conv -> ReLU -> 3x3 conv, plus identity. No BN (removed in the paper)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, 3, bias=True)
        self.conv2 = _conv(channels, channels, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ChainedResidualPooling(nn.Module):
    """ReLU, then a chain of (5x5 stride-1 max-pool -> conv) stages, each stage's output added to the sum.

    Stride 1 keeps the size; pooling the previous stage's output grows the context window per stage.
    """

    def __init__(self, channels: int, stages: int, kernel: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(_conv(channels, channels, kernel) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        path = x
        for conv in self.convs:
            path = conv(self.pool(path))
            x = x + path
        return x


class MultiResolutionFusion(nn.Module):
    """A 3x3 conv per path to the smallest width, upsample to the largest resolution (the first path's), sum."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(c, out_channels, 3) for c in in_channels)

    def forward(self, paths: list[torch.Tensor]) -> torch.Tensor:
        size = paths[0].shape[-2:]
        out = self.convs[0](paths[0])
        for conv, path in zip(self.convs[1:], paths[1:]):
            out = out + upsample_to(conv(path), size)
        return out


class RefineNetBlock(nn.Module):
    """Adaptive convs (2 RCUs per path), multi-resolution fusion, chained residual pooling, output RCU.

    Paths are ordered finest first (the backbone skip, then the coarser level's output); a single
    path (RefineNet-4) skips the fusion.
    """

    def __init__(self, in_channels: Sequence[int], crp_stages: int) -> None:
        super().__init__()
        out = min(in_channels)
        self.adapt = nn.ModuleList(nn.Sequential(ResidualConvUnit(c), ResidualConvUnit(c)) for c in in_channels)
        self.fusion = MultiResolutionFusion(in_channels, out) if len(in_channels) > 1 else None
        self.crp = ChainedResidualPooling(out, crp_stages, 3)
        self.out_conv = ResidualConvUnit(out)

    def forward(self, paths: list[torch.Tensor]) -> torch.Tensor:
        paths = [adapt(p) for adapt, p in zip(self.adapt, paths)]
        x = paths[0] if self.fusion is None else self.fusion(paths)
        return self.out_conv(self.crp(x))


class RefineNet(SegmentationNet):
    """RefineNet-4-cascaded: four RefineNet blocks from the stride-32 ResNet output down to stride 4.

    Paper form: 512 channels on the layer4 path, 256 elsewhere; RCUs without BN; chained residual
    pooling with 2 stages of 5x5 max-pool + 3x3 conv (the paper's Fig. 2 and text use two pooling
    blocks; the authors' later code and Light-Weight RefineNet use 4); the last block's output
    (stride 4) goes through 2 RCUs and a 1x1 classifier, then bilinear upsampling to the input.
    Deviations: a 3x3 conv (no bias) first reduces each backbone output to its path width (the
    paper's figures leave the reduction implicit; its widths need one); dropout 0.1 before the
    classifier (not in the paper); torchvision's ResNet v1.5; bilinear resizing with half-pixel
    centres (align_corners=False), to any skip size rather than a fixed factor of 2.
    """

    min_input_size = 32
    crp_stages = 2

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        widths = (256, 256, 256, 512)
        self.reduce = nn.ModuleList(_conv(backbone.channels[k], w, 3) for k, w in zip(_LEVELS, widths))
        self.refine4 = RefineNetBlock((512,), self.crp_stages)
        self.refine3 = RefineNetBlock((256, 512), self.crp_stages)
        self.refine2 = RefineNetBlock((256, 256), self.crp_stages)
        self.refine1 = RefineNetBlock((256, 256), self.crp_stages)
        self.classifier = nn.Sequential(ResidualConvUnit(256), ResidualConvUnit(256), nn.Dropout(0.1),
                                        nn.Conv2d(256, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.backbone(x)
        l1, l2, l3, l4 = (conv(features[k]) for conv, k in zip(self.reduce, _LEVELS))
        y = self.refine4([l4])
        y = self.refine3([l3, y])
        y = self.refine2([l2, y])
        y = self.refine1([l1, y])
        return self.package_outputs(upsample_to(self.classifier(y), x.shape[-2:]))


class LightWeightLevel(nn.Module):
    """One Light-Weight RefineNet level: [1x1 on the skip + coarser path] -> ReLU -> CRP (4 x 1x1)
    -> 1x1 to the next level's width (the next fusion's conv for this path, applied before upsampling)."""

    def __init__(self, width: int, next_width: int | None, fuse_skip: bool, crp_stages: int = 4) -> None:
        super().__init__()
        self.skip_conv = _conv(width, width, 1) if fuse_skip else None
        self.crp = ChainedResidualPooling(width, crp_stages, 1)
        self.out_conv = _conv(width, next_width, 1) if next_width is not None else None

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
        x = skip if coarse is None else self.skip_conv(skip) + upsample_to(coarse, skip.shape[-2:])
        x = self.crp(x)
        return x if self.out_conv is None else self.out_conv(x)


class LightWeightRefineNet(SegmentationNet):
    """Light-Weight RefineNet: RefineNet without RCUs, with 1x1 convs in fusion and CRP (4 stages).

    Paper form (and the authors' code): 1x1 reductions of the backbone outputs to 512 (stride 32)
    and 256 channels; per level, 1x1 fusion convs, sum, ReLU, CRP of 4 stages of 5x5 max-pool +
    1x1 conv; dropout 0.5 on the two coarsest backbone outputs during training; a 3x3 classifier on
    the stride-4 output, then bilinear upsampling. With MobileNetV2 all widths are 256.
    Deviations: the MobileNetV2 variant takes one feature per stride (blocks ending at strides 4, 8,
    16, 32: 24, 32, 96, 320 ch) and uses the ResNet cascade; the paper's variant also sums in the 64-
    and 160-ch block outputs at strides 16 and 32. Bilinear resizing with half-pixel centres to the
    skip's size (the authors' code uses align_corners=True).
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, num_classes: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.reduce = nn.ModuleList(_conv(backbone.channels[k], w, 1) for k, w in zip(_LEVELS, widths))
        self.dropout = nn.Dropout(0.5)
        self.level4 = LightWeightLevel(widths[3], widths[2], fuse_skip=False)
        self.level3 = LightWeightLevel(widths[2], widths[1], fuse_skip=True)
        self.level2 = LightWeightLevel(widths[1], widths[0], fuse_skip=True)
        self.level1 = LightWeightLevel(widths[0], None, fuse_skip=True)
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.backbone(x)
        l1, l2 = features["layer1"], features["layer2"]
        l3, l4 = self.dropout(features["layer3"]), self.dropout(features["layer4"])
        l1, l2, l3, l4 = (conv(f) for conv, f in zip(self.reduce, (l1, l2, l3, l4)))
        y = self.level4(l4)
        y = self.level3(l3, y)
        y = self.level2(l2, y)
        y = self.level1(l1, y)
        return self.package_outputs(upsample_to(self.classifier(y), x.shape[-2:]))


def _backbone(name: str, allowed: Sequence[str], pretrained: str | None) -> nn.Module:
    options: dict = {"output_stride": 32}
    if name == "mobilenetv2":
        options["return_layers"] = _MOBILENETV2_LEVELS
    return build_backbone(name, allowed, pretrained, **options)


def refinenet(num_classes: int, *, backbone: str = "resnet101",
              pretrained_backbone: str | None = None) -> RefineNet:
    return RefineNet(_backbone(backbone, ("resnet50", "resnet101"), pretrained_backbone), num_classes)


def refinenet_lw(num_classes: int, *, backbone: str = "resnet50",
                 pretrained_backbone: str | None = None) -> LightWeightRefineNet:
    net = _backbone(backbone, ("resnet50", "resnet101", "mobilenetv2"), pretrained_backbone)
    widths = (256, 256, 256, 256) if backbone == "mobilenetv2" else (256, 256, 256, 512)
    return LightWeightRefineNet(net, num_classes, widths)


MODELS = [
    ModelEntry("refinenet", "refinenet", refinenet, ("resnet50", "resnet101"),
               "Lin et al., RefineNet: Multi-Path Refinement Networks for High-Resolution Semantic "
               "Segmentation, CVPR 2017"),
    ModelEntry("refinenet_lw", "refinenet_lw", refinenet_lw, ("resnet50", "resnet101", "mobilenetv2"),
               "Nekrasov et al., Light-Weight RefineNet for Real-Time Semantic Segmentation, BMVC 2018"),
]
