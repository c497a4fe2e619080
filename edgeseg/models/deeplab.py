"""DeepLab v1 (LargeFOV, Chen et al., ICLR 2015) and DeepLab v2 (ASPP, Chen et al., TPAMI 2017).

Both predict at output stride 8 and upsample bilinearly; neither includes the papers' dense CRF
post-processing, which is not part of the network (and does not export to ONNX).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models import ModelEntry
from edgeseg.models._base import OutputStrideSwitch, SegmentationNet
from edgeseg.models._blocks import upsample_to
from edgeseg.models.backbones import build_backbone


class DeepLabV1(SegmentationNet):
    """DeepLab-LargeFOV: VGG-16 at output stride 8, fc6 3x3 dilation 12 (1024 ch), fc7 1x1 (1024), fc8.

    Paper form (Caffe train.prototxt): pool1-3 3x3 stride 2 pad 1; pool4/pool5 3x3 stride 1 pad 1;
    conv5 dilation 2; ReLU + dropout 0.5 after fc6 and fc7; logits bilinearly upsampled.
    Deviations:
    - no dense CRF;
    - floor-mode pools (Caffe's are ceil-mode); both give the same sizes on the paper's
      8k+1 crops (513 -> 257 -> 129 -> 65), floor gives ceil(H/2) on even sizes (Caffe H/2+1);
    - `pretrained_backbone` loads VGG-16's 13 convolutions only; the paper initialised fc6/fc7 by
      subsampling VGG's fully connected layers, here they start from PyTorch's default init.
    """

    min_input_size = 8

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=12, dilation=12)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.fc8 = nn.Conv2d(1024, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.backbone(x)["pool5"]
        h = self.drop(self.relu(self.fc6(h)))
        h = self.drop(self.relu(self.fc7(h)))
        return self.package_outputs(upsample_to(self.fc8(h), x.shape[-2:]))


def deeplabv1(num_classes: int, *, pretrained_backbone: str | None = None) -> DeepLabV1:
    backbone = build_backbone("vgg16", ("vgg16",), pretrained_backbone, return_pools=("pool5",), output_stride=8)
    for name in ("pool1", "pool2", "pool3"):  # parameter-free, so ImageNet keys are unaffected
        backbone.features[backbone.pool_index[name]] = nn.MaxPool2d(3, 2, 1)
    return DeepLabV1(backbone, num_classes)


class ASPPSum(nn.ModuleList):
    """DeepLab v2's ASPP: parallel 3x3 convs (with bias) straight to class scores, summed."""

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, ...]) -> None:
        super().__init__(nn.Conv2d(cin, num_classes, 3, padding=r, dilation=r) for r in rates)
        for conv in self:  # the reference model's init for the new layers
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self[0](x)
        for index in range(1, len(self)):
            out = out + self[index](x)
        return out


class DeepLabV2(OutputStrideSwitch, SegmentationNet):
    """DeepLab v2 (ASPP-L): dilated ResNet at output stride 8, ASPP rates 6/12/18/24 summed, bilinear upsampling.

    Paper form for the head. Deviations:
    - no dense CRF and no multi-scale input fusion (MSC, the max over 3 input scales);
    - the backbone is torchvision's ResNet v1.5 (stride on the 3x3 conv, not the original's 1x1)
      with torchvision's dilation pattern (each dilated layer's first block keeps the previous
      rate; the reference model dilates all res4 blocks by 2 and all res5 blocks by 4);
    - BN statistics are trained (the reference Caffe model froze BN).
    """

    min_input_size = 32
    output_strides = (8, 16)  # 8 is the paper's; switching leaves the ASPP rates as they are
    rates = (6, 12, 18, 24)

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.aspp = ASPPSum(backbone.channels["layer4"], num_classes, self.rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        logits = self.aspp(self.backbone(x)["layer4"])
        return self.package_outputs(upsample_to(logits, x.shape[-2:]))


def deeplabv2(num_classes: int, *, backbone: str = "resnet101", output_stride: int = 8,
              pretrained_backbone: str | None = None) -> DeepLabV2:
    DeepLabV2.validate_output_stride(output_stride)
    net = build_backbone(backbone, ("resnet50", "resnet101"), pretrained_backbone,
                         return_layers=("layer4",), output_stride=output_stride)
    return DeepLabV2(net, num_classes)


MODELS = [
    ModelEntry("deeplabv1", "deeplabv1", deeplabv1,
               paper="Chen et al., Semantic Image Segmentation with Deep Convolutional Nets and Fully "
                     "Connected CRFs, ICLR 2015 (DeepLab-LargeFOV)"),
    ModelEntry("deeplabv2", "deeplabv2", deeplabv2, ("resnet50", "resnet101"),
               paper="Chen et al., DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, "
                     "Atrous Convolution, and Fully Connected CRFs, TPAMI 2017"),
]
