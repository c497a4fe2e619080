"""Fast-SCNN (Poudel et al., "Fast-SCNN: Fast Semantic Segmentation Network", BMVC 2019)."""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models import ModelEntry
from edgeseg.models._base import SegmentationNet
from edgeseg.models._blocks import ConvBNReLU, PyramidPooling, SeparableConv2d, he_init_convs, upsample_to


def _dsconv(cin: int, cout: int, stride: int = 1) -> SeparableConv2d:
    """The paper's DSConv: depthwise 3x3 + BN, pointwise 1x1 + BN + ReLU (no ReLU in between, Sec. 3.2.1)."""
    return SeparableConv2d(cin, cout, 3, stride)


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual with ReLU: 1x1 expand, 3x3 depthwise (strided), linear 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 6) -> None:
        super().__init__()
        hidden = cin * expand
        self.conv = nn.Sequential(
            ConvBNReLU(cin, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            ConvBNReLU(hidden, cout, 1, relu=False),
        )
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*[Bottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(blocks)])


class FeatureFusion(nn.Module):
    """Low-res branch: upsample to the high-res size, depthwise 3x3 (dilation 4) + BN + ReLU, 1x1 + BN;
    high-res branch: 1x1 + BN; add, ReLU."""

    def __init__(self, high_channels: int, low_channels: int, out_channels: int, scale: int = 4) -> None:
        super().__init__()
        self.low_dw = ConvBNReLU(low_channels, low_channels, 3, dilation=scale, groups=low_channels)
        self.low_proj = ConvBNReLU(low_channels, out_channels, 1, relu=False)
        self.high_proj = ConvBNReLU(high_channels, out_channels, 1, relu=False)
        self.relu = nn.ReLU()

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.low_proj(self.low_dw(upsample_to(low, high.shape[-2:])))
        return self.relu(self.high_proj(high) + low)


class AuxHead(nn.Sequential):
    """Training-only aux classifier: 3x3 conv to 32 + BN + ReLU, dropout 0.1, 1x1 (as mmsegmentation's)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(ConvBNReLU(in_channels, 32, 3), nn.Dropout(0.1), nn.Conv2d(32, num_classes, 1))


class FastSCNN(SegmentationNet):
    """Fast-SCNN: a shared learning-to-downsample stem (stride 8) feeding a skip and a stride-32
    global feature extractor, fused once, then a light classifier.

    Paper form (Table 1-3): conv 32 s2, DSConv 48 s2, DSConv 64 s2; bottlenecks t=6: 64x3 s2,
    96x3 s2, 128x3 s1; PPM (bins 1, 2, 3, 6); feature fusion with a dilation-4 depthwise conv on the
    x4-upsampled branch; 2 DSConv 128 + dropout + 1x1 classifier; ReLU everywhere (the paper
    prefers it to ReLU6); bilinear upsampling to the input. 1.14M parameters for 19 classes (the
    paper reports 1.11M; the PPM's internal widths are not given in the paper, we use PSPNet's).
    Aux head (option `aux`, training mode only, returned as "aux"): the paper trains with auxiliary
    losses (weight 0.4) at the end of the learning-to-downsample and of the global feature extractor
    without specifying the heads. Deviations: the zoo's output contract carries one aux output, so
    only the global-feature head is built (its loss also reaches the stem through the global branch),
    as mmsegmentation's head (3x3 conv 32 + BN + ReLU, dropout 0.1, 1x1); the low-res branch is
    resized to the skip's size instead of by a fixed x4, so inputs that are not multiples of 32 work.
    Init (the paper trains from scratch, init unstated): He-normal convs, fan_in for depthwise (fan-in
    9) and fan_out for the rest; PyTorch's default init leaves the global branch ~1e-6 at init.
    """

    min_input_size = 32

    def __init__(self, num_classes: int, aux: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.learning_to_downsample = nn.Sequential(ConvBNReLU(3, 32, 3, 2), _dsconv(32, 48, 2), _dsconv(48, 64, 2))
        self.global_features = nn.Sequential(
            _stage(64, 64, 3, 2), _stage(64, 96, 3, 2), _stage(96, 128, 3, 1), PyramidPooling(128, 128))
        self.fusion = FeatureFusion(64, 128, 128)
        self.classifier = nn.Sequential(_dsconv(128, 128), _dsconv(128, 128), nn.Dropout(0.1),
                                        nn.Conv2d(128, num_classes, 1))
        self.aux_classifier = AuxHead(128, num_classes) if aux else None
        he_init_convs(self)

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        size = x.shape[-2:]
        high = self.learning_to_downsample(x)
        low = self.global_features(high)
        out = upsample_to(self.classifier(self.fusion(high, low)), size)
        aux = None
        if self.aux_classifier is not None and self.training:
            aux = upsample_to(self.aux_classifier(low), size)
        return self.package_outputs(out, aux)


def fastscnn(num_classes: int, *, aux: bool = False) -> FastSCNN:
    return FastSCNN(num_classes, aux)


MODELS = [
    ModelEntry("fastscnn", "fastscnn", fastscnn, (),
               "Poudel et al., Fast-SCNN: Fast Semantic Segmentation Network, BMVC 2019"),
]
