"""`edgeseg demo` end to end on a tiny configuration: every step runs for real, on small synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from edgeseg import backends
from edgeseg.demo import DemoConfig, run_demo
from edgeseg.errors import EdgesegError

pytestmark = pytest.mark.skipif(not backends.availability("onnxruntime").ok, reason="onnxruntime is not installed")


def test_demo_runs_every_step_and_writes_every_result(tmp_path):
    out = tmp_path / "demo"
    lines: list[str] = []
    config = DemoConfig(data="synthetic:6", out=out, epochs=1, backend="onnxruntime", input_size=(64, 96),
                        video_frames=12, calib_size=4, max_miou_drop=100.0, progress=False)
    result = run_demo(config, log=lines.append)

    for name, path in result.files.items():
        assert Path(path).exists(), name
    saved = json.loads((out / "demo.json").read_text())
    assert saved["engines"].keys() == {"fp32", "int8"}
    manifest = json.loads((out / "engines" / "int8" / "manifest.json").read_text())
    assert manifest["precision"]["requested"] == "int8" and manifest["input"]["shape"][1:3] == [64, 96]
    evaluation = json.loads((out / "eval-int8.json").read_text())
    assert result.miou_int8 == pytest.approx(100 * evaluation["miou"])
    assert result.miou_fp32 == pytest.approx(100 * evaluation["reference"]["miou"])
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    stream = json.loads((out / "stream.json").read_text())
    assert stream["frames"]["processed"] == 12 and result.end_to_end_fps == pytest.approx(stream["fps"])
    assert result.engine_fps > 0 and result.bench_fps > 0
    assert "<svg" in (out / "report.html").read_text() and "int8" in (out / "report.md").read_text()
    assert [line for line in lines if line.startswith("[7/7]")]
    assert "the three numbers" in result.summary()


def test_demo_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "old.txt").write_text("a result from an earlier run")
    with pytest.raises(EdgesegError, match="already holds files"):
        run_demo(DemoConfig(out=tmp_path))
    assert (tmp_path / "old.txt").read_text() == "a result from an earlier run"
