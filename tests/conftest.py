"""Shared fixtures: small datasets written in each real format, made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakedata import write_camvid


@pytest.fixture
def camvid_root(tmp_path) -> Path:
    return write_camvid(tmp_path / "camvid")
