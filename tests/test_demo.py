"""`edgeseg demo` end to end on a tiny configuration: every step runs for real, on small synthetic data.

It runs as a user runs it, `python -m edgeseg demo` in a process of its own: training forks a data
loader worker, which must not inherit the inference-library threads that earlier tests leave behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edgeseg import backends
from edgeseg.demo import DemoConfig, run_demo
from edgeseg.errors import EdgesegError

pytestmark = pytest.mark.skipif(not backends.availability("onnxruntime").ok, reason="onnxruntime is not installed")


@pytest.mark.slow  # the whole demo: train, FP32 and INT8 builds, eval, bench, stream (27 s)
def test_demo_runs_every_step_and_writes_every_result(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "edgeseg", "demo", "--data", "synthetic:6", "--out", str(out), "--epochs", "1",
               "--backend", "onnxruntime", "--input-size", "64x96", "--video-frames", "12", "--calib-size", "4",
               "--max-miou-drop", "100", "--no-progress"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[7/7]" in run.stdout and "the three numbers" in run.stdout

    result = json.loads((out / "demo.json").read_text())
    for name, path in result["files"].items():
        assert Path(path).exists(), name
    assert result["engines"].keys() == {"fp32", "int8"}
    manifest = json.loads((out / "engines" / "int8" / "manifest.json").read_text())
    assert manifest["precision"]["requested"] == "int8" and manifest["input"]["shape"][1:3] == [64, 96]
    evaluation = json.loads((out / "eval-int8.json").read_text())
    assert result["miou_int8"] == pytest.approx(100 * evaluation["miou"])
    assert result["miou_fp32"] == pytest.approx(100 * evaluation["reference"]["miou"])
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    stream = json.loads((out / "stream.json").read_text())
    assert stream["frames"]["processed"] == 12 and result["end_to_end_fps"] == pytest.approx(stream["fps"])
    assert result["engine_fps"] == pytest.approx(stream["engine_only"]["fps"]) and result["bench_fps"] > 0
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "<svg" in html and "<h2>Streams</h2>" in html and "Streams (`edgeseg stream`)" in md
    assert f"{stream['fps']:.1f}" in md and f"{100 * stream['ratio']:.1f}%" in md
    # what the engines see: the strip of held-out frames, embedded in the HTML, linked from the Markdown
    assert evaluation["samples"]["strip"] == "eval-int8.frames.jpg" and len(evaluation["samples"]["frames"]) == 4
    strip = cv2.imread(str(out / "eval-int8.frames.jpg"))
    assert strip is not None and strip.shape[0] > 4 * 200  # four frames, each drawn 320 wide
    assert "<h2>Segmentation: int8</h2>" in html and "data:image/jpeg;base64," in html
    assert "](eval-int8.frames.jpg)" in md and "| class | reference IoU % | engine IoU % | drop (points) |" in md


def test_demo_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "old.txt").write_text("a result from an earlier run")
    with pytest.raises(EdgesegError, match="already holds files"):
        run_demo(DemoConfig(out=tmp_path))
    assert (tmp_path / "old.txt").read_text() == "a result from an earlier run"
