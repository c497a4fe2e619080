"""Aligned Xception-65, the DeepLabV3+ backbone (Chen et al. 2018, Fig. 4; TF DeepLab's `xception_65`).

Layout, as in the TF reference:
  stem        conv 3x3/32 s2, conv 3x3/64 (each + BN + ReLU)
  entry flow  blocks of 3 separable convs: 128, 256, 728 (last sep conv strided, 1x1 strided conv shortcut)
  middle flow 16 blocks of 3 separable convs of 728, identity shortcut
  exit flow   block (728, 1024, 1024; strided, conv shortcut), then sep convs 1536, 1536, 2048
Entry/middle/exit blocks are pre-activation: ReLU -> depthwise 3x3 -> BN -> pointwise 1x1 -> BN, with
the block's sum left un-activated (the next block starts with ReLU). The three closing sep convs
carry ReLU after both BNs (TF's `activation_fn_in_separable_conv=True`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models._base import atrous_plan, set_dilation
from edgeseg.models._blocks import SeparableConv2d, he_init_convs


class _PreActSeparable(nn.Sequential):
    """ReLU -> depthwise -> BN -> pointwise -> BN (no ReLU after: the block sum is pre-activation)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.ReLU(), *SeparableConv2d(cin, cout, relu=False))

    @property
    def depthwise(self) -> nn.Conv2d:
        return self[1]


class _ActSeparable(SeparableConv2d):
    """depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU: the exit flow's closing convs."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, depthwise_relu=True)

    @property
    def depthwise(self) -> nn.Conv2d:
        return self[0]


class XceptionBlock(nn.Module):
    """Three separable convs plus a shortcut (strided 1x1 conv + BN, or identity).

    Max-pooling of the original Xception is replaced by the stride of the last separable conv.
    """

    def __init__(self, cin: int, depths: tuple[int, int, int], stride: int, conv_shortcut: bool) -> None:
        super().__init__()
        chans = (cin, *depths)
        self.convs = nn.Sequential(*[_PreActSeparable(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, depths[-1], 1, stride, bias=False), nn.BatchNorm2d(depths[-1]))
                         if conv_shortcut else None)
        self.downsamples = stride == 2
        self.configure(stride, 1)

    def configure(self, stride: int, rate: int) -> None:
        """Stride on the last depthwise conv (and the shortcut); `rate` dilates all three depthwise convs."""
        for conv in self.convs:
            set_dilation(conv.depthwise, rate)
        self.convs[-1].depthwise.stride = (stride, stride)
        if self.shortcut is not None:
            self.shortcut[0].stride = (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.convs(x) + shortcut


class ExitConvs(nn.Sequential):
    """The exit flow's last three separable convs (1536, 1536, 2048), no shortcut, never strided."""

    downsamples = False

    def __init__(self, cin: int) -> None:
        super().__init__(_ActSeparable(cin, 1536), _ActSeparable(1536, 1536), _ActSeparable(1536, 2048))

    def configure(self, stride: int, rate: int) -> None:
        for conv in self:
            set_dilation(conv.depthwise, rate)


class Xception65(nn.Module):
    """Aligned Xception-65 feature extractor: {"low": stride 4, 128 ch; "out": output stride, 2048 ch}.

    "low" is the ReLU of entry block 1's output (as the common PyTorch ports use); TF DeepLab taps
    entry block 2's second separable conv instead (also stride 4, but 256 ch). Output stride 8/16/32
    follows TF's rule: once the target stride is reached, a strided block runs at stride 1 with the
    current rate and every later block at twice that rate (weights untouched).
    No ImageNet file in torchvision's format exists for this net, so `imagenet_key` keeps keys
    unchanged: a file converted to these module names loads as is.
    Init (no paper form): He-normal convs (fan_in for depthwise, whose fan-in is 9, fan_out for the
    rest) and a zero gamma on the last BN of each middle-flow residual branch (Goyal et al. 2017,
    torchvision's zero_init_residual), so an untrained net neither loses its signal (PyTorch's
    default init shrinks it ~1e5-fold) nor doubles it per middle block.
    """

    channels = {"low": 128, "out": 2048}

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.entry = nn.Sequential(
            XceptionBlock(64, (128, 128, 128), 2, True),
            XceptionBlock(128, (256, 256, 256), 2, True),
            XceptionBlock(256, (728, 728, 728), 2, True),
        )
        self.middle = nn.Sequential(*[XceptionBlock(728, (728, 728, 728), 1, False) for _ in range(16)])
        self.exit = nn.Sequential(XceptionBlock(728, (728, 1024, 1024), 2, True), ExitConvs(1024))
        self.output_stride = 32
        self.set_output_stride(output_stride)
        self._init_weights()

    def _init_weights(self) -> None:
        he_init_convs(self)
        for block in self.middle:
            nn.init.zeros_(block.convs[-1][-1].weight)  # the branch's last BN: blocks start as identities

    def _units(self) -> list[nn.Module]:
        return [*self.entry, *self.middle, *self.exit]

    def set_output_stride(self, output_stride: int) -> None:
        """Turn the strides past `output_stride` into dilations (TF DeepLab's stack_blocks_dense rule)."""
        units = self._units()
        # stride 2 after the stem's strided conv
        plan = atrous_plan([unit.downsamples for unit in units], output_stride, stride=2, owner="Xception65")
        for unit, (stride, rate, _) in zip(units, plan):  # a unit that stops striding keeps the previous rate
            unit.configure(stride, rate)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.entry[0](x)
        low = F.relu(x)  # block 2 starts with its own ReLU but its shortcut sees the raw sum, as in TF
        x = self.entry[2](self.entry[1](x))
        x = self.exit(self.middle(x))
        return {"low": low, "out": x}

    @staticmethod
    def imagenet_key(key: str) -> str | None:
        """Keys are kept unchanged: there is no torchvision Xception file to translate from."""
        return key


def xception65(**options) -> Xception65:
    return Xception65(**options)
