"""ConvCRF (Teichmann and Cipolla 2018): DeepLab's fully connected CRF with its pairwise term restricted to a
k x k window, so that mean-field inference is ordinary tensor operations inside the engine's graph.

The same model as `edgeseg.measure.crf` (Potts compatibility, an appearance kernel
w1 * exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2) and a smoothness kernel
w2 * exp(-|p_i - p_j|^2 / 2 theta_gamma^2), symmetric normalization, self included, as pydensecrf does),
with j limited to the window around i. It runs at 1/`downsample` of the input (frames and scores
average-pooled), where the window reaches far: 11x11 cells at 1/8 are 88x88 pixels; theta_alpha and
theta_gamma stay in input pixels. All neighbours come from one Gather of the zero-padded scores (no
convolution: ONNX Runtime's INT8 build keeps everything after the network's last convolution in float); the
appearance weights are computed once per frame from the colours.

`CrfNet` appends it to a zoo network for `edgeseg build --crf conv`: the network's logits and the frame
recovered from the normalized input go in, the CRF's log-marginals upsampled to the input size come out (logits
in every sense downstream: a softmax of them is the marginals), and the export ends it like any network
(argmax fused, or the upsampling and argmax on the host). As in pydensecrf, each pixel's kernel includes itself;
at 1/8 the smoothness kernel (theta_gamma 3 px) is then mostly that self term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ConvCrfParams:
    window: int = 11  # k: neighbours within k // 2 cells each way
    downsample: int = 8  # the CRF runs at 1/downsample of the input
    iterations: int = 5
    w1: float = 4.0  # the dense CRF's kernel weights and widths (edgeseg.measure.crf.CrfParams)
    theta_alpha: float = 121.0  # input pixels
    theta_beta: float = 5.0  # 0-255 colour units
    w2: float = 3.0
    theta_gamma: float = 3.0  # input pixels

    def to_dict(self) -> dict:
        return asdict(self)


class ConvCRF(nn.Module):
    """(N, C, h, w) logits and the (N, 3, h, w) RGB frame in 0..255 at the same size -> (N, C, h, w) log-marginals."""

    def __init__(self, params: ConvCrfParams = ConvCrfParams()) -> None:
        super().__init__()
        if params.window < 1 or params.window % 2 == 0:
            raise ValueError(f"window {params.window}: expected an odd number of cells")
        self.params = params
        r = params.window // 2
        self.offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        scale = float(params.downsample)
        dist2 = torch.tensor([float(dy * dy + dx * dx) for dy, dx in self.offsets]) * scale * scale
        # the position terms, one per offset: constants of the graph
        self.register_buffer("alpha", torch.exp(-dist2 / (2 * params.theta_alpha ** 2)).view(1, -1, 1, 1), False)
        self.register_buffer("gamma", torch.exp(-dist2 / (2 * params.theta_gamma ** 2)).view(1, -1, 1, 1), False)

    def forward(self, logits: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        p = self.params
        h, w = logits.shape[-2:]
        index = self._neighbours(h, w, logits.device)
        valid = self._shifts(torch.ones_like(rgb[:, :1]), index)[:, 0]  # (N, K, h, w): 1 where the neighbour is inside
        diff2 = ((self._shifts(rgb, index) - rgb.unsqueeze(2)) ** 2).sum(1)  # (N, K, h, w)
        appearance = self.alpha * torch.exp(-diff2 / (2 * p.theta_beta ** 2)) * valid
        smooth = self.gamma * valid
        norm_a = torch.rsqrt(appearance.sum(1, keepdim=True))
        norm_s = torch.rsqrt(smooth.sum(1, keepdim=True))
        # both kernels, weighted and normalized at i and at its neighbour i + d, in one weight per offset
        weights = (p.w1 * norm_a * appearance * self._shifts(norm_a, index)[:, 0]
                   + p.w2 * norm_s * smooth * self._shifts(norm_s, index)[:, 0]).unsqueeze(1)  # (N, 1, K, h, w)
        unary = F.log_softmax(logits, 1)
        q = unary.exp()
        for step in range(p.iterations):
            energy = unary + (weights * self._shifts(q, index)).sum(2)
            if step == p.iterations - 1:  # the log-marginals: logits in every sense downstream (softmax gives q)
                return F.log_softmax(energy, 1)
            q = F.softmax(energy, 1)
        return unary

    def _neighbours(self, h: int, w: int, device) -> torch.Tensor:
        """Indices into the flattened zero-padded (h + 2r) x (w + 2r) plane of every pixel's neighbour at every
        offset, offset-major: one Gather then fetches all K shifted planes (a handful of graph nodes, where a
        slice per offset made thousands)."""
        r = self.params.window // 2
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        dy = torch.tensor([d[0] for d in self.offsets], device=device).view(-1, 1, 1)
        dx = torch.tensor([d[1] for d in self.offsets], device=device).view(-1, 1, 1)
        return ((ys + dy + r) * (w + 2 * r) + (xs + dx + r)).reshape(-1)

    def _shifts(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, C, K, h, w): x's neighbour at every offset, zero outside the frame."""
        r = self.params.window // 2
        n, c, h, w = x.shape
        padded = F.pad(x, (r, r, r, r)).flatten(2)
        return padded[:, :, index].reshape(n, c, len(self.offsets), h, w)


class CrfNet(nn.Module):
    """A zoo network with ConvCRF behind it: normalized (N, 3, H, W) in, CRF log-marginals at (H, W) out."""

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float],
                 params: ConvCrfParams = ConvCrfParams()) -> None:
        super().__init__()
        self.network = network.eval()
        self.crf = ConvCRF(params)
        self.num_classes = getattr(network, "num_classes", None)
        self.min_input_size = getattr(network, "min_input_size", 32)
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, 3, 1, 1), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        logits = out["out"] if isinstance(out, dict) else out
        rgb = (x * self.std + self.mean) * 255.0  # the frame the normalized input came from
        size = x.shape[-2:]
        s = self.crf.params.downsample
        if s > 1:
            logits, rgb = F.avg_pool2d(logits, s), F.avg_pool2d(rgb, s)
        q = self.crf(logits, rgb)
        return F.interpolate(q, size=size, mode="bilinear", align_corners=False) if s > 1 else q
