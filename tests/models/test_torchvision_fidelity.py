"""Our networks against torchvision's, from layouts captured by tools/torchvision_reference.py
(torchvision cannot be installed on these machines; its pure-Python model code was run from an
unpacked wheel to write the fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeseg.models import build
from edgeseg.models.backbones import BACKBONES, build_backbone

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "torchvision"
SEGMENTATION = sorted(p.stem for p in FIXTURES.glob("*.json") if not p.stem.startswith(("imagenet_", "detection_")))
IMAGENET = sorted(p.stem for p in FIXTURES.glob("imagenet_*.json"))


def _fixture(stem: str) -> dict:
    return json.loads((FIXTURES / f"{stem}.json").read_text())


def test_fixtures_cover_every_reference_network():
    assert set(SEGMENTATION) == {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                                 "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"}
    assert {s.removeprefix("imagenet_") for s in IMAGENET} >= {"resnet50", "resnet101", "mobilenet_v2",
                                                              "mobilenet_v3_large"}


@pytest.mark.parametrize("stem", SEGMENTATION)
def test_segmentation_model_matches_torchvision_layout(stem, tmp_path):
    ref = _fixture(stem)
    model = build(ref["edgeseg_model"], ref["num_classes"], **ref["edgeseg_options"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: shape for k, shape in ref["state_dict"]}
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]

    # A torchvision-format checkpoint file loads with strict=True through weights_only reading.
    from edgeseg.models.weights import load_weights, read_weights

    state = {k: torch.randn(shape) if shape else torch.tensor(3) for k, shape in ref["state_dict"]}
    path = tmp_path / f"{stem}.pth"
    torch.save(state, path)
    load_weights(model, read_weights(path), source=str(path))
    key = ref["state_dict"][-1][0]
    assert torch.equal(model.state_dict()[key], state[key])


@pytest.mark.parametrize("stem", IMAGENET)
def test_imagenet_backbone_file_loads(stem, tmp_path):
    ref = _fixture(stem)
    name = ref["edgeseg_backbone"]
    if name not in BACKBONES:
        pytest.skip(f"no {name} backbone")
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=generator) if shape else torch.tensor(7) for k, shape in ref["state_dict"]}
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    backbone = build_backbone(name, [name], pretrained=str(path))
    loaded = backbone.state_dict()
    mapped = {backbone.imagenet_key(k): k for k in state if backbone.imagenet_key(k) is not None}
    assert mapped, "no ImageNet key maps into the backbone"
    for ours, theirs in mapped.items():
        assert torch.equal(loaded[ours], state[theirs]), ours
    # every parameter of the backbone came from the file (nothing left at random init)
    assert set(mapped) == set(loaded)


def test_imagenet_file_without_num_batches_tracked_loads(tmp_path):
    """torchvision's original ImageNet files predate PyTorch 0.4.1's num_batches_tracked."""
    ref = _fixture("imagenet_resnet50")
    state = {k: torch.randn(shape) for k, shape in ref["state_dict"] if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet50-legacy.pth"
    torch.save(state, path)
    backbone = build_backbone("resnet50", ["resnet50"], pretrained=str(path))
    assert torch.equal(backbone.conv1.weight, state["conv1.weight"])


def test_torchvision_numerics_when_importable():
    """Same weights, same outputs. Runs only where torchvision imports (see tools/torchvision_reference.py)."""
    tvseg = pytest.importorskip("torchvision.models.segmentation",
                                reason="torchvision is not installable on CPU-only machines; "
                                       "tools/torchvision_reference.py numerics runs this check from a wheel")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    import torchvision_reference

    assert torchvision_reference.compare_numerics(tvseg) == 0
