"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017)."""

from __future__ import annotations

from torch import nn

from edgeseg.models import ModelEntry
from edgeseg.models._base import BackboneHeadNet, OutputStrideSwitch
from edgeseg.models._blocks import FCNHead, PyramidPooling
from edgeseg.models.backbones import build_backbone


class PSPHead(nn.Sequential):
    """Pyramid pooling (bins 1, 2, 3, 6), then FCN's head with a 3x3 conv to 512: BN, ReLU, dropout 0.1, 1x1."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        ppm = PyramidPooling(in_channels)
        super().__init__(ppm, *FCNHead(ppm.out_channels, num_classes, inter_channels=512))


class PSPNet(OutputStrideSwitch, BackboneHeadNet):
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

    output_strides = (8, 16)

    def __init__(self, backbone: nn.Module, num_classes: int, output_stride: int, aux: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = PSPHead(backbone.channels["layer4"], num_classes)
        self.aux_classifier = FCNHead(backbone.channels["layer3"], num_classes) if aux else None
        self.set_output_stride(output_stride)

    @property
    def min_input_size(self) -> int:
        """One feature pixel: the pyramid's 1x1 bin needs no more, so the output stride is the minimum."""
        return self.output_stride


def pspnet(num_classes: int, *, backbone: str = "resnet50", aux: bool = True, output_stride: int = 8,
           pretrained_backbone: str | None = None) -> PSPNet:
    PSPNet.validate_output_stride(output_stride)
    net = build_backbone(backbone, ("resnet50", "resnet101"), pretrained_backbone, output_stride=output_stride,
                         return_layers=("layer3", "layer4"))
    return PSPNet(net, num_classes, output_stride, aux)


MODELS = [
    ModelEntry("pspnet", "pspnet", pspnet, ("resnet50", "resnet101"),
               "Zhao et al., Pyramid Scene Parsing Network, CVPR 2017"),
]
