"""Shipped reference weights: `edgeseg build --model NAME` without --checkpoint builds them, INT8 calibrates
on the shipped train frames, a damaged file is refused by its sha256, and the package really carries
what its index names."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from fakedata import make_scene, untrained_checkpoint

import edgeseg.weights as weights
from edgeseg.cli import main
from edgeseg.errors import CheckpointError, EdgesegError
from edgeseg.io import sha256_file
from edgeseg.manifest import read_manifest
from edgeseg.train import checkpoint

SIZE = (64, 96)
KEY = "fastscnn-test"


def _write_index(folder, entries) -> None:
    (folder / "index.json").write_text(json.dumps({"schema_version": 1, "weights": entries}))


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A package weights folder of one FP16 Fast-SCNN checkpoint and six calibration frames."""
    folder = tmp_path / "weights"
    frames = folder / "calibration" / "road-train"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        image, _ = make_scene(rng, SIZE)
        cv2.imwrite(str(frames / f"frame{i}.jpg"), image)
    source = untrained_checkpoint(tmp_path / "source.pt", "fastscnn", SIZE)
    torch.save(checkpoint.compact(checkpoint.load(source)), folder / f"{KEY}.pt")
    entry = {"key": KEY, "model": "fastscnn", "options": {}, "file": f"{KEY}.pt",
             "sha256": sha256_file(folder / f"{KEY}.pt"), "card": f"{KEY}.md", "dataset": "RoadTest",
             "miou": 0.4321, "per_class_iou": {}, "calibration": "calibration/road-train"}
    _write_index(folder, [entry])
    monkeypatch.setattr(weights, "HERE", folder)
    monkeypatch.setattr(weights, "INDEX", folder / "index.json")
    return folder


def test_build_without_checkpoint_uses_the_shipped_weights_and_says_so(shipped, tmp_path, capsys):
    out = tmp_path / "engine"
    assert main(["build", "--model", "fastscnn", "--backend", "onnxruntime", "--out", str(out)]) == 0
    console = capsys.readouterr().out
    assert console.splitlines()[0].startswith("weights: the ones shipped with edgeseg, fastscnn trained on RoadTest, "
                                              "43.2% val mIoU")
    manifest = read_manifest(out)
    assert manifest.model["weights"] == {"shipped": KEY, "dataset": "RoadTest", "val_miou": 0.4321,
                                         "sha256": sha256_file(shipped / f"{KEY}.pt")}
    assert manifest.model["checkpoint"]["sha256"] == manifest.model["weights"]["sha256"]
    assert manifest.input.shape[1:3] == SIZE  # the shipped checkpoint's recorded size


@pytest.mark.slow
def test_int8_without_calib_calibrates_on_the_shipped_frames(shipped, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["build", "--model", "fastscnn", "--precision", "int8", "--backend", "onnxruntime",
                 "--no-speed-guard", "--out", str(out)]) == 0
    assert "calibration: the RoadTest train frames shipped with edgeseg" in capsys.readouterr().out
    calibration = read_manifest(out).extra["calibration"]
    assert str(shipped / "calibration" / "road-train") in calibration["spec"]
    assert calibration["images"] == 6


def test_a_damaged_shipped_file_is_refused_before_loading(shipped, tmp_path, capsys):
    blob = bytearray((shipped / f"{KEY}.pt").read_bytes())
    blob[-100] ^= 0xFF
    (shipped / f"{KEY}.pt").write_bytes(bytes(blob))
    assert main(["build", "--model", "fastscnn", "--backend", "onnxruntime", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr()
    assert "do not match their sha256 in index.json" in err.err and "reinstall edgeseg" in err.err
    assert "weights:" not in err.out  # refused before anything claimed to use them
    assert not (tmp_path / "e").exists()
    with pytest.raises(CheckpointError, match="do not match their sha256"):
        weights.require_for_model("fastscnn").verified_path()


def test_a_model_without_shipped_weights_is_refused_with_the_fix(shipped, tmp_path, capsys):
    assert main(["build", "--model", "unet", "--backend", "onnxruntime", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no weights ship with edgeseg for unet (shipped: fastscnn (-))" in err
    assert "--checkpoint runs/x/best.pt" in err


def test_a_variant_matches_by_its_options(shipped):
    _write_index(shipped, [{"key": "dl", "model": "deeplabv3plus", "options": {"backbone": "mobilenetv2"},
                            "file": "dl.pt", "sha256": "0" * 64, "card": "dl.md", "dataset": "CamVid", "miou": 0.5}])
    assert weights.for_model("deeplabv3plus").key == "dl"  # the bare name: the shipped variant
    assert weights.for_model("deeplabv3plus", {"backbone": "mobilenetv2"}).key == "dl"
    assert weights.for_model("deeplabv3plus", {"backbone": "resnet101"}) is None
    with pytest.raises(EdgesegError, match="deeplabv3plus backbone=resnet101"):
        weights.require_for_model("deeplabv3plus", {"backbone": "resnet101"})


def test_own_checkpoint_int8_without_calib_still_refuses(shipped, tmp_path, capsys):
    own = untrained_checkpoint(tmp_path / "own.pt", "fastscnn", SIZE)
    assert main(["build", "--checkpoint", str(own), "--precision", "int8", "--backend", "onnxruntime",
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "INT8 needs calibration images" in err
    assert "calibration/camvid-train holds the frames shipped" in err  # offered, not taken


def test_backbone_with_a_checkpoint_is_refused(shipped, tmp_path, capsys):
    own = untrained_checkpoint(tmp_path / "own.pt", "fastscnn", SIZE)
    assert main(["build", "--checkpoint", str(own), "--backbone", "mobilenetv2", "--out", str(tmp_path / "e")]) == 2
    assert "--backbone mobilenetv2 does not apply" in capsys.readouterr().err


def test_models_lists_the_shipped_weights(shipped, capsys):
    assert main(["models", "fastscnn", "lraspp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith("fastscnn")).endswith("RoadTest 43.2% val mIoU")
    assert next(line for line in lines if line.startswith("lraspp")).endswith("  -")


def test_eval_checkpoint_takes_a_shipped_model_name(shipped, tmp_path, capsys):
    from fakedata import write_camvid

    data = write_camvid(tmp_path / "camvid", size=SIZE)
    assert main(["eval", "--checkpoint", "fastscnn", "--data", f"camvid:{data}:val", "--no-progress"]) == 0
    assert "mIoU" in capsys.readouterr().out


def test_compact_halves_the_weights_and_drops_the_training_state(tmp_path):
    source = checkpoint.load(untrained_checkpoint(tmp_path / "s.pt", "fastscnn", SIZE))
    source["train_state"] = {"optimizer": {}}
    small = checkpoint.compact(source)
    assert "train_state" not in small
    floats = [v for v in small["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert any(not v.is_floating_point() for v in small["state_dict"].values())  # BN counters stay integers
    key = next(k for k, v in source["state_dict"].items() if v.is_floating_point())
    source["state_dict"][key] = source["state_dict"][key].clone().fill_(1e6)  # beyond FP16's 65504
    with pytest.raises(CheckpointError, match="non-finite"):
        checkpoint.compact(source)


def test_the_package_carries_what_its_index_names():
    """The real shipped files (not the fixture): each verified by sha256, with its card, and real train
    frames to calibrate on."""
    entries = weights.shipped()
    if not entries:
        pytest.skip("this checkout ships no weights yet (edgeseg/weights/index.json is absent)")
    for entry in entries.values():
        assert entry.verified_path().stat().st_size > 0
        assert (weights.HERE / entry.card).is_file()
        frames = sorted(entry.calibration_dir().glob("*.jpg"))
        assert len(frames) >= 24
        sources = (entry.calibration_dir() / "SOURCES.txt").read_text()
        assert "train split" in sources and all(f.name in sources for f in frames)


@pytest.mark.slow
def test_a_wheel_carries_the_weights_and_the_calibration_frames(tmp_path):
    """`pip install edgeseg` (not the checkout) must still build the headline command without flags."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(weights.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        pytest.skip("edgeseg is installed from a wheel here, not from its source tree")
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ and egg-info there
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(".git", "runs", "engines", "build", "*.egg-info",
                                                                 "__pycache__", "cache", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True)
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("edgeseg-*.whl"))).namelist())
    frames = {n for n in names if n.startswith("edgeseg/weights/calibration/camvid-train/") and n.endswith(".jpg")}
    assert len(frames) >= 24 and "edgeseg/weights/calibration/camvid-train/SOURCES.txt" in names
    for entry in weights.shipped().values():
        assert {f"edgeseg/weights/{entry.file}", f"edgeseg/weights/{entry.card}", "edgeseg/weights/index.json"} <= names


def test_an_engine_already_there_is_refused_before_the_weights_are_read(shipped, tmp_path, capsys, monkeypatch):
    """The headline command run twice: the second run says so at once, not after loading and calibrating."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "engines" / "fastscnn-fp32-onnxruntime").mkdir(parents=True)
    assert main(["build", "--model", "fastscnn", "--backend", "onnxruntime"]) == 2
    captured = capsys.readouterr()
    assert "engines/fastscnn-fp32-onnxruntime already exists" in captured.err and "--force" in captured.err
    assert "weights:" not in captured.out
