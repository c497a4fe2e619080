"""Fixtures for the bench/report/gate tests: one tiny engine built from a checkpoint (so --baseline-torch
works). bench_helpers.py makes bench results from chosen numbers, for tests of the statistics."""

from __future__ import annotations

import pytest

TINY_SIZE = (64, 96)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from edgeseg.checkpoint import save
    from edgeseg.data.synthetic import SYNTHETIC_INFO
    from edgeseg.models import build

    torch.manual_seed(0)
    checkpoint = tmp_path_factory.mktemp("ckpt") / "fastscnn.pt"
    save(checkpoint, build("fastscnn", 11), {"dataset": SYNTHETIC_INFO.to_dict(), "train_crop": list(TINY_SIZE)})
    return checkpoint


def _build(checkpoint, backend: str, out):
    from edgeseg.build import BuildRequest, build_engine

    build_engine(BuildRequest(checkpoint=str(checkpoint), backend=backend, input_size=TINY_SIZE, out=str(out),
                              exporter="torchscript"))
    return out


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint, tmp_path_factory):
    return _build(tiny_checkpoint, "onnxruntime", tmp_path_factory.mktemp("engines") / "tiny-ort")


@pytest.fixture(scope="session")
def tiny_openvino(tiny_checkpoint, tmp_path_factory):
    pytest.importorskip("openvino", reason="openvino is not installed")
    return _build(tiny_checkpoint, "openvino", tmp_path_factory.mktemp("engines") / "tiny-ov")
