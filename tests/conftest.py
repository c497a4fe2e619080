"""Shared fixtures: small datasets written in each real format, made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakedata import mount_tmpfs, write_camvid


@pytest.fixture
def camvid_root(tmp_path) -> Path:
    return write_camvid(tmp_path / "camvid")


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write in: a read-only tmpfs as root (permissions do not stop root), else mode 0555."""
    import os
    import subprocess

    where = tmp_path / "ro"
    if os.geteuid() == 0:
        yield mount_tmpfs(where, "size=64k,ro")
        subprocess.run(["umount", "-l", str(where)], check=False)
    else:
        where.mkdir()
        where.chmod(0o555)
        yield where
        where.chmod(0o755)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte (root only): a disk with no room for anything."""
    import subprocess

    disk = mount_tmpfs(tmp_path / "full", "size=64k")
    try:
        with open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)
