"""The engine subcommands end to end: export, build, doctor, bench."""

from __future__ import annotations

import json

import pytest
import torch

from edgeseg.cli.main import main
from edgeseg.models import build
from edgeseg.train.checkpoint import save


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from edgeseg.data.synthetic import SYNTHETIC_INFO

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fastscnn.pt"
    save(path, build("fastscnn", 11), {"dataset": SYNTHETIC_INFO.to_dict(), "train_crop": [64, 96]})
    return path


@pytest.mark.slow  # export with parity (28 s)
def test_export_reports_nodes_and_parity(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--parity", "synthetic:2"]) == 0
    text = capsys.readouterr().out
    assert "exported" in text and "nodes" in text and "argmax agreement" in text and out.is_file()
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow  # two builds and a bench (39 s)
def test_build_then_bench_side_by_side(checkpoint, tmp_path, capsys):
    engines = []
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert main(["build", "--checkpoint", str(checkpoint), "--backend", backend, "--out", str(out)]) == 0
        engines.append(str(out))
    assert "built" in capsys.readouterr().out
    report = tmp_path / "bench.json"
    assert main(["bench", *engines, "--data", "synthetic:2", "--iterations", "4", "--warmup", "1", "--rounds", "2",
                 "--no-progress", "--json", str(report)]) == 0
    table = capsys.readouterr().out
    assert "torch" in table and "onnxruntime" in table and "1.00x" in table
    results = json.loads(report.read_text())["results"]
    assert [r["backend"] for r in results] == ["torch", "onnxruntime"]
    assert all(r["iterations"] == 4 and r["fps"] > 0 for r in results)


def test_build_without_checkpoint_explains(capsys):
    assert main(["build", "--model", "lraspp", "--backend", "onnxruntime", "--input-size", "64x64"]) == 2
    err = capsys.readouterr().err
    assert "no --checkpoint" in err and "--random-weights" in err


def test_doctor_lists_every_backend(capsys):
    assert main(["doctor", "--json"]) == 0
    rows = {r["backend"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"tensorrt", "openvino", "onnxruntime", "torch"}
    assert rows["onnxruntime"]["usable"] and rows["onnxruntime"]["version"]
    assert all(r["usable"] or r["reason"] for r in rows.values())


def test_doctor_says_which_video_back_ends_opencv_has(capsys):
    """Read from OpenCV's own build information, whatever this machine's OpenCV was built with."""
    import cv2

    from edgeseg.runtime.sources import opencv_video_io

    assert main(["doctor"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("OpenCV ")][0]
    found = opencv_video_io()
    for name, ok in found.items():
        assert f"{name} {'yes' if ok else 'no'}" in line
    section = cv2.getBuildInformation()
    assert found["FFmpeg"] == ("FFMPEG:" in section and section.split("FFMPEG:")[1].split()[0] == "YES")


def test_the_video_io_section_is_read_line_by_line():
    from edgeseg.runtime.sources import opencv_video_io

    info = ("  Video I/O:\n    FFMPEG:                      NO\n    GStreamer:                   YES (1.22.0)\n"
            "    v4l/v4l2:                    NO\n")
    assert opencv_video_io(info) == {"FFmpeg": False, "GStreamer": True, "V4L2": False}
    assert opencv_video_io("") == {"FFmpeg": False, "GStreamer": False, "V4L2": False}
