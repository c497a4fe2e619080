"""The streaming pipeline: every source kind this machine can run, sinks, stats, drops, errors and signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from streamkit import ENGINE_SIZE, FRAME_SIZE, QUIET, SlowSession
from streamkit import frames_in as _frames_in

from edgeseg.cli.main import main
from edgeseg.data.synthetic import road_video
from edgeseg.errors import EdgesegError
from edgeseg.runtime import load
from edgeseg.runtime.pipeline import Pipeline, PipelineConfig
from edgeseg.runtime.sinks import CallbackSink, PngFolder, VideoSink, output_sink
from edgeseg.runtime.sources import (
    RTSP,
    Camera,
    GStreamer,
    ImageFolder,
    LiveSource,
    Reconnect,
    SourceError,
    VideoFile,
    open_source,
    opencv_has_gstreamer,
)
from edgeseg.runtime.stats import SCHEMA_VERSION, STAGES


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """12 PNG frames named out of creation order, plus one corrupt .jpg in the middle of the sort."""
    root = tmp_path_factory.mktemp("frames")
    for k, sample in enumerate(road_video(12, FRAME_SIZE, seed=2)):
        cv2.imwrite(str(root / f"f{k:03d}.png"), sample.image)
    (root / "f005b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("ignored: not an image")
    return root


def test_video_file_processes_every_frame_and_writes_a_playable_mp4(engine_dir, video, tmp_path):
    results = []
    out = tmp_path / "out.mp4"
    with load(engine_dir) as session:
        sinks = [VideoSink(out), CallbackSink(results.append)]
        stats = Pipeline(VideoFile(video), session, sinks, PipelineConfig(**QUIET)).run()
    assert stats.frames["captured"] == stats.frames["processed"] == 30 and stats.frames["dropped"] == 0
    assert stats.stopped_by == "end" and stats.error is None and stats.source["live"] is False
    assert [r.index for r in results] == list(range(30))  # in order, none skipped
    r = results[0]
    assert r.labels.shape == ENGINE_SIZE and r.labels.dtype == np.uint8
    assert r.picture.shape == (*FRAME_SIZE, 3) and r.frame.shape == (*FRAME_SIZE, 3)  # scaled back for display
    assert _frames_in(out) == 30 and not list(tmp_path.glob(".*partial*"))  # finalized, no temp file left
    assert all(stats.stages[s].count == 30 for s in STAGES) and stats.e2e.count == 30
    import edgeseg.runtime as runtime

    assert runtime.Pipeline is Pipeline and runtime.VideoFile is VideoFile  # the top-level streaming API


def test_image_folder_is_sorted_skips_corrupt_frames_and_writes_pngs(engine_dir, image_folder, tmp_path):
    seen = []
    source = ImageFolder(image_folder)
    assert len(source) == 13  # 12 PNGs + the corrupt JPEG; notes.txt is not an image
    with load(engine_dir) as session:
        sinks = [PngFolder(tmp_path / "pngs"), CallbackSink(lambda r: seen.append(r.picture.shape))]
        stats = Pipeline(source, session, sinks, PipelineConfig(view="side", legend=False, hud=False, **QUIET)).run()
    assert stats.frames["processed"] == 12 and stats.frames["corrupt"] == 1 and stats.frames["dropped"] == 0
    assert seen[0] == (FRAME_SIZE[0], 2 * FRAME_SIZE[1], 3)  # side by side: frame | mask
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"frame_{i:06d}.png" for i in range(12)]
    first = cv2.imread(str(image_folder / "f000.png"))
    assert np.array_equal(cv2.imread(str(tmp_path / "pngs" / "frame_000000.png"))[:, :FRAME_SIZE[1]], first)


def test_live_source_keeps_only_the_latest_frame_and_counts_the_stale_ones(engine_dir, video):
    with load(engine_dir) as session:
        slow = SlowSession(session, delay=0.03)  # decoding a 72x128 frame takes well under a millisecond
        stats = Pipeline(VideoFile(video, live=True), slow, [], PipelineConfig(**QUIET)).run()
    f = stats.frames
    assert f["captured"] == 30 and f["dropped"] > 0 and f["processed"] + f["dropped"] == f["captured"]
    assert slow.calls == f["processed"] and stats.source["live"] is True


def test_max_frames_and_the_stats_json(engine_dir, video, tmp_path):
    with load(engine_dir) as session:
        config = PipelineConfig(max_frames=7, engine_fps_iterations=5, keep_inputs=3, **QUIET)
        stats = Pipeline(VideoFile(video), session, [], config).run()
    stats.write(tmp_path / "stats.json")
    data = json.loads((tmp_path / "stats.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["kind"] == "edgeseg.stream"
    assert data["frames"]["processed"] == 7 and data["stopped_by"] == "max-frames"
    assert set(data["stages"]) == set(STAGES)
    assert {"count", "mean_ms", "p50_ms", "p95_ms", "p99_ms"} <= set(data["e2e"]) and data["e2e"]["count"] == 7
    assert data["engine_only"]["iterations"] == 10 and data["engine_only"]["fps"] > 0 and data["ratio"] > 0
    assert data["engine"]["random_weights"] is True and data["engine"]["input_size"] == list(ENGINE_SIZE)
    with pytest.raises(EdgesegError, match="already exists"):
        stats.write(tmp_path / "stats.json")


def test_an_engine_failure_stops_the_stream_and_still_finalizes_the_video(engine_dir, video, tmp_path):
    out = tmp_path / "out.mp4"
    with load(engine_dir) as session:
        failing = SlowSession(session, fail_at=5)
        pipeline = Pipeline(VideoFile(video), failing, [VideoSink(out)], PipelineConfig(**QUIET))
        with pytest.raises(RuntimeError, match="engine fell over"):
            pipeline.run()
    stats = pipeline.stats
    assert stats.stopped_by == "error" and "engine fell over" in stats.error
    assert stats.frames["processed"] == 5 and _frames_in(out) == 5
    assert stats.frames["processed"] + stats.frames["dropped"] == stats.frames["captured"]


def test_a_camera_that_does_not_exist_fails_cleanly(engine_dir, capsys):
    quick = Reconnect(first_s=0.05, max_s=0.1, give_up_s=0.3)
    with load(engine_dir) as session, pytest.raises(SourceError, match="camera 97 cannot be opened") as err:
        Pipeline(Camera(97, reconnect=quick, log=lambda m: None), session, [], PipelineConfig(**QUIET)).run()
    assert "/dev/video97" in err.value.fix
    assert main(["stream", "--engine", str(engine_dir), "--camera", "97", "--give-up", "0.3"]) == 2
    printed = capsys.readouterr().err
    assert "error: camera 97 cannot be opened" in printed and "fix:" in printed and "Traceback" not in printed


def test_an_unreachable_rtsp_stream_and_a_missing_gstreamer_fail_cleanly(engine_dir):
    quick = Reconnect(first_s=0.05, max_s=0.1, give_up_s=0.3)
    with load(engine_dir) as session:
        with pytest.raises(SourceError, match="rtsp rtsp://127.0.0.1:9/none cannot be opened") as err:
            Pipeline(RTSP("rtsp://127.0.0.1:9/none", timeout_ms=1000, reconnect=quick, log=lambda m: None),
                     session, [], PipelineConfig(**QUIET)).run()
        assert "ffprobe" in err.value.fix
        if not opencv_has_gstreamer():
            with pytest.raises(SourceError, match="without GStreamer"):
                Pipeline(GStreamer("videotestsrc ! appsink"), session, [], PipelineConfig(**QUIET)).run()


class FlakyCapture:
    """A cv2.VideoCapture stand-in: delivers `frames` frames, then fails reads (a cable pulled)."""

    def __init__(self, frames: int) -> None:
        self.left = frames

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self):
        self.left -= 1
        return (True, np.full((*FRAME_SIZE, 3), 90, np.uint8)) if self.left >= 0 else (False, None)

    def release(self) -> None:
        pass


class FlakyCamera(LiveSource):
    """Opens three times: twice with frames that then stop, then never again (the camera is gone)."""

    kind = "camera"

    def __init__(self) -> None:
        super().__init__("flaky", Reconnect(first_s=0.01, max_s=0.02, give_up_s=0.5, stall_s=0.2), log=lambda m: None)
        self.opens = 0

    def _open_capture(self):
        self.opens += 1
        return FlakyCapture(5) if self.opens <= 2 else _Closed()


class _Closed:
    def isOpened(self) -> bool:  # noqa: N802
        return False

    def release(self) -> None:
        pass


def test_a_live_source_that_stops_delivering_is_reconnected_then_given_up(engine_dir):
    source = FlakyCamera()
    with load(engine_dir) as session:
        pipeline = Pipeline(source, session, [], PipelineConfig(**QUIET))
        with pytest.raises(SourceError, match="gave up after"):
            pipeline.run()
    f = pipeline.stats.frames
    assert f["reconnects"] == 1 and f["captured"] == 10 and f["processed"] + f["dropped"] == 10
    assert pipeline.stats.stopped_by == "error"


def test_outputs_are_never_overwritten_silently_and_sources_are_named(tmp_path, video):
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"precious")
    with pytest.raises(EdgesegError, match="already exists"):
        VideoSink(existing)
    VideoSink(existing, overwrite=True)  # --force
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "keep.png").write_bytes(b"x")
    with pytest.raises(EdgesegError, match="not empty"):
        output_sink(tmp_path / "pngs")
    with pytest.raises(EdgesegError, match="neither a video nor a folder"):
        output_sink(tmp_path / "out.gif")
    with pytest.raises(EdgesegError, match="expected one source but got 2"):
        open_source(video=str(video), images=str(tmp_path))
    with pytest.raises(SourceError, match="does not exist"):
        open_source(video=str(tmp_path / "missing.mp4"))
    assert existing.read_bytes() == b"precious"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_cli_cleanly_with_stats_and_a_playable_video(sig, engine_dir, long_video, tmp_path):
    out, stats_file = tmp_path / "out.mp4", tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "edgeseg", "stream", "--engine", str(engine_dir), "--video", str(long_video),
           "--output", str(out), "--stats", str(stats_file), "--report-every", "0.3", "--engine-fps", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the first console line: frames are flowing
            if " FPS " in line:
                break
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert f"{signal.Signals(sig).name}: stopping" in stderr
    data = json.loads(stats_file.read_text())
    assert data["stopped_by"] == "signal" and 0 < data["frames"]["processed"] < 3000
    assert _frames_in(out) == data["frames"]["processed"]  # the mp4 was finalized
    assert "wrote" in stdout


def test_the_stream_runs_without_torch(engine_dir, video, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import edgeseg.runtime.pipeline, edgeseg.runtime.sources, edgeseg.runtime.sinks, edgeseg.runtime.stats
        import edgeseg.runtime.visualize, edgeseg.cli.stream
        from edgeseg.cli import main
        rc = main(["stream", "--engine", {str(engine_dir)!r}, "--video", {str(video)!r}, "--view", "side",
                   "--output", {str(tmp_path / "o.mp4")!r}, "--stats", {str(tmp_path / "s.json")!r},
                   "--engine-fps", "3", "--report-every", "0"])
        assert rc == 0, rc
        assert "torch" not in sys.modules, "torch imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert json.loads((tmp_path / "s.json").read_text())["frames"]["processed"] == 30


def test_views_legend_and_hud():
    from edgeseg.runtime.visualize import Renderer, colorize, palette_lut

    palette = [(i * 20, 255 - i * 20, (i * 77) % 256) for i in range(11)]
    classes = [f"class{i}" for i in range(11)]
    labels = np.random.default_rng(0).integers(0, 12, ENGINE_SIZE).astype(np.uint8)  # 11 = void: black
    lut = palette_lut(palette)
    assert np.array_equal(colorize(labels, lut), lut[labels])  # the packed-word path == numpy's gather
    every_id = np.arange(256, dtype=np.uint8).reshape(16, 16)  # all 256 ids, a full random palette
    full = palette_lut(np.random.default_rng(1).integers(0, 256, (256, 3)))
    assert np.array_equal(colorize(every_id, full), full[every_id])
    frame = np.full((*FRAME_SIZE, 3), 200, np.uint8)
    for view, width in (("overlay", FRAME_SIZE[1]), ("mask", FRAME_SIZE[1]), ("side", 2 * FRAME_SIZE[1])):
        picture = Renderer(palette, classes, view=view).render(frame, labels, ["12.0 FPS"])
        assert picture.shape == (FRAME_SIZE[0], width, 3) and picture.dtype == np.uint8
    plain = Renderer(palette, classes, view="overlay", alpha=0.0, show_legend=False).render(frame, labels)
    assert np.array_equal(plain, frame)  # alpha 0: the camera frame untouched
