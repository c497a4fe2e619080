"""Parameter and multiply-accumulate counts, computed on the meta device: shapes flow through
the real forward pass but no memory is allocated and no arithmetic runs, so the whole zoo is
measured at full resolution in seconds. Instance networks are the exception: how much of them runs
depends on how many proposals and detections the image gives, which meta tensors cannot know, so they
run for real, on the CPU, on one random image at the input size (the RPN's full proposal count)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgeseg.models import build, entry


@dataclass(frozen=True)
class Complexity:
    model: str
    backbone: str | None
    num_classes: int
    input_size: tuple[int, int]
    params: int
    gmacs: float  # multiply-accumulates of convolutions and matmuls, batch 1, eval mode


def measure(name: str, num_classes: int, input_size: tuple[int, int], **options) -> Complexity:
    if entry(name).task == "instance":
        return _measure_instance(name, num_classes, input_size, **options)
    with torch.device("meta"):
        model = build(name, num_classes, **options).eval()
        x = torch.empty(1, 3, *input_size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(name, options.get("backbone"), num_classes, tuple(input_size), params,
                      counter.get_total_flops() / 2e9)  # the counter reports 2 FLOPs per MAC


def _measure_instance(name: str, num_classes: int, input_size: tuple[int, int], **options) -> Complexity:
    model = build(name, num_classes, min_size=min(input_size), max_size=max(input_size), **options).eval()
    image = torch.rand(3, *input_size, generator=torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model([image])
    params = sum(p.numel() for p in model.parameters())
    return Complexity(name, options.get("backbone"), num_classes, tuple(input_size), params,
                      counter.get_total_flops() / 2e9)
