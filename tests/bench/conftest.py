"""Fixtures for the bench/report/gate tests: one tiny engine built from a checkpoint (so --baseline-torch
works). bench_helpers.py makes bench results from chosen numbers, for tests of the statistics."""

from __future__ import annotations

import pytest
from fakedata import untrained_checkpoint

TINY_SIZE = (64, 96)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "fastscnn.pt", "fastscnn", TINY_SIZE)


def _build(checkpoint, backend: str, out):
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine

    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend=backend,
                              graph=Graph(input_size=TINY_SIZE, exporter="torchscript"),
                              destination=Destination(out=str(out))))
    return out


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint, tmp_path_factory):
    return _build(tiny_checkpoint, "onnxruntime", tmp_path_factory.mktemp("engines") / "tiny-ort")


@pytest.fixture(scope="session")
def tiny_openvino(tiny_checkpoint, tmp_path_factory):
    pytest.importorskip("openvino", reason="openvino is not installed")
    return _build(tiny_checkpoint, "openvino", tmp_path_factory.mktemp("engines") / "tiny-ov")
