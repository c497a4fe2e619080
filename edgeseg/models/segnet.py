"""SegNet and SegNet-Basic (Badrinarayanan, Kendall & Cipolla, TPAMI 2017).

The decoder upsamples with the encoder's max-pooling indices (`max_unpool`, an ONNX-exportable
scatter) into the pre-pooling size, so odd feature sizes (CamVid's 360x480) round-trip exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models import ModelEntry
from edgeseg.models._base import SegmentationNet
from edgeseg.models._blocks import max_unpool
from edgeseg.models.backbones import build_backbone

_POOLS = ("pool1", "pool2", "pool3", "pool4", "pool5")
# decoder stage per pool, deepest first: channels of each 3x3 conv's output (mirror of VGG-16's convs)
_DECODER = {"pool5": (512, 512, 512), "pool4": (512, 512, 256), "pool3": (256, 256, 128),
            "pool2": (128, 64), "pool1": (64,)}


def _conv_bn_relu(cin: int, cout: int, kernel: int, relu: bool = True) -> list[nn.Module]:
    """Conv (with bias, as the reference Caffe model) -> BN (-> ReLU)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class SegNet(SegmentationNet):
    """SegNet: VGG-16-BN encoder (13 convs), mirrored decoder (13 convs) with index unpooling.

    Paper form: each decoder stage unpools with the matching encoder pool's indices, then 3x3
    conv + BN + ReLU; the last conv (64 -> num_classes) has neither BN nor ReLU and feeds the
    softmax. No fully connected layers. Deviation: odd sizes floor in the pools (the encoder drops a
    last odd row/column) and the unpooling restores the pre-pool size, leaving those positions zero.
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        stages = []
        cin = 512
        for pool, widths in _DECODER.items():
            layers: list[nn.Module] = []
            for cout in widths:
                layers += _conv_bn_relu(cin, cout, 3)
                cin = cout
            if pool == "pool1":
                layers.append(nn.Conv2d(cin, num_classes, 3, padding=1))
            stages.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        encoded = self.backbone(x)
        out = encoded["pool5"]
        for pool, stage in zip(reversed(_POOLS), self.decoder):
            out = stage(max_unpool(out, encoded[f"{pool}_indices"], encoded[f"{pool}_size"]))
        return self.package_outputs(out)


def segnet(num_classes: int, *, pretrained_backbone: str | None = None) -> SegNet:
    """`pretrained_backbone`: torchvision's vgg16_bn ImageNet file, loaded into the encoder."""
    backbone = build_backbone("vgg16_bn", ("vgg16_bn",), pretrained_backbone,
                              return_pools=("pool5",), return_indices=True)
    return SegNet(backbone, num_classes)


class SegNetBasic(SegmentationNet):
    """SegNet-Basic: 4 encoders (7x7 conv 64 + BN + ReLU + 2x2 max-pool with indices) and 4 decoders
    (unpool + 7x7 conv 64 + BN, no ReLU, as the paper says), then a 1x1 classifier.

    Paper form, including the reference Caffe model's local response normalisation of the input
    (size 5, alpha 1e-4, beta 0.75). Deviation: odd sizes floor in the pools, as in SegNet.
    """

    min_input_size = 16

    def __init__(self, num_classes: int, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.norm = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        self.encoder = nn.ModuleList(nn.Sequential(*_conv_bn_relu(3 if i == 0 else width, width, 7))
                                     for i in range(depth))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.decoder = nn.ModuleList(nn.Sequential(*_conv_bn_relu(width, width, 7, relu=False))
                                     for _ in range(depth))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.norm(x)
        pooled = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            pooled.append((indices, size))
        for stage, (indices, size) in zip(self.decoder, reversed(pooled)):
            x = stage(max_unpool(x, indices, size))
        return self.package_outputs(self.classifier(x))


def segnet_basic(num_classes: int) -> SegNetBasic:
    return SegNetBasic(num_classes)


_PAPER = ("Badrinarayanan, Kendall & Cipolla, SegNet: A Deep Convolutional Encoder-Decoder Architecture "
          "for Image Segmentation, TPAMI 2017")

MODELS = [
    ModelEntry("segnet", "segnet", segnet, paper=_PAPER),
    ModelEntry("segnet_basic", "segnet", segnet_basic, paper=_PAPER),
]
