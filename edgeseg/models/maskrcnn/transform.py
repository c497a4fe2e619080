"""Input normalization, resizing and batching, and the mapping of detections back to the input images
(torchvision's GeneralizedRCNNTransform, so that the same weights see the same pixels)."""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.maskrcnn.ops import paste_masks


class RCNNTransform(nn.Module):
    """Normalize (RGB 0..1 in), resize so the short side is `min_size` (a random one of several in training)
    unless the long side would pass `max_size`, pad the batch to a multiple of `size_divisible`."""

    def __init__(self, min_size: tuple[int, ...], max_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 size_divisible: int = 32) -> None:
        super().__init__()
        self.min_size, self.max_size = tuple(min_size), max_size
        self.mean, self.std, self.size_divisible = tuple(mean), tuple(std), size_divisible

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        images = list(images)
        targets = [dict(t) for t in targets] if targets is not None else None
        sizes = []
        for i, image in enumerate(images):
            image = self.normalize(image)
            image, target = self.resize(image, targets[i] if targets is not None else None)
            images[i] = image
            if targets is not None:
                targets[i] = target
            sizes.append((int(image.shape[-2]), int(image.shape[-1])))
        return self.batch(images), sizes, targets

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not image.is_floating_point():
            raise TypeError(f"images must be float tensors in 0..1, got {image.dtype}")
        mean = torch.as_tensor(self.mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def resize(self, image: torch.Tensor, target: dict | None):
        h, w = image.shape[-2:]
        size = random.choice(self.min_size) if self.training else self.min_size[-1]
        scale = min(size / min(h, w), self.max_size / max(h, w))
        image = F.interpolate(image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                              align_corners=False)[0]
        if target is None:
            return image, None
        ratio_h, ratio_w = image.shape[-2] / h, image.shape[-1] / w
        boxes = target["boxes"] * torch.as_tensor([ratio_w, ratio_h, ratio_w, ratio_h], dtype=target["boxes"].dtype)
        target["boxes"] = boxes
        if "masks" in target:
            masks = F.interpolate(target["masks"][:, None].float(), scale_factor=scale, recompute_scale_factor=True)
            target["masks"] = masks[:, 0].byte()
        return image, target

    def batch(self, images: list[torch.Tensor]) -> torch.Tensor:
        stride = float(self.size_divisible)
        h = int(math.ceil(max(i.shape[-2] for i in images) / stride) * stride)
        w = int(math.ceil(max(i.shape[-1] for i in images) / stride) * stride)
        batched = images[0].new_zeros((len(images), images[0].shape[0], h, w))
        for out, image in zip(batched, images):
            out[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batched

    @staticmethod
    def postprocess(results: list[dict], sizes: list[tuple[int, int]],
                    original_sizes: list[tuple[int, int]]) -> list[dict]:
        """Boxes scaled back to each input image, masks pasted at full size (K x 1 x H x W probabilities)."""
        for result, size, original in zip(results, sizes, original_sizes):
            ratio_h = torch.tensor(original[0], dtype=torch.float32) / torch.tensor(size[0], dtype=torch.float32)
            ratio_w = torch.tensor(original[1], dtype=torch.float32) / torch.tensor(size[1], dtype=torch.float32)
            x0, y0, x1, y1 = result["boxes"].unbind(1)
            result["boxes"] = torch.stack((x0 * ratio_w, y0 * ratio_h, x1 * ratio_w, y1 * ratio_h), dim=1)
            if "masks" in result:
                result["masks"] = paste_masks(result["masks"], result["boxes"], *original)
        return results
