"""Real network sources: RTSP cameras served on the loopback interface by GStreamer's RTSP server, killed and
restarted mid-stream, several of them with a video file through one engine; and real GStreamer pipelines
through an OpenCV that has GStreamer (Debian's, in the .venv-gst of `make system-streams`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from rtspkit import GST_PYTHON, REPO, RtspServer, missing, rtsp_server_available
from streamkit import QUIET, frames_in

from edgeseg.runtime import load
from edgeseg.runtime.pipeline import Feed, Pipeline, PipelineConfig
from edgeseg.runtime.sinks import CallbackSink, VideoSink
from edgeseg.runtime.sources import RTSP, Reconnect, SourceError, VideoFile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rtsp_ok():
    reason = rtsp_server_available()
    if reason:
        missing(reason)


def quick_rtsp(url: str, give_up_s: float = 30.0, log=None) -> RTSP:
    """A camera over RTSP whose reads time out after 2 s and whose reconnects start at 0.2 s (tests wait less)."""
    return RTSP(url, timeout_ms=2000, reconnect=Reconnect(first_s=0.2, max_s=1.0, give_up_s=give_up_s, stall_s=2.0),
                log=log or (lambda m: None))


def by_name(stats) -> dict:
    return {s["name"]: s for s in stats["sources"]} if isinstance(stats, dict) else {
        s["name"]: s for s in stats.sources}


def check_accounting(source: dict) -> None:
    f = source["frames"]
    assert f["captured"] == f["processed"] + f["dropped"], source


def test_three_sources_through_one_engine_survive_a_camera_restart(rtsp_ok, engine_dir, long_video, tmp_path):
    """The issue's scenario through the API: two RTSP cameras and a video file, one camera's server killed
    (SIGKILL, no teardown) after 15 frames and started again 1.5 s later on the same port."""
    logs: list[str] = []
    with RtspServer("front") as front, RtspServer("rear") as rear:
        seen, restarted = [], threading.Event()

        def outage() -> None:
            rear.kill()
            time.sleep(1.5)
            rear.start()
            restarted.set()

        def watch(result) -> None:
            seen.append(result.index)
            if len(seen) == 15:
                threading.Thread(target=outage, daemon=True).start()

        outputs = {name: tmp_path / f"{name}.mp4" for name in ("front", "rear", "side")}
        feeds = [Feed(quick_rtsp(front.url), [VideoSink(outputs["front"])], "front"),
                 Feed(quick_rtsp(rear.url, log=logs.append), [VideoSink(outputs["rear"]), CallbackSink(watch)], "rear"),
                 Feed(VideoFile(long_video), [VideoSink(outputs["side"])], "side")]
        with load(engine_dir) as session:
            stats = Pipeline(feeds, session, config=PipelineConfig(max_frames=45, **QUIET)).run()
    assert restarted.is_set() and rear.starts == 2
    sources = by_name(stats)
    assert sources["rear"]["frames"]["reconnects"] >= 1 and sources["front"]["frames"]["reconnects"] == 0
    assert any("rear" in line and "reconnected" in line for line in logs)
    for name, source in sources.items():
        check_accounting(source)
        assert source["frames"]["processed"] == 45 and source["stopped_by"] == "max-frames", source
        assert source["error"] is None and frames_in(outputs[name]) == 45
        assert source["outputs"][0]["frames"] == 45
    assert stats.frames["processed"] == 135 and stats.stopped_by == "max-frames" and stats.error is None
    assert stats.frames["captured"] == sum(s["frames"]["captured"] for s in sources.values())


def test_a_source_that_never_comes_back_does_not_hold_the_others(rtsp_ok, engine_dir, long_video, tmp_path):
    """One camera's server is killed for good: its feed gives up with the error; the paced video streams on to
    its own limit; the run then ends with the camera's error, every output playable."""
    with RtspServer("gone") as gone:
        seen = []

        def watch(result) -> None:
            seen.append(result.index)
            if len(seen) == 10:
                gone.kill()

        side = VideoFile(long_video, live=True, pace=True)  # a 30 FPS camera stand-in, 150 frames = 5 s
        feeds = [Feed(quick_rtsp(gone.url, give_up_s=2.0), [VideoSink(tmp_path / "gone.mp4"), CallbackSink(watch)],
                      "gone"), Feed(side, [VideoSink(tmp_path / "side.mp4")], "side")]
        with load(engine_dir) as session:
            pipeline = Pipeline(feeds, session, config=PipelineConfig(max_frames=150, **QUIET), log=lambda m: None)
            with pytest.raises(SourceError, match="gave up after"):
                pipeline.run()
    sources = by_name(pipeline.stats)
    assert sources["gone"]["stopped_by"] == "error" and "gave up" in sources["gone"]["error"]
    assert sources["side"]["stopped_by"] == "max-frames" and sources["side"]["frames"]["processed"] == 150
    assert sources["side"]["error"] is None
    for name, source in sources.items():
        check_accounting(source)
        assert frames_in(tmp_path / f"{name}.mp4") == source["frames"]["processed"] > 0
    assert pipeline.stats.stopped_by == "error" and "gave up" in pipeline.stats.error


class Cli:
    """`edgeseg stream` in its own process, its console lines collected as they come."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edgeseg", "stream", *argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.lines: list[str] = []  # stderr: the console lines and the error
        self.out: list[str] = []  # stdout: the start line and the summary
        self._readers = [threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True),
                         threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True)]
        for reader in self._readers:
            reader.start()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """The first console line matching `pattern` (the stream's progress), waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = next((m for m in map(re.compile(pattern).search, list(self.lines)) if m), None)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}: {self.lines[-5:]}")

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return self.proc.returncode, "".join(self.out), "".join(self.lines)


def test_the_cli_streams_two_cameras_and_a_video_across_a_server_restart(rtsp_ok, engine_dir, long_video, tmp_path):
    """The same from the command line: named sources, one output per source by {source}, one stats file."""
    with RtspServer("front") as front, RtspServer("rear") as rear:
        cli = Cli(["--engine", str(engine_dir), "--rtsp", f"front={front.url}", "--rtsp", f"rear={rear.url}",
                   "--video", f"side={long_video}", "--max-frames", "60", "--give-up", "20",
                   "--output", str(tmp_path / "{source}.mp4"), "--stats", str(tmp_path / "s.json"),
                   "--report-every", "0.2", "--engine-fps", "0"])
        cli.wait_for(r"rear ([1-9]\d) frames")  # the rear camera has delivered 10 frames or more
        rear.kill()
        time.sleep(1.5)
        rear.start()
        code, out, err = cli.finish()
    assert code == 0, err
    stats = json.loads((tmp_path / "s.json").read_text())
    sources = by_name(stats)
    assert list(sources) == ["front", "rear", "side"]
    assert sources["rear"]["frames"]["reconnects"] >= 1 and "rear" in out and "reconnects" in out
    for name, source in sources.items():
        check_accounting(source)
        assert source["frames"]["processed"] == 60 and frames_in(tmp_path / f"{name}.mp4") == 60
    assert stats["frames"]["reconnects"] == sum(s["frames"]["reconnects"] for s in sources.values())


def test_a_camera_that_never_comes_back_ends_with_the_give_up_error_and_a_playable_video(rtsp_ok, engine_dir,
                                                                                       tmp_path):
    with RtspServer("cam") as cam:
        cli = Cli(["--engine", str(engine_dir), "--rtsp", cam.url, "--give-up", "3",
                   "--output", str(tmp_path / "cam.mp4"), "--stats", str(tmp_path / "s.json"),
                   "--report-every", "0.2", "--engine-fps", "0"])
        cli.wait_for(r"^([1-9]\d) frames")
        cam.kill()
        code, _, err = cli.finish(60)
    assert code == 2 and "gave up after" in err and "fix:" in err and "Traceback" not in err
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["stopped_by"] == "error" and "gave up" in stats["error"]
    check_accounting(stats)
    processed = stats["frames"]["processed"]
    assert processed > 10 and frames_in(tmp_path / "cam.mp4") == processed


# -- GStreamer: a real pipeline through an OpenCV that has GStreamer ---------------------------------------------
@pytest.fixture(scope="module")
def gst_python():
    if not GST_PYTHON.exists():
        missing(f"no Python with Debian's OpenCV at {GST_PYTHON}")
    return GST_PYTHON


@pytest.mark.parametrize("pipeline", [
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=128,height=72,framerate=30/1 ! videoconvert "
    "! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1",
    "filesrc location={video} ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink",
])
def test_a_real_gstreamer_pipeline_streams_through_the_engine(gst_python, pipeline, engine_dir, long_video, tmp_path):
    """`edgeseg stream --gst` on the smallest vehicle image: Debian's OpenCV and numpy, ONNX Runtime, no torch."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    doctor = subprocess.run([str(gst_python), "-m", "edgeseg", "doctor"], capture_output=True, text=True, env=env)
    assert "GStreamer yes" in doctor.stdout + doctor.stderr, doctor.stdout + doctor.stderr
    done = subprocess.run([str(gst_python), "-m", "edgeseg", "stream", "--engine", str(engine_dir),
                           "--gst", pipeline.format(video=long_video), "--max-frames", "30",
                           "--output", str(tmp_path / "gst.mp4"), "--stats", str(tmp_path / "s.json"),
                           "--report-every", "0", "--engine-fps", "0"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["source"]["kind"] == "gstreamer" and stats["frames"]["processed"] == 30
    check_accounting(stats)
    assert frames_in(tmp_path / "gst.mp4") == 30  # read back with the project's own OpenCV (FFmpeg)


def test_the_gstreamer_environment_has_no_torch(gst_python):
    """The .venv-gst image is what the runtime promises to need: numpy, OpenCV, one inference library."""
    done = subprocess.run([str(gst_python), "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                          capture_output=True, text=True)
    assert done.stdout.strip() == "None"
