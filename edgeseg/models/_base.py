"""What every zoo network shares: input checks and the output-stride switch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgeseg.errors import BadInputError
from edgeseg.models._blocks import upsample_to


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


class SegmentationNet(nn.Module):
    """Base of the zoo: N x 3 x H x W float in, N x C x H x W logits out (eval mode).

    Subclasses set `num_classes` and `min_input_size` (the smallest H and W the network's
    strides leave at least one feature pixel for) and call `self.check_input(x)` first in `forward`.
    """

    num_classes: int
    min_input_size: int = 32

    def check_input(self, x: torch.Tensor) -> None:
        if _tracing():  # shapes are fixed by the exporter; Python checks would only add trace warnings
            return
        if x.dim() != 4 or x.shape[1] != 3:
            raise BadInputError(
                f"{type(self).__name__} expects an N x 3 x H x W tensor but got shape {tuple(x.shape)}",
                "pass RGB/BGR images as a batch in NCHW layout, e.g. x.permute(0, 3, 1, 2) for NHWC",
            )
        if not x.is_floating_point():
            raise BadInputError(
                f"{type(self).__name__} expects a float tensor but got {x.dtype}",
                "normalize the image first (x.float() / 255 then mean/std), or export with --fuse-preprocess",
            )
        h, w = x.shape[-2:]
        if min(h, w) < self.min_input_size:
            raise BadInputError(
                f"{type(self).__name__} cannot take an input of {h}x{w}: its strides need at least "
                f"{self.min_input_size}x{self.min_input_size}",
                f"resize or pad the input to at least {self.min_input_size} pixels on each side",
            )

    def package_outputs(self, out: torch.Tensor, aux: torch.Tensor | None = None):
        """Eval mode returns the logits tensor; training mode with an aux head returns a dict."""
        if self.training and aux is not None:
            return {"out": out, "aux": aux}
        return out


class BackboneHeadNet(SegmentationNet):
    """torchvision's _SimpleSegmentationModel shape: `backbone` -> `classifier` on one stage, optional
    `aux_classifier` on another (training only), both upsampled to the input size."""

    out_key: str = "layer4"
    aux_key: str = "layer3"
    aux_classifier: nn.Module | None

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        size = x.shape[-2:]
        features = self.backbone(x)
        out = upsample_to(self.classifier(features[self.out_key]), size)
        aux = None
        if self.aux_classifier is not None and self.training:
            aux = upsample_to(self.aux_classifier(features[self.aux_key]), size)
        return self.package_outputs(out, aux)


OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(output_stride: int, valid: Sequence[int] = OUTPUT_STRIDES, owner: str = "the backbone") -> None:
    """The zoo's one output-stride check, so every network and backbone rejects a stride in the same words.

    Runs before anything is changed: a rejected stride leaves the network as it was.
    """
    if output_stride in valid:
        return
    choices = ", ".join(str(s) for s in valid[:-1]) + f" or {valid[-1]}" if len(valid) > 1 else str(valid[0])
    raise BadInputError(f"{owner}'s output_stride must be {choices}, got {output_stride!r}",
                        f"use {choices} (smaller is denser and slower; the weights fit every stride)")


def atrous_plan(downsamples: Sequence[bool], output_stride: int, stride: int,
                owner: str = "the backbone") -> list[tuple[int, int, int]]:
    """DeepLab's atrous rule, the one map from output stride to strides and dilations.

    `downsamples` says which units halve the resolution in the original net, in order; `stride` is the
    stride reached before the first of them. Returns per unit (stride, dilation in, dilation out): once
    `output_stride` is reached, a downsampling unit runs at stride 1 and the dilation doubles from it on.
    Families differ in which rate that unit itself takes: torchvision's MobileNets dilate it already
    (dilation out), TF's Xception and the first block of torchvision's ResNet layers keep the previous
    rate (dilation in), so both are returned.
    """
    check_output_stride(output_stride, owner=owner)
    plan, rate = [], 1
    for down in downsamples:
        if down and stride >= output_stride:
            plan.append((1, rate, rate * 2))
            rate *= 2
        elif down:
            plan.append((2, rate, rate))
            stride *= 2
        else:
            plan.append((1, rate, rate))
    return plan


class OutputStrideSwitch:
    """Mixin for networks whose output stride is their dilated backbone's (FCN, PSPNet, DeepLab v2/v3/v3+).

    Each family names the strides it offers in `output_strides`; the builders call
    `validate_output_stride` before building the backbone so a bad value names the network, not its
    backbone. Switching moves strides into dilations (or back) and leaves the weights untouched.
    """

    output_strides: tuple[int, ...] = OUTPUT_STRIDES
    backbone: nn.Module

    @classmethod
    def validate_output_stride(cls, output_stride: int) -> None:
        check_output_stride(output_stride, cls.output_strides, cls.__name__)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Switch the backbone to `output_stride` (e.g. train at 16, infer at 8); weights are untouched."""
        self.validate_output_stride(output_stride)
        self.backbone.set_output_stride(output_stride)


def set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    """Change a 3x3-style conv's dilation keeping its output size: padding follows dilation."""
    k = conv.kernel_size[0]
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation * (k - 1) // 2,) * 2
