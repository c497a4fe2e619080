"""Fully convolutional networks (Long, Shelhamer & Darrell, CVPR 2015 / TPAMI 2017).

Two forms: the paper's VGG-16 FCN-32s/16s/8s (Caffe layer names: fc6, score_fr, upscore2, ...),
and torchvision's ResNet FCN (`fcn`), kept module for module so its checkpoints load with strict=True.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import CheckpointError
from edgeseg.models import ModelEntry
from edgeseg.models._base import BackboneHeadNet, OutputStrideSwitch, SegmentationNet
from edgeseg.models._blocks import FCNHead
from edgeseg.models.backbones import build_backbone
from edgeseg.models.weights import load_weights, read_weights


def bilinear_kernel(size: int) -> torch.Tensor:
    """The size x size bilinear interpolation kernel Caffe FCN fills its deconvolutions with."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    return ramp[:, None] * ramp[None, :]


def learned_upsample(channels: int) -> nn.ConvTranspose2d:
    """2x deconvolution (kernel 4, stride 2, no bias), initialised to per-class bilinear interpolation."""
    deconv = nn.ConvTranspose2d(channels, channels, 4, 2, bias=False)
    with torch.no_grad():
        deconv.weight.zero_()
        index = torch.arange(channels)
        deconv.weight[index, index] = bilinear_kernel(4)
    return deconv


class FixedUpsample(nn.Module):
    """The final, never-trained bilinear deconvolution (Caffe's lr_mult 0 upscore layer).

    Its kernel is a non-persistent buffer (not a parameter, not in the state dict: it is a function
    of the factor), applied per class (groups=C), which equals Caffe's C x C diagonal kernel.
    """

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.channels = channels
        kernel = bilinear_kernel(2 * factor).expand(channels, 1, -1, -1).contiguous()
        self.register_buffer("weight", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, stride=self.factor, groups=self.channels)


def _crop(x: torch.Tensor, size, offset: int) -> torch.Tensor:
    """Take `size` from a deconvolution output, starting `offset` = factor / 2 in (centre alignment)."""
    h, w = size
    return x[:, :, offset:offset + h, offset:offset + w]


class FCNVGG(SegmentationNet):
    """FCN-32s / 16s / 8s: VGG-16 with fc6/fc7 as convolutions, score layers and skip fusion.

    Paper form (Caffe voc-fcn*s): ceil-mode pools, fc6 7x7x4096 and fc7 1x1x4096 with ReLU and
    dropout 0.5, 1x1 score layers on fc7 / pool4 / pool3, learned 2x deconvolutions (kernel 4,
    bilinear-initialised, no bias) and a fixed bilinear final deconvolution (kernel 2f, stride f).
    Deviations:
    - conv1_1 pads 1 (not 100) and fc6 pads 3, so features keep the input's geometry; the crops
      then start at factor/2 (1 after a 2x deconvolution, f/2 after the final one) instead of
      Caffe's 5 / 9 / 31, which only undo the pad-100 shift. Ceil-mode pools make every crop fit
      for any input size >= 32.
    - the score layers use PyTorch's default init; the paper zero-initialises them (zero scores
      would make an untrained net's output independent of its input).
    - the fixed upsampling kernel is a buffer, so it is not among the parameters (Caffe counted it:
      +112,896 for FCN-8s with 21 classes).
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, num_classes: int, stride: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stride = stride
        self.backbone = backbone
        self.fc6 = nn.Conv2d(512, 4096, 7, padding=3)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1) if stride <= 16 else None
        self.upscore2 = learned_upsample(num_classes) if stride <= 16 else None
        self.score_pool3 = nn.Conv2d(256, num_classes, 1) if stride <= 8 else None
        self.upscore_pool4 = learned_upsample(num_classes) if stride <= 8 else None
        self.upscore = FixedUpsample(num_classes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.backbone(x)
        h = self.drop(self.relu(self.fc6(features["pool5"])))
        h = self.drop(self.relu(self.fc7(h)))
        score = self.score_fr(h)
        if self.score_pool4 is not None:
            pool4 = features["pool4"]
            score = _crop(self.upscore2(score), pool4.shape[-2:], 1) + self.score_pool4(pool4)
        if self.score_pool3 is not None:
            pool3 = features["pool3"]
            score = _crop(self.upscore_pool4(score), pool3.shape[-2:], 1) + self.score_pool3(pool3)
        return self.package_outputs(_crop(self.upscore(score), x.shape[-2:], self.stride // 2))


_VGG_POOLS = {32: ("pool5",), 16: ("pool4", "pool5"), 8: ("pool3", "pool4", "pool5")}


def _load_imagenet(model: FCNVGG, path: str) -> None:
    """Load torchvision's VGG-16 file: features as they are, classifier.0/3 convolutionalised into fc6/fc7."""
    state = read_weights(path)
    features = {key: value for key, value in state.items() if model.backbone.imagenet_key(key) is not None}
    load_weights(model.backbone, features, source=f"backbone weights {path}")
    missing = [key for key in ("classifier.0.weight", "classifier.0.bias", "classifier.3.weight",
                               "classifier.3.bias") if key not in state]
    if missing:
        raise CheckpointError(f"{path} has no {', '.join(missing)}: FCN initialises fc6/fc7 from VGG's classifier",
                              "pass torchvision's full vgg16 ImageNet file (vgg16-397923af.pth)")
    fc = {"weight": state["classifier.0.weight"].reshape(4096, 512, 7, 7), "bias": state["classifier.0.bias"]}
    load_weights(model.fc6, fc, source=f"classifier.0 of {path}")
    fc = {"weight": state["classifier.3.weight"].reshape(4096, 4096, 1, 1), "bias": state["classifier.3.bias"]}
    load_weights(model.fc7, fc, source=f"classifier.3 of {path}")


def _fcn_vgg(num_classes: int, stride: int, pretrained_backbone: str | None) -> FCNVGG:
    backbone = build_backbone("vgg16", ("vgg16",), return_pools=_VGG_POOLS[stride], ceil_mode=True)
    model = FCNVGG(backbone, num_classes, stride)
    if pretrained_backbone is not None:
        _load_imagenet(model, pretrained_backbone)
    return model


def fcn32s(num_classes: int, *, pretrained_backbone: str | None = None) -> FCNVGG:
    return _fcn_vgg(num_classes, 32, pretrained_backbone)


def fcn16s(num_classes: int, *, pretrained_backbone: str | None = None) -> FCNVGG:
    return _fcn_vgg(num_classes, 16, pretrained_backbone)


def fcn8s(num_classes: int, *, pretrained_backbone: str | None = None) -> FCNVGG:
    return _fcn_vgg(num_classes, 8, pretrained_backbone)


class FCN(OutputStrideSwitch, BackboneHeadNet):
    """torchvision's FCN: dilated ResNet (output stride 8), FCNHead on layer4, optional aux FCNHead on layer3.

    Not the paper's network (which is VGG-16, see FCNVGG); kept module for module identical to
    torchvision's fcn_resnet50/101 so their checkpoints load. Differences from torchvision's code:
    the aux head runs only in training mode, and eval mode returns the logits tensor, not a dict.
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, num_classes: int, aux: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = FCNHead(2048, num_classes)
        self.aux_classifier = FCNHead(1024, num_classes) if aux else None


def fcn(num_classes: int, *, backbone: str = "resnet50", aux: bool = False, output_stride: int = 8,
        pretrained_backbone: str | None = None) -> FCN:
    FCN.validate_output_stride(output_stride)  # 8 is torchvision's
    net = build_backbone(backbone, ("resnet50", "resnet101"), pretrained_backbone,
                         return_layers=("layer3", "layer4"), output_stride=output_stride)
    return FCN(net, num_classes, aux)


_PAPER = "Long, Shelhamer & Darrell, Fully Convolutional Networks for Semantic Segmentation, CVPR 2015"

MODELS = [
    ModelEntry("fcn32s", "fcn", fcn32s, paper=_PAPER),
    ModelEntry("fcn16s", "fcn", fcn16s, paper=_PAPER),
    ModelEntry("fcn8s", "fcn", fcn8s, paper=_PAPER),
    ModelEntry("fcn", "fcn", fcn, ("resnet50", "resnet101"), paper=_PAPER + " (torchvision's ResNet form)"),
]
