"""INT8 within an mIoU budget, and the speed guard that says whether INT8 is worth deploying."""

from __future__ import annotations

import pytest

from edgeseg import backends
from edgeseg.backends.tensorrt import int8 as trt_int8
from edgeseg.build.budget import restore_until_within
from edgeseg.build.calibration import open_calibration
from edgeseg.build.export import ExportOptions, export_onnx
from edgeseg.build.orchestrator import BuildRequest, Destination, Int8, Source, build_engine
from edgeseg.build.quantize import edge_nodes, float_nodes, qdq_from_onnx
from edgeseg.errors import EdgesegError
from edgeseg.models import build

SIZE = (64, 96)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_budget_search_keeps_the_fewest_layers_that_fit():
    ranking = [(f"conv{i}", f"relu{i}") for i in range(20)]
    calls = []

    def evaluate(kept):  # each float layer of the first 11 wins back 0.1 points of a 1.1-point drop
        calls.append(len(kept))
        return 50.0 - 1.1 + 0.1 * min(len(kept) // 2, 11)

    kept, steps, met = restore_until_within(ranking, evaluate, 50.0, max_drop=0.5)
    assert met and len(kept) == 2 * 6 and kept[:2] == ["conv0", "relu0"]  # 6 layers: drop 0.5
    assert [s.layers_in_float for s in steps][:5] == [0, 1, 2, 4, 8] and len(steps) < 12
    assert all((s.drop <= 0.5) == (s.layers_in_float >= 6) for s in steps)


def test_budget_search_that_cannot_fit_returns_the_best_measured_step():
    scores = {0: 40.0, 1: 44.0, 2: 43.0, 3: 42.5}
    kept, steps, met = restore_until_within([("a",), ("b",), ("c",)], lambda kept: scores[len(kept)], 50.0, 1.0)
    assert not met and kept == ["a"] and max(s.miou for s in steps) == 44.0


def test_preprocessing_and_logit_tail_stay_in_float(tmp_path, camvid_root):
    export_onnx(build("fastscnn", 11).eval(), tmp_path / "m.onnx", 11, MEAN, STD, ExportOptions(SIZE))
    edges = edge_nodes(tmp_path / "m.onnx")
    calib = open_calibration(f"camvid:{camvid_root}:train", SIZE, count=2, progress=False)
    qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", calib, "minmax", cache_root=tmp_path / "cache")
    floating = float_nodes(tmp_path / "q.onnx")
    assert edges and set(edges) <= set(floating)
    assert any("ArgMax" in kind for kind in floating.values())
    assert not any("Conv)" in kind for kind in floating.values())  # every convolution is INT8


@pytest.mark.slow  # INT8 build within an mIoU budget (11-16 s)
@pytest.mark.parametrize("backend", [b for b in ("onnxruntime", "openvino") if backends.availability(b).ok])
def test_int8_build_fits_the_budget_and_records_speed_and_precisions(backend, int8_checkpoint, camvid_root, tmp_path):
    result = build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend=backend, precision="int8",
                                       int8=Int8(calib=f"camvid:{camvid_root}:train", calib_size=4,
                                                 calib_method="minmax", val=f"camvid:{camvid_root}:val",
                                                 max_miou_drop=0.0, max_float_layers=3, guard_iterations=5),
                                       destination=Destination(out=str(tmp_path / "int8"))))
    extra = result.manifest.extra
    budget = extra["miou_budget"]
    assert budget["images"] >= 2 and budget["max_drop"] == 0.0
    assert budget["met"] == (budget["fp32_miou"] - budget["final_miou"] <= 0.0)
    assert budget["drop"] == pytest.approx(budget["fp32_miou"] - budget["final_miou"], abs=1e-3)
    if budget["strategy"] == "sqnr-ranking" and budget["int8_miou"] < budget["fp32_miou"]:
        assert budget["steps"] and budget["ranking"]
    assert extra["layers_not_int8"]  # at least the ArgMax / preprocessing: every non-INT8 layer is listed
    guard = extra["speed_guard"]
    assert {"int8", "fp32"} <= set(guard["latency_ms"]) and guard["recommended"] in guard["latency_ms"]
    assert guard["int8_fastest"] == (guard["recommended"] == "int8")
    assert guard["int8_fastest"] or guard["why"]
    assert extra["recommended"]["precision"] == guard["recommended"]


def test_budget_needs_a_held_out_split(int8_checkpoint, camvid_root, tmp_path):
    with pytest.raises(EdgesegError, match="held-out split") as err:
        build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="onnxruntime", precision="int8",
                                  int8=Int8(calib=f"camvid:{camvid_root}:train", calib_size=2, max_miou_drop=0.5),
                                  destination=Destination(out=str(tmp_path / "e"))))
    assert "--val" in err.value.fix and not (tmp_path / "e").exists()
    with pytest.raises(EdgesegError, match="int8 builds"):
        build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="onnxruntime",
                                  int8=Int8(max_miou_drop=0.5, val=f"camvid:{camvid_root}:val"),
                                  destination=Destination(out=str(tmp_path / "f"))))


def test_tensorrt_calibration_cache_is_keyed_and_never_used_stale(tmp_path, capsys):
    cache, key = tmp_path / "c.cache", {"onnx_sha256": "a", "method": "trt-entropy2"}
    assert trt_int8.read_valid_cache(cache, key) is None
    trt_int8.write_cache(cache, key, b"TRT-1000-EntropyCalibration2\nframes: 3c010a14\n")
    assert trt_int8.read_valid_cache(cache, key).startswith(b"TRT-")
    assert trt_int8.read_valid_cache(cache, {**key, "onnx_sha256": "b"}) is None  # another graph
    cache.write_bytes(b"TRT-1000-EntropyCalibration2\nframes: 00000000\n")  # edited after writing
    assert trt_int8.read_valid_cache(cache, key) is None and "stale" in capsys.readouterr().out


def test_tensorrt_int8_modes_are_checked_before_building():
    with pytest.raises(EdgesegError, match="no implicit INT8"):
        trt_int8.check_mode("implicit", 11)
    trt_int8.check_mode("implicit", 10)
    trt_int8.check_mode("explicit", 11)
    with pytest.raises(EdgesegError, match="DLA does not run Q/DQ") as err:
        trt_int8.check_mode("explicit", 10, dla_core=0)
    assert "--trt-int8 implicit" in err.value.fix
    with pytest.raises(EdgesegError, match="strongly typed"):
        trt_int8.check_mode("implicit", 10, strongly_typed=True)
