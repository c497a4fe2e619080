"""Deterministic weights for any state-dict layout, the same in every torch version (each tensor drawn from
its own CPU generator seeded by the key's CRC-32), so that edgeseg's detectors and torchvision's, run in
separate environments, can be compared on identical weights (tools/maskrcnn_reference.py writes the
reference outputs; tests/models/test_maskrcnn_fidelity.py checks them)."""

from __future__ import annotations

import math
import zlib

import torch


def seeded_tensor(key: str, shape: list[int]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0)
    if key.endswith("running_var"):
        return 1 + 0.2 * torch.rand(shape, generator=generator)
    if key.endswith("running_mean") or key.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=generator)
    if len(shape) == 1:  # a norm's scale
        return 1 + 0.1 * torch.randn(shape, generator=generator)
    fan_in = math.prod(shape[1:])
    if "conv5_mask" in key:  # a transposed conv's weight is in x out x k x k
        fan_in = shape[0] * math.prod(shape[2:])
    return torch.randn(shape, generator=generator) * math.sqrt(1.0 / fan_in)


def seeded_state_dict(layout: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {key: seeded_tensor(key, shape) for key, shape in layout.items()}


def seeded_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth RGB image in 0..1 with a few bright blocks: something for the proposals to find."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, 3, height // 16 + 1, width // 16 + 1), generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    for _ in range(6):
        y0, x0 = int(torch.randint(0, height - 40, (1,), generator=generator)), int(
            torch.randint(0, width - 60, (1,), generator=generator))
        image[:, y0:y0 + 40, x0:x0 + 60] = torch.rand((3, 1, 1), generator=generator)
    return image.clamp(0, 1)
