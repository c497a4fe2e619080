"""Fixtures the INT8 tests share: an untrained Fast-SCNN checkpoint at a small input size."""

from __future__ import annotations

import pytest
import torch

from edgeseg.checkpoint import save
from edgeseg.models import build

INT8_SIZE = (64, 96)


@pytest.fixture(scope="module")
def int8_checkpoint(tmp_path_factory):
    from edgeseg.data.synthetic import SYNTHETIC_INFO

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fastscnn.pt"
    save(path, build("fastscnn", 11), {"dataset": SYNTHETIC_INFO.to_dict(), "train_crop": list(INT8_SIZE)})
    return path
