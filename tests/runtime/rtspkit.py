"""Real network sources for the stream tests: GStreamer's RTSP server on the loopback interface, started and
killed like a camera losing power, and the Debian OpenCV (with GStreamer) environment of `make system-streams`.

Where they are missing the tests skip with the reason, except in CI: `.ci/run` installs them and sets
EDGESEG_REQUIRE_SYSTEM_STREAMS, which turns a missing piece into a failure.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tools" / "rtsp_server.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")
GST_PYTHON = Path(os.environ.get("EDGESEG_GST_PYTHON", REPO / ".venv-gst" / "bin" / "python"))
REQUIRED = os.environ.get("EDGESEG_REQUIRE_SYSTEM_STREAMS") == "1"
FIX = "run `make system-streams` as root (Debian: GStreamer's RTSP server, python3-gi, python3-opencv)"


def missing(reason: str) -> None:
    """Skip with the reason, or fail where CI promised the piece is installed."""
    if REQUIRED:
        pytest.fail(f"{reason}; EDGESEG_REQUIRE_SYSTEM_STREAMS is set, so this is an error ({FIX})")
    pytest.skip(f"{reason} ({FIX})")


def rtsp_server_available() -> str | None:
    """None if the system Python can run GStreamer's RTSP server, else why not."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} does not exist"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')")
    done = subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, text=True)
    return None if done.returncode == 0 else f"no GStreamer RTSP server for {SYSTEM_PYTHON}: {done.stderr.strip()[-200:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """tools/rtsp_server.py in its own process: `start()` waits until it listens; `kill()` takes it away."""

    def __init__(self, mount: str, size: str = "72x128", fps: int = 15) -> None:
        self.port, self.mount, self.size, self.fps = free_port(), mount, size, fps
        self.url = f"rtsp://127.0.0.1:{self.port}/{mount}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 20.0) -> "RtspServer":
        cmd = [str(SYSTEM_PYTHON), str(SERVER), "--port", str(self.port), "--mount", self.mount,
               "--size", self.size, "--fps", str(self.fps)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""  # "ready rtsp://..." once it listens
        if not line.startswith("ready"):
            err = self.process.stderr.read() if self.process.poll() is not None else ""
            self.kill()
            raise RuntimeError(f"the RTSP server did not start: {line!r} {err}")
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: the camera loses power (no RTSP TEARDOWN, the stream just stops)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
