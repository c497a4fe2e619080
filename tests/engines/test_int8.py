"""INT8: calibration from real images only, range caches that are reused and never stale, Q/DQ
graphs for ONNX Runtime, NNCF for OpenVINO, and engine evaluation against a reference."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest

from edgeseg import backends
from edgeseg.build.calibration import CalibrationOverlapWarning, open_calibration
from edgeseg.build.export import ExportOptions, export_onnx
from edgeseg.build.orchestrator import BuildRequest, Destination, Int8, Source, build_engine
from edgeseg.build.quantize import qdq_from_onnx
from edgeseg.cli.main import main
from edgeseg.errors import EdgesegError
from edgeseg.models import build

SIZE = (64, 96)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_int8_refuses_without_calibration_data(int8_checkpoint, tmp_path):
    with pytest.raises(EdgesegError, match="never calibrates on random data") as err:
        build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="onnxruntime", precision="int8",
                                  destination=Destination(out=str(tmp_path / "e"))))
    assert "--calib" in err.value.fix and not (tmp_path / "e").exists()


def test_calibration_is_real_frames_and_overlap_is_warned(camvid_root):
    calib = open_calibration(f"camvid:{camvid_root}:train", SIZE, count=3, progress=False)
    assert calib.frames.shape == (3, *SIZE, 3) and calib.frames.dtype == np.uint8 and not calib.overlap
    with pytest.warns(CalibrationOverlapWarning, match="also in the evaluation split"):
        leaky = open_calibration(f"camvid:{camvid_root}:val", SIZE, count=3, eval_spec=f"camvid:{camvid_root}:val",
                                 progress=False)
    assert len(leaky.overlap) == 3
    again = open_calibration(f"camvid:{camvid_root}:train", SIZE, count=3, progress=False)
    assert again.fingerprint == calib.fingerprint
    other = open_calibration(f"camvid:{camvid_root}:train", (64, 64), count=3, progress=False)
    assert other.fingerprint != calib.fingerprint


def test_calibration_list_file(camvid_root, tmp_path):
    images = sorted((camvid_root / "train").iterdir())[:2]
    listing = tmp_path / "calib.txt"
    listing.write_text("# two images\n" + "\n".join(str(p) for p in images) + "\n")
    assert len(open_calibration(str(listing), SIZE, progress=False)) == 2
    listing.write_text("missing.png\n")
    with pytest.raises(EdgesegError, match="missing.png"):
        open_calibration(str(listing), SIZE, progress=False)


@pytest.mark.slow  # INT8 calibration, three times (14 s)
def test_qdq_graph_ranges_are_cached_and_stale_caches_are_not_used(int8_checkpoint, camvid_root, tmp_path, capsys):
    model = build("fastscnn", 11).eval()
    export_onnx(model, tmp_path / "m.onnx", 11, MEAN, STD, ExportOptions(SIZE))
    calib = open_calibration(f"camvid:{camvid_root}:train", SIZE, count=4, progress=False)
    cache_root = tmp_path / "cache"
    first = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "q1.onnx", calib, "minmax", cache_root=cache_root)
    assert not first.cache_hit and first.quantized_nodes > 10
    q = onnx.load(str(tmp_path / "q1.onnx"))
    scales = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    zero_points = {i.name: i for i in q.graph.initializer}
    # symmetric activations (what TensorRT requires): every zero point is 0
    assert all(not onnx.numpy_helper.to_array(zero_points[n.input[2]]).any() for n in scales if len(n.input) > 2)
    second = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "q2.onnx", calib, "minmax", cache_root=cache_root)
    assert second.cache_hit and second.cache == first.cache
    data = json.loads(open(first.cache).read())
    with open(first.cache, "w") as f:  # a cache edited after it was written is stale
        json.dump({**data, "tampered": True}, f)
    third = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "q3.onnx", calib, "minmax", cache_root=cache_root)
    assert not third.cache_hit and "stale" in capsys.readouterr().out


@pytest.mark.slow  # INT8 build and evaluation (20-31 s)
@pytest.mark.parametrize("backend", [b for b in ("onnxruntime", "openvino") if backends.availability(b).ok])
def test_int8_engine_builds_runs_and_is_evaluated_against_fp32(backend, int8_checkpoint, camvid_root, tmp_path, capsys):
    fp32 = build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend=backend,
                                     destination=Destination(out=str(tmp_path / "fp32"))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationOverlapWarning)  # train split: no overlap with val
        int8 = build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend=backend, precision="int8",
                                         int8=Int8(calib=f"camvid:{camvid_root}:train", calib_size=4,
                                                   val=f"camvid:{camvid_root}:val"),
                                         destination=Destination(out=str(tmp_path / "int8"))))
    m = int8.manifest
    assert m.precision["requested"] == "int8" and m.precision["as_run"] == "int8"
    assert m.extra["calibration"]["images"] == 4 and m.extra["calibration"]["overlap_with_eval"] == 0
    report = tmp_path / "eval.json"
    assert main(["eval", "--engine", str(int8.path), "--reference", str(fp32.path), "--data",
                 f"camvid:{camvid_root}:val", "--json", str(report), "--no-progress"]) == 0
    result = json.loads(report.read_text())
    assert {"miou", "reference", "miou_drop_points", "pixel_agreement", "per_class_iou_drop_points"} <= set(result)
    expected_drop = round(100 * (result["reference"]["miou"] - result["miou"]), 3)
    assert result["miou_drop_points"] == pytest.approx(expected_drop, abs=1e-3)
    assert 0.0 <= result["pixel_agreement"] <= 1.0
    assert "pixel agreement with the reference" in capsys.readouterr().out
