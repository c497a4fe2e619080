"""Record torchvision's Mask R-CNN (v1, v2) and MobileNetV3 Faster R-CNN as test fixtures: their state-dict
layouts with 91 classes, and their detections on a seeded image with seeded weights (tests/detection_weights.py)
for a 4-class head. tests/models/test_maskrcnn_fidelity.py rebuilds edgeseg's networks, loads the same
weights and compares.

torchvision needs its own environment (its wheels pull their own torch), e.g.:

    python -m venv /root/tv-venv && /root/tv-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /root/tv-venv/bin/python tools/maskrcnn_reference.py      # writes tests/fixtures/torchvision/*rcnn*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "torchvision"
sys.path.insert(0, str(ROOT / "tests"))

from detection_weights import seeded_image, seeded_state_dict  # noqa: E402

IMAGE_SIZE = (200, 300)  # resized to a 240-pixel short side: the resize path is part of the comparison
MIN_SIZE, MAX_SIZE = 240, 400
NUMERIC_CLASSES = 4  # random weights spread the softmax over the classes: 4 keeps scores above 0.05


def torchvision_models(num_classes: int, **kwargs) -> dict[str, tuple[torch.nn.Module, dict]]:
    """name -> (torchvision network in its COCO checkpoint layout, the edgeseg options that match it)."""
    from torchvision.models import mobilenet_v3_large, resnet50
    from torchvision.models.detection import FasterRCNN, MaskRCNN, maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    v1 = MaskRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), num_classes, **kwargs)
    v2 = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    anchors = ((32, 64, 128, 256, 512),) * 3
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    mobile = FasterRCNN(_mobilenet_extractor(mobilenet_v3_large(norm_layer=FrozenBatchNorm2d), True, 3),
                        num_classes, rpn_anchor_generator=AnchorGenerator(anchors, ((0.5, 1.0, 2.0),) * 3),
                        rpn_score_thresh=0.05, **kwargs)
    return {"maskrcnn_resnet50_fpn": (v1, {"backbone": "resnet50", "version": 1}),
            "maskrcnn_resnet50_fpn_v2": (v2, {"backbone": "resnet50", "version": 2}),
            "fasterrcnn_mobilenet_v3_large_fpn": (mobile, {"backbone": "mobilenetv3_large"})}


def detections(model: torch.nn.Module) -> dict:
    layout = {k: list(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_state_dict(layout))
    model.eval()
    with torch.no_grad():
        out = model([seeded_image(*IMAGE_SIZE)])[0]
    result = {"boxes": out["boxes"].tolist(), "labels": out["labels"].tolist(), "scores": out["scores"].tolist()}
    if "masks" in out:
        masks = out["masks"][:, 0]
        result["mask_sums"] = masks.sum(dim=(1, 2)).tolist()
        result["mask_areas"] = (masks > 0.5).sum(dim=(1, 2)).tolist()
    return result


def main() -> int:
    import torchvision

    FIXTURES.mkdir(parents=True, exist_ok=True)
    numeric = torchvision_models(NUMERIC_CLASSES, min_size=MIN_SIZE, max_size=MAX_SIZE)
    for name, (model, options) in torchvision_models(91).items():
        record = {"torchvision": torchvision.__version__, "torch": torch.__version__, "edgeseg_model": "maskrcnn",
                  "edgeseg_options": options, "num_classes": 91,
                  "num_params": sum(p.numel() for p in model.parameters()),
                  "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
                  "numerics": {"num_classes": NUMERIC_CLASSES, "image_size": list(IMAGE_SIZE), "min_size": MIN_SIZE,
                               "max_size": MAX_SIZE, "detections": detections(numeric[name][0])}}
        path = FIXTURES / f"detection_{name}.json"
        path.write_text(json.dumps(record) + "\n")
        count = len(record["numerics"]["detections"]["scores"])
        print(f"{path.relative_to(ROOT)}: {record['num_params']:,} parameters, {count} detections")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
