"""TensorRT engines: these run where TensorRT and an NVIDIA GPU exist (Jetson, desktop GPUs) and skip
elsewhere. TensorRT cannot be installed on the CPU-only machines CI uses."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from fakedata import untrained_checkpoint

from edgeseg import backends
from edgeseg.build.orchestrator import BackendOptions, BuildRequest, Destination, Graph, Int8, Source, build_engine
from edgeseg.errors import EdgesegError
from edgeseg.runtime import load

STATUS = backends.availability("tensorrt")
pytestmark = pytest.mark.skipif(not STATUS.ok, reason=f"TensorRT cannot run here: {STATUS.reason}")
SIZE = (64, 96)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "lraspp.pt", "lraspp", SIZE)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_the_torch_reference(precision, checkpoint, tmp_path):
    cache = tmp_path / "timing.cache"
    result = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="tensorrt", precision=precision,
                                       destination=Destination(out=str(tmp_path / "trt")),
                                       backend_options=BackendOptions(timing_cache=str(cache))))
    assert cache.is_file() and cache.stat().st_size > 0  # reused by the next build on this GPU
    ref = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="torch",
                                    destination=Destination(out=str(tmp_path / "ref"))))
    frames = np.random.default_rng(0).integers(0, 256, (1, *SIZE, 3), dtype=np.uint8)
    with load(result.path) as session, load(ref.path) as reference:
        agreement = (session.infer(frames) == reference.infer(frames)).mean()
        for _ in range(3):  # buffers are reused across calls
            session.infer(frames)
    assert agreement >= (0.999 if precision == "fp32" else 0.98)
    assert result.manifest.backend["options"]["compute_capability"]


def test_dynamic_batch_profile(checkpoint, tmp_path):
    result = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="tensorrt",
                                       graph=Graph(input_size=SIZE, dynamic=True),
                                       destination=Destination(out=str(tmp_path / "trt"))))
    with load(result.path) as session:
        for n in (1, 3):
            frames = np.zeros((n, *SIZE, 3), np.uint8)
            assert session.infer(frames).shape == (n, *SIZE)


def test_engine_from_another_tensorrt_version_says_how_to_rebuild(checkpoint, tmp_path):
    result = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="tensorrt",
                                       destination=Destination(out=str(tmp_path / "trt"))))
    path = result.path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["backend"]["version"] = "9.0.0"
    path.write_text(json.dumps(manifest))
    with pytest.raises(EdgesegError, match="built with TensorRT 9.0.0") as err:
        load(result.path)
    assert "--force" in err.value.fix


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_tensorrt_int8_engine(mode, checkpoint, camvid_root, tmp_path):
    import tensorrt as trt

    if mode == "implicit" and int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip("TensorRT 11 has no implicit INT8")
    request = BuildRequest(Source(checkpoint=str(checkpoint)), backend="tensorrt", precision="int8",
                           int8=Int8(calib=f"camvid:{camvid_root}:train", calib_size=4, guard_iterations=5),
                           backend_options=BackendOptions(int8_mode=mode, timing_cache=str(tmp_path / "timing.cache")))
    result = build_engine(replace(request, destination=Destination(out=str(tmp_path / "int8"))))
    m = result.manifest
    assert m.precision["as_run"] == "int8" and m.backend["options"]["int8_mode"] == mode
    assert {"int8", "fp32", "fp16"} <= set(m.extra["speed_guard"]["latency_ms"])
    ref = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="torch",
                                    destination=Destination(out=str(tmp_path / "ref"))))
    frames = np.random.default_rng(0).integers(0, 256, (1, *SIZE, 3), dtype=np.uint8)
    with load(result.path) as session, load(ref.path) as reference:
        assert (session.infer(frames) == reference.infer(frames)).mean() >= 0.8
    if mode == "implicit":  # the second build reads the calibration cache the first one wrote
        again = build_engine(replace(request, destination=Destination(out=str(tmp_path / "again"))))
        assert again.manifest.precision["as_run"] == "int8"
