"""A PyTorch network as a predictor of the shared evaluation loop (edgeseg.measure.evaluate): full-image
(or fixed-size) inference with optional multi-scale + flip test-time augmentation. It lives here, not
in edgeseg.measure, because it needs torch."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.preprocess import Preprocess

TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # DeepLabV3's evaluation scales


class TorchPredictor:
    """A network plus its normalization: (N, h, w, 3) uint8 BGR frames at `size` in, (N, h, w) class ids out.

    `size` None evaluates every image at its own size. With `tta` the softmax is summed over
    DeepLabV3's scales and horizontal flips before the argmax.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 size: tuple[int, int] | None = None, tta: bool = False) -> None:
        self.model = model.eval()
        self.preprocess = Preprocess(mean, std)
        self.size = tuple(size) if size else None
        self.tta = tta

    @torch.inference_mode()
    def probabilities(self, frames: np.ndarray, scale: float = 1.0, flip: bool = False) -> torch.Tensor:
        """(N, C, h, w) softmax at the frames' size of the network run at `scale`, mirrored with `flip`."""
        x = self.preprocess(torch.from_numpy(np.ascontiguousarray(frames)))
        h, w = x.shape[-2:]
        if scale != 1.0:
            x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
        if flip:
            x = x.flip(-1)
        logits = self.model(x)
        if flip:
            logits = logits.flip(-1)
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits.softmax(1)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if self.tta:
            # scales that would shrink the frames below what the network takes are skipped
            smallest = getattr(self.model, "min_input_size", 1)
            scales = [s for s in TTA_SCALES if min(frames.shape[1:3]) * s >= smallest]
            probs = sum(self.probabilities(frames, s, f) for s in scales for f in (False, True))
        else:
            probs = self.probabilities(frames)
        return probs.argmax(1).to(torch.uint8).numpy()
