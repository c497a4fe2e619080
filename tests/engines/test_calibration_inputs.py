"""Calibration inputs: counts checked where they are read, folders of images accepted as the README says,
lists that are not files named as such, and range caches that are crafted with the right key: never a
crash, never NaN/inf ranges in a published graph."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.build.budget import open_validation
from edgeseg.build.calibration import (
    CalibrationSet,
    cache_is_valid,
    cache_path,
    open_calibration,
    ranges_problem,
    seal_cache,
)
from edgeseg.build.quantize import qdq_from_onnx
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.io import sha256_file

SIZE = (16, 16)


@pytest.mark.parametrize("count,message", [(0, "at least 1, got 0"), (-3, "at least 1, got -3")])
def test_calibration_counts_under_one_are_refused_not_replaced(camvid_root, count, message):
    with pytest.raises(BadInputError, match=message) as info:
        open_calibration(f"camvid:{camvid_root}:train", SIZE, count=count, progress=False)
    assert "--calib-size" in info.value.problem


def test_a_negative_validation_limit_is_refused(camvid_root):
    with pytest.raises(BadInputError, match="at least 1, got -1"):
        open_validation(f"camvid:{camvid_root}:val", SIZE, 11, limit=-1, progress=False)
    assert len(open_validation(f"camvid:{camvid_root}:val", SIZE, 11, limit=2, progress=False).frames) == 2


def _image_folder(root: Path, count: int = 5) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(root / f"frame_{i:03d}.png"), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_spec_and_a_bare_folder_are_calibration_images(tmp_path):
    folder = _image_folder(tmp_path / "frames")
    calib = open_calibration(f"folder:{folder}", SIZE, count=3, progress=False)
    assert calib.frames.shape == (3, *SIZE, 3) and calib.names == ["frame_000", "frame_002", "frame_004"]
    assert open_calibration(str(folder), SIZE, count=3, progress=False).fingerprint == calib.fingerprint


def test_calibration_folders_that_are_not_folders_of_images_are_named(tmp_path, camvid_root):
    with pytest.raises(BadInputError, match="does not exist"):
        open_calibration(f"folder:{tmp_path / 'gone'}", SIZE, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="is a file, not a folder"):
        open_calibration(f"folder:{tmp_path / 'file'}", SIZE, progress=False)
    with pytest.raises(BadInputError, match="holds no images") as info:
        open_calibration(str(camvid_root), SIZE, progress=False)
    assert f"camvid:{camvid_root}:train" in info.value.fix


def test_a_calibration_list_that_is_not_a_file_says_what_it_is(tmp_path):
    (tmp_path / "list.txt").mkdir()
    with pytest.raises(BadInputError, match="is a directory, not a file"):
        open_calibration(str(tmp_path / "list.txt"), SIZE, progress=False)
    os.mkfifo(tmp_path / "fifo.txt")
    with pytest.raises(BadInputError, match="is a FIFO"):
        open_calibration(str(tmp_path / "fifo.txt"), SIZE, progress=False)
    (tmp_path / "dir_image").mkdir()
    (tmp_path / "ok.txt").write_text("dir_image\n")
    with pytest.raises(BadInputError, match=r"dir_image \(listed in .*ok.txt\) is a directory"):
        open_calibration(str(tmp_path / "ok.txt"), SIZE, progress=False)


def test_docs_document_folder_calibration():
    readme = (Path(__file__).parents[2] / "docs" / "int8.md").read_text()
    assert "folder:DIR" in readme


# --- range caches ---------------------------------------------------------------------------------


def _tiny_graph(path: Path) -> Path:
    """uint8 NHWC frames -> Cast, Transpose, Mul -> Conv -> Relu -> Conv: quantizes in well under a second."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("frames", TensorProto.UINT8, [1, *SIZE, 3])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, *SIZE])
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.float32(1 / 255), "s")]
    nodes = [helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2], name="transpose"),
             helper.make_node("Mul", ["t", "s"], ["n"], name="scale"),
             helper.make_node("Conv", ["n", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["logits"], pads=[1, 1, 1, 1], name="conv2")]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@dataclass
class Cached:
    """A tiny graph quantized once, so its range cache exists, and what crafting that cache needs."""

    src: Path
    calib: CalibrationSet
    root: Path
    cache: Path
    key: dict
    original: dict

    def quantize(self, name: str):
        return qdq_from_onnx(self.src, self.src.parent / f"{name}.onnx", self.calib, "minmax", cache_root=self.root)

    def crafted(self, mutate, name: str):
        """Rewrite the cache with `mutate` and a sidecar that matches it (the right key, the new sha256)."""
        data = json.loads(json.dumps(self.original))
        mutate(data)
        self.cache.write_text(json.dumps(data))
        self.cache.with_suffix(".key.json").write_text(json.dumps({"key": self.key, "sha256": sha256_file(self.cache)}))
        return self.quantize(name)


@pytest.fixture()
def cached(tmp_path) -> Cached:
    src = _tiny_graph(tmp_path / "tiny.onnx")
    calib = CalibrationSet("test", ["a", "b"], np.random.default_rng(0).integers(0, 255, (2, *SIZE, 3), np.uint8))
    first = qdq_from_onnx(src, tmp_path / "q0.onnx", calib, "minmax", cache_root=tmp_path / "cache")
    assert not first.cache_hit
    cache = Path(first.cache)
    key = json.loads(cache.with_suffix(".key.json").read_text())["key"]
    return Cached(src, calib, tmp_path / "cache", cache, key, json.loads(cache.read_text()))


def _finite_graph(path: str) -> bool:
    model = onnx.load(path)
    return all(np.isfinite(numpy_helper.to_array(t)).all() for t in model.graph.initializer
               if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16))


@pytest.mark.parametrize("name,mutate,reason", [
    ("nan", lambda d: d["data"]["c1"].update(highest=float("nan")), "not finite"),
    ("inf", lambda d: d["data"]["c1"].update(lowest=float("-inf")), "not finite"),
    ("inverted", lambda d: d["data"]["c1"].update(lowest=5.0, highest=-5.0), "lowest is above highest"),
    ("no_data", lambda d: d.pop("data"), "not a range cache"),
    ("not_tensors", lambda d: d.update(CLS="Other"), "not a range cache"),
    ("unknown_field", lambda d: d["data"]["c1"].update(foo=1), "unknown fields"),
    ("string", lambda d: d["data"]["c1"].update(highest="8.0"), "not a number"),
    ("method", lambda d: d.update(calibration_method={"CLS": "CalibrationMethod", "value": "CalibrationMethod.Entropy"}),
     "not made by minmax"),
    ("missing_tensor", lambda d: d["data"].pop("c1"), "does not fit this graph"),
])
def test_a_crafted_cache_with_the_right_key_is_recalibrated_never_used(cached, capsys, name, mutate, reason):
    capsys.readouterr()
    result = cached.crafted(mutate, name)
    assert not result.cache_hit and reason in capsys.readouterr().out
    assert _finite_graph(result.path)
    assert cache_is_valid(cached.cache, cached.key)  # recalibrated and sealed again: the next build hits it
    assert ranges_problem(cached.cache, "minmax") is None


def test_the_good_cache_is_still_used(cached):
    assert cached.crafted(lambda d: None, "same").cache_hit


def test_a_sidecar_of_the_wrong_shape_is_not_a_crash(cached):
    cached.cache.with_suffix(".key.json").write_text("[1, 2]")
    assert not cache_is_valid(cached.cache, cached.key)
    assert not cached.quantize("again").cache_hit


def test_non_finite_ranges_are_never_sealed(tmp_path):
    calib = CalibrationSet("t", ["a"], np.zeros((1, *SIZE, 3), np.uint8))
    path = cache_path("0" * 64, calib, "minmax", tmp_path)
    path.write_text(json.dumps({"CLS": "TensorsData", "calibration_method": {"CLS": "CalibrationMethod",
                                                                             "value": "CalibrationMethod.MinMax"},
                                "data": {"x": {"lowest": 0.0, "highest": float("nan"), "CLS": "TensorData"}}}))
    with pytest.raises(EdgesegError, match="not finite"):
        seal_cache(path, {"method": "minmax"})
    assert not path.with_suffix(".key.json").exists()


def test_a_directory_where_the_cache_goes_is_named(cached):
    cached.cache.unlink()
    cached.cache.mkdir()
    with pytest.raises(BadInputError, match="is a directory, not a file"):
        cached.quantize("blocked")


# --- TensorRT's implicit-calibrator cache: its content is checked too, not only its key and sha256 ----------
GOOD_TRT_CACHE = b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n(Unnamed Layer* 8) [Constant]_output: 39137939\n"


@pytest.mark.parametrize("data,reason", [
    (b"TRT-100300-EntropyCalibration2\ninput: 7fc00000\n", "unusable scale nan"),
    (b"TRT-100300-EntropyCalibration2\ninput: 7f800000\n", "unusable scale inf"),
    (b"TRT-100300-EntropyCalibration2\ninput: bf800000\n", "unusable scale -1.0"),
    (b"TRT-100300-MinMaxCalibration\ninput: 3c010a14\n", "made by MinMaxCalibration"),
    (b"input: 3c010a14\n", "no TRT-<version>-<algorithm> header"),
    (b"TRT-100300-EntropyCalibration2\ninput 3c010a14\n", "not 'tensor: hex scale' (line 2)"),
    (b"TRT-100300-EntropyCalibration2\ninput: 3c010a14zz\n", "not 'tensor: hex scale' (line 2)"),
    (b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\ninput: 3c010a15\n", "names tensor 'input' twice"),
    (b"TRT-100300-EntropyCalibration2\n", "holds no tensor scales"),
    (b"", "no TRT-<version>-<algorithm> header"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not text"),
], ids=["nan", "inf", "negative", "other-algorithm", "no-header", "no-colon", "bad-hex", "twice", "empty-body",
        "empty", "binary"])
def test_a_crafted_tensorrt_cache_with_the_right_key_is_recalibrated_never_used(tmp_path, capsys, data, reason):
    from edgeseg.backends.tensorrt import int8 as trt_int8

    cache, key = tmp_path / "c.cache", {"onnx_sha256": "a", "method": trt_int8.IMPLICIT_METHOD}
    cache.write_bytes(data)
    seal_cache(cache, key)  # a sidecar that matches: the key and sha256 alone would let it through
    assert cache_is_valid(cache, key)
    assert trt_int8.cache_problem(data) is not None and reason in trt_int8.cache_problem(data)
    assert trt_int8.read_valid_cache(cache, key) is None
    assert reason in capsys.readouterr().out
    with pytest.raises(EdgesegError, match="TensorRT wrote a calibration cache that"):
        trt_int8.write_cache(tmp_path / "new.cache", key, data)  # never sealed for the next build
    assert not (tmp_path / "new.cache").exists()


def test_the_good_tensorrt_cache_is_read_and_written(tmp_path):
    from edgeseg.backends.tensorrt import int8 as trt_int8

    assert trt_int8.cache_problem(GOOD_TRT_CACHE) is None
    assert trt_int8.cache_problem(b"TRT-8601-EntropyCalibration2\r\nx: 0\r\n") is None  # zero scale, CRLF, old version
    cache, key = tmp_path / "c.cache", {"onnx_sha256": "a", "method": trt_int8.IMPLICIT_METHOD}
    trt_int8.write_cache(cache, key, GOOD_TRT_CACHE)
    assert trt_int8.read_valid_cache(cache, key) == GOOD_TRT_CACHE


@pytest.mark.parametrize("version,code", [("10.3.0.26", 100300), ("8.6.1.6", 8601), ("10.13.2", 101302),
                                          ("7.0.0", 7000), ("11.0", 110000)])
def test_tensorrt_version_codes_match_the_cache_headers_tensorrt_writes(version, code):
    from edgeseg.backends.tensorrt import int8 as trt_int8

    assert trt_int8.version_code(version) == code


def test_a_cache_from_another_tensorrt_release_is_recalibrated(tmp_path, capsys):
    from edgeseg.backends.tensorrt import int8 as trt_int8

    cache, key = tmp_path / "c.cache", {"onnx_sha256": "a", "method": trt_int8.IMPLICIT_METHOD}
    trt_int8.write_cache(cache, key, GOOD_TRT_CACHE, "10.3.0.26")  # TRT-100300: the release that wrote it
    assert trt_int8.read_valid_cache(cache, key, "10.3.0.26") == GOOD_TRT_CACHE
    assert trt_int8.read_valid_cache(cache, key, "10.8.0.43") is None  # an upgrade: its scales are not reused
    assert "another TensorRT release (header TRT-100300; this is TensorRT 10.8.0.43" in capsys.readouterr().out
    old = b"TRT-8601-EntropyCalibration2\nx: 3c010a14\n"
    assert trt_int8.cache_problem(old, "8.6.1.6") is None
    assert "another TensorRT release" in trt_int8.cache_problem(old, "10.3.0")
