"""torchvision segmentation state dicts build directly: `edgeseg build --model deeplabv3 --backbone ...
--checkpoint tv.pth`, with torchvision's preprocessing and (21 classes) VOC's class names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeseg.cli import main
from edgeseg.data.voc import VOC_INFO
from edgeseg.manifest import read_manifest
from edgeseg.models import build
from edgeseg.runtime import load

SIZE = (64, 96)


def _torchvision_file(tmp_path, nested: bool):
    """A state dict in torchvision's layout (the zoo's deeplabv3_mobilenet_v3_large is key for key
    torchvision's: tests/models/test_torchvision_fidelity.py), saved as torchvision's scripts save it."""
    torch.manual_seed(0)
    net = build("deeplabv3", 21, backbone="mobilenetv3_large", atrous_rates=[12, 24, 36], aux=True).eval()
    path = tmp_path / "deeplabv3_mobilenet_v3_large.pth"
    torch.save({"model": net.state_dict(), "epoch": 30} if nested else net.state_dict(), path)
    return net, path


def _torchvision_labels(net, frames: np.ndarray) -> np.ndarray:
    """torchvision's own recipe: RGB, /255, ImageNet normalization, out["out"], argmax."""
    x = torch.from_numpy(frames[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = net(x)
    return (out["out"] if isinstance(out, dict) else out).argmax(1).numpy()


@pytest.mark.slow  # a DeepLabV3 export and build per file layout (15-30 s each)
@pytest.mark.parametrize("nested", [False, True], ids=["state_dict", "reference_script_checkpoint"])
def test_a_torchvision_deeplabv3_state_dict_builds_with_voc_names(tmp_path, capsys, nested):
    net, path = _torchvision_file(tmp_path, nested)
    out = tmp_path / "engine"
    assert main(["build", "--model", "deeplabv3", "--backbone", "mobilenetv3_large", "--checkpoint", str(path),
                 "--input-size", "64x96", "--backend", "onnxruntime", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "torchvision deeplabv3_mobilenet_v3_large state dict" in printed and "COCO_WITH_VOC_LABELS" in printed
    manifest = read_manifest(out)
    assert manifest.classes == VOC_INFO.classes and manifest.model["torchvision"] == "deeplabv3_mobilenet_v3_large"
    assert manifest.model["options"]["aux"] is True and manifest.input.mean == (0.485, 0.456, 0.406)
    frames = np.random.default_rng(0).integers(0, 256, (2, *SIZE, 3), dtype=np.uint8)
    with load(out) as session:
        got = np.concatenate([session.infer(f[None]) for f in frames])
    assert np.mean(got == _torchvision_labels(net, frames)) >= 0.9995


def test_class_names_for_other_counts_and_wrong_variants(tmp_path, capsys):
    torch.manual_seed(0)
    net = build("lraspp", 5).eval()
    path = tmp_path / "lraspp.pth"
    torch.save(net.state_dict(), path)
    base = ["build", "--model", "lraspp", "--checkpoint", str(path), "--input-size", "64x96", "--backend", "onnxruntime"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "does not name its 5 classes" in capsys.readouterr().err
    assert main([*base, "--classes", "road,car,sky,tree,person", "--out", str(tmp_path / "b")]) == 0
    assert read_manifest(tmp_path / "b").classes == ("road", "car", "sky", "tree", "person")
    capsys.readouterr()
    assert main(["build", "--model", "deeplabv3", "--backbone", "resnet18", "--checkpoint", str(path),
                 "--input-size", "64x96", "--out", str(tmp_path / "c")]) == 2
    assert "torchvision's state dicts build as" in capsys.readouterr().err
    assert main(["build", "--checkpoint", str(path), "--input-size", "64x96", "--out", str(tmp_path / "d")]) == 2
    assert "pass --model and --backbone" in capsys.readouterr().err


def test_the_torch_reference_backend_runs_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    net = build("lraspp", 5).eval()
    path = tmp_path / "lraspp.pth"
    torch.save(net.state_dict(), path)
    out = tmp_path / "ref"
    assert main(["build", "--model", "lraspp", "--checkpoint", str(path), "--classes", "road,car,sky,tree,person",
                 "--input-size", "64x96", "--backend", "torch", "--out", str(out)]) == 0
    frames = np.random.default_rng(1).integers(0, 256, (2, *SIZE, 3), dtype=np.uint8)
    with load(out) as session:
        got = np.concatenate([session.infer(f[None]) for f in frames])
    assert np.mean(got == _torchvision_labels(net, frames)) >= 0.9995
