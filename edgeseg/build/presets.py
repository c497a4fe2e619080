"""The preprocessing presets of foreign graphs, apart from the import package, which needs `onnx`: the CLI
lists them in its help, and `edgeseg stream` on a vehicle image (numpy, OpenCV, one inference library,
no onnx) builds that same parser."""

from __future__ import annotations

from typing import Any

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
# the preprocessing each source's own inference code applies to an image read as uint8
PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"channel_order": "rgb", "value_range": 1, **IMAGENET},
    "torchvision": {"channel_order": "rgb", "value_range": 1, **IMAGENET},
    # segmentation_models_pytorch: ImageNet encoders, and every U-Net-like decoder halves 5 times
    "smp": {"channel_order": "rgb", "value_range": 1, **IMAGENET, "size_divisor": 32},
    # mmsegmentation's SegDataPreProcessor: mean/std on the 0-255 scale, bgr_to_rgb=True
    "mmseg": {"channel_order": "rgb", "value_range": 255, "mean": (123.675, 116.28, 103.53),
              "std": (58.395, 57.12, 57.375)},
    # Hugging Face SegformerImageProcessor: rescale 1/255, ImageNet mean/std (logits come at 1/4: detected)
    "segformer": {"channel_order": "rgb", "value_range": 1, **IMAGENET},
    # PaddleSeg's Compose (to_rgb) + Normalize defaults
    "paddleseg": {"channel_order": "rgb", "value_range": 1, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
}
