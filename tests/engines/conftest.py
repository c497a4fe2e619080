"""Fixtures the INT8 tests share: an untrained Fast-SCNN checkpoint at a small input size."""

from __future__ import annotations

import pytest
from fakedata import untrained_checkpoint

INT8_SIZE = (64, 96)


@pytest.fixture(scope="module")
def int8_checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "fastscnn.pt", "fastscnn", INT8_SIZE)
