"""A torchvision segmentation state dict as a build's source: the zoo network it loads into, its class
names (`--classes`; torchvision's own 21-class weights are COCO with VOC's labels, so 21 classes default
to VOC, said so), and torchvision's preprocessing (RGB, ImageNet mean/std), which the zoo's fused
preprocessing applies to BGR frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.data.base import IMAGENET_MEAN, IMAGENET_STD

VOC_CLASSES = 21  # torchvision's COCO_WITH_VOC_LABELS weights


def torchvision_model(path: str, source: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """`source` is the BuildRequest's Source: (network, record, dataset record for the manifest)."""
    from edgeseg.build.onnx_import.declare import Declared, Resolved
    from edgeseg.build.onnx_import.labels import resolve_labels
    from edgeseg.models.torchvision_weights import build_from_torchvision

    network, record = build_from_torchvision(path, source.model, source.model_options.get("backbone"))
    resolved = Resolved()
    for name, value in (source.declared or Declared()).said().items():
        resolved.offer(name, value, "--" + name.replace("_", "-"))
    if network.num_classes == VOC_CLASSES:
        resolved.offer("classes", "voc", "torchvision's COCO_WITH_VOC_LABELS classes")
    labels = resolve_labels(resolved, network.num_classes, Path(path))
    print(f"weights: torchvision {record['torchvision']} state dict {path} ({network.num_classes} classes, "
          f"{labels.source} names from {resolved.sources['classes']}); torchvision's preprocessing: RGB, "
          "ImageNet mean/std")
    dataset = {"name": labels.source, "classes": list(labels.classes), "palette": [list(c) for c in labels.palette],
               "ignore_index": labels.ignore_index, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return network, record, dataset
