"""edgeseg's Mask R-CNN against torchvision's: the same state-dict keys, shapes and parameter counts, a
torchvision-format checkpoint file loading with strict=True through weights_only reading, and the same
detections from the same weights on the same image. The references were recorded by running torchvision
0.29.1 itself (tools/maskrcnn_reference.py, in a separate environment: torchvision cannot be installed
beside the CPU torch edgeseg runs on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detection_weights import seeded_image, seeded_state_dict
from edgeseg.models import build
from edgeseg.models.maskrcnn.ops import box_iou
from edgeseg.models.weights import load_weights, read_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "torchvision"
NETWORKS = ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn"]
MASK_BRANCH = ("roi_heads.mask_head.", "roi_heads.mask_predictor.")


def _reference(name: str) -> dict:
    return json.loads((FIXTURES / f"detection_{name}.json").read_text())


@pytest.mark.parametrize("name", NETWORKS)
def test_layout_matches_torchvision(name, tmp_path):
    ref = _reference(name)
    model = build("maskrcnn", ref["num_classes"], **ref["edgeseg_options"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: shape for k, shape in ref["state_dict"]}
    if name.startswith("fasterrcnn"):  # the edge variant is torchvision's detector plus v1's mask branch
        assert {k for k in ours if k not in theirs} == {k for k in ours if k.startswith(MASK_BRANCH)}
        ours = {k: v for k, v in ours.items() if not k.startswith(MASK_BRANCH)}
        mask_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(MASK_BRANCH))
        assert sum(p.numel() for p in model.parameters()) - mask_params == ref["num_params"]
    else:
        assert sum(p.numel() for p in model.parameters()) == ref["num_params"]
    assert list(ours) == list(theirs)  # same keys in the same order
    assert ours == theirs
    if name.startswith("fasterrcnn"):
        return
    path = tmp_path / f"{name}_coco.pth"  # a checkpoint file as torchvision's COCO weights are saved
    torch.save(seeded_state_dict(theirs), path)
    load_weights(model, read_weights(path), source=str(path))
    key = ref["state_dict"][-1][0]
    assert torch.equal(model.state_dict()[key], seeded_state_dict({key: theirs[key]})[key])


def test_the_documented_parameter_counts():
    counts = {name: _reference(name)["num_params"] for name in NETWORKS}
    assert counts["maskrcnn_resnet50_fpn"] == 44_401_393
    assert counts["maskrcnn_resnet50_fpn_v2"] == 46_359_409


def _match(ours: dict, ref: dict) -> list[tuple[int, int]]:
    """Pairs (ours, reference) by the reference's order: same label, best box IoU. Detections with equal
    scores may come out of NMS in another order, or one of two tied boxes may be kept."""
    boxes, labels = torch.tensor(ref["boxes"]).reshape(-1, 4), torch.tensor(ref["labels"])
    iou = box_iou(boxes, ours["boxes"])
    iou[labels[:, None] != ours["labels"][None, :]] = 0
    pairs = []
    for i in range(len(labels)):
        j = int(iou[i].argmax())
        if iou[i, j] > 0.9:
            pairs.append((j, i))
            iou[:, j] = 0
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_detections_match_torchvision(name):
    ref = _reference(name)
    num = ref["numerics"]
    model = build("maskrcnn", num["num_classes"], min_size=num["min_size"], max_size=num["max_size"],
                  **ref["edgeseg_options"])
    model.load_state_dict(seeded_state_dict({k: list(v.shape) for k, v in model.state_dict().items()}))
    model.eval()
    with torch.no_grad():
        out = model([seeded_image(*num["image_size"])])[0]
    expected = num["detections"]
    assert len(expected["scores"]) == 100 and len(out["scores"]) == 100
    pairs = _match(out, expected)
    assert len(pairs) >= 98, f"only {len(pairs)} of 100 torchvision detections found"
    ours_idx, ref_idx = map(list, zip(*pairs))
    scores = torch.tensor(expected["scores"])[ref_idx]
    assert torch.allclose(out["scores"][ours_idx], scores, atol=1e-5)
    gap = (out["boxes"][ours_idx] - torch.tensor(expected["boxes"])[ref_idx]).abs().amax(dim=1)
    exact = [pair for pair, g in zip(pairs, gap.tolist()) if g < 1e-3]  # the same box, to float rounding
    assert len(exact) >= 95, f"{100 - len(exact)} boxes differ from torchvision's by 1e-3 px or more"
    if "mask_sums" in expected:
        ours_idx, ref_idx = map(list, zip(*exact))
        masks = out["masks"][:, 0]
        assert masks.shape[-2:] == tuple(num["image_size"])
        sums = torch.tensor(expected["mask_sums"])[ref_idx]
        assert torch.allclose(masks[ours_idx].sum(dim=(1, 2)), sums, rtol=1e-4)
        areas = (masks[ours_idx] > 0.5).sum(dim=(1, 2))
        assert (areas - torch.tensor(expected["mask_areas"])[ref_idx]).abs().max() <= 2
