"""Parameter and multiply-accumulate counts, computed on the meta device: shapes flow through
the real forward pass but no memory is allocated and no arithmetic runs, so the whole zoo is
measured at full resolution in seconds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgeseg.models import build


@dataclass(frozen=True)
class Complexity:
    model: str
    backbone: str | None
    num_classes: int
    input_size: tuple[int, int]
    params: int
    gmacs: float  # multiply-accumulates of convolutions and matmuls, batch 1, eval mode


def measure(name: str, num_classes: int, input_size: tuple[int, int], **options) -> Complexity:
    with torch.device("meta"):
        model = build(name, num_classes, **options).eval()
        x = torch.empty(1, 3, *input_size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(name, options.get("backbone"), num_classes, tuple(input_size), params,
                      counter.get_total_flops() / 2e9)  # the counter reports 2 FLOPs per MAC
