"""Engines the serve-export tests share: a small untrained Fast-SCNN built for each backend and graph form,
and a TensorRT engine "on paper" (no TensorRT runs here; see paper_tensorrt_engine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fakedata import untrained_checkpoint

from edgeseg import backends

SIZE = (64, 96)


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("serve-ckpt") / "fastscnn.pt", "fastscnn", SIZE)


def build(checkpoint: Path, out: Path, backend: str, **graph) -> Path:
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine

    if not backends.availability(backend).ok:
        pytest.skip(f"{backend} is not installed here")
    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend=backend, precision="fp32",
                              graph=Graph(**graph), destination=Destination(out=str(out))))
    return out


@pytest.fixture(scope="session")
def ort_engine(serve_checkpoint, tmp_path_factory):
    """ONNX Runtime, FP32, ends at low-resolution logits (the host tail)."""
    return build(serve_checkpoint, tmp_path_factory.mktemp("serve-eng") / "ort", "onnxruntime")


@pytest.fixture(scope="session")
def ov_engine(serve_checkpoint, tmp_path_factory):
    return build(serve_checkpoint, tmp_path_factory.mktemp("serve-eng") / "ov", "openvino")


@pytest.fixture(scope="session")
def dynamic_engine(serve_checkpoint, tmp_path_factory):
    """ONNX Runtime with an open batch, height and width (--dynamic)."""
    return build(serve_checkpoint, tmp_path_factory.mktemp("serve-eng") / "dyn", "onnxruntime", dynamic=True)


@pytest.fixture(scope="session")
def host_preprocess_engine(serve_checkpoint, tmp_path_factory):
    """Takes normalized float NCHW (--no-fuse-preprocess): DeepStream must normalize with one scale."""
    return build(serve_checkpoint, tmp_path_factory.mktemp("serve-eng") / "host", "onnxruntime",
                 fuse_preprocess=False)


@pytest.fixture(scope="session")
def labels_engine(serve_checkpoint, tmp_path_factory):
    """ONNX Runtime with the tail in the graph (--tail engine): uint8 label maps out."""
    return build(serve_checkpoint, tmp_path_factory.mktemp("serve-eng") / "labels", "onnxruntime", tail="engine")


def paper_tensorrt_engine(source: Path, out: Path) -> Path:
    """tools/paper_tensorrt.py: a TensorRT engine directory with a marker where the plan would be (no TensorRT
    runs on these machines); serve-export copies the plan and checks against the ONNX it was built from."""
    path = Path(__file__).resolve().parents[2] / "tools" / "paper_tensorrt.py"
    spec = importlib.util.spec_from_file_location("paper_tensorrt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.paper_tensorrt_engine(source, out)


@pytest.fixture(scope="session")
def trt_engine(labels_engine, tmp_path_factory):
    return paper_tensorrt_engine(labels_engine, tmp_path_factory.mktemp("serve-eng") / "trt")


@pytest.fixture(scope="session")
def ov_dynamic_engine(serve_checkpoint, tmp_path_factory):
    return build(serve_checkpoint, tmp_path_factory.mktemp("serve-eng") / "ovdyn", "openvino", dynamic=True)


@pytest.fixture(scope="session")
def batch2_engine(serve_checkpoint, tmp_path_factory):
    return build(serve_checkpoint, tmp_path_factory.mktemp("serve-eng") / "batch2", "onnxruntime", batch=2)
