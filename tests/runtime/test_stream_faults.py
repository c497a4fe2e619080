"""Streaming under bad input and faults: full disks, read-only folders, undecodable sources, outputs that are
inputs, odd frame sizes, out-of-range options. Each test failed before its fix.

A full disk needs no root: a child process whose files may not grow past RLIMIT_FSIZE (ulimit -f) gets EFBIG
on the write that crosses it, as a full disk gives ENOSPC (SIGXFSZ ignored, as Python does anyway). Where the
tests run as root they also mount a small tmpfs, a disk that really fills up (skipped otherwise).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakedata import mount_tmpfs
from streamkit import QUIET, frames_in

from edgeseg.cli.main import main
from edgeseg.data.synthetic import road_video
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.runtime import load
from edgeseg.runtime.pipeline import Pipeline, PipelineConfig
from edgeseg.runtime.sinks import PngFolder, Result, VideoSink
from edgeseg.runtime.sources import ImageFolder, LiveSource, Reconnect, SourceError, VideoFile, open_source
from edgeseg.runtime.stats import StatsRecorder

resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE is POSIX only")

STREAM = ["--engine-fps", "0", "--report-every", "0"]
NO_ROOM_CHECK = "import edgeseg.runtime.sinks as s; s.VideoSink._check_room = lambda self: None\n"


# -- helpers ----------------------------------------------------------------------------------------------
def stream_limited(args: list[str], limit: int, prelude: str = "") -> subprocess.CompletedProcess:
    """`edgeseg stream ARGS` in a child whose files may not grow past `limit` bytes."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    code = prelude + "import sys\nfrom edgeseg.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code, "stream", *args], preexec_fn=limit_files, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def stream(args: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    return stream_limited(args, resource.RLIM_INFINITY, prelude)


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs: a disk that really fills up (root only)."""
    disk = mount_tmpfs(tmp_path / "disk", "size=512k")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def leftovers(folder: Path) -> list[str]:
    """Our unfinished files: a failed write must not leave them behind."""
    ours = (".frame_", ".edgeseg")
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.startswith(ours))


def assert_playable_or_nothing(path: Path, stats: dict) -> None:
    """The README's promise: the path holds a video of every frame the stats say it holds, or nothing."""
    (out,) = stats["outputs"]
    if path.exists():
        assert out["written"] and frames_in(path) == out["frames"] == stats["frames"]["processed"] > 0
    else:
        assert not out["written"]


def result(index: int, picture: np.ndarray) -> Result:
    return Result(index, picture, np.zeros((2, 2), np.uint8), picture, 0.0)


# -- 1. a failed write stops the stream with the error, leaving a playable file or nothing ----------------------
def test_a_file_size_limit_stops_the_stream_with_an_error_and_no_broken_video(engine_dir, long_video, tmp_path):
    out, stats_file = tmp_path / "out.mp4", tmp_path / "stats.json"
    done = stream_limited(["--engine", str(engine_dir), "--video", str(long_video), "--max-frames", "300",
                           "--output", str(out), "--stats", str(stats_file), *STREAM], limit=100_000)
    assert done.returncode == 2, done.stderr
    assert "file size limit" in done.stderr and "Traceback" not in done.stderr
    stats = json.loads(stats_file.read_text())
    assert stats["stopped_by"] == "error" and "stopped writing" in stats["error"]
    assert_playable_or_nothing(out, stats)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("disk", ["file-size-limit", "tmpfs"])
def test_a_video_the_disk_cut_short_is_found_at_close_and_never_published(disk, engine_dir, long_video, tmp_path,
                                                                         request):
    """With the room check off, only reading the finished file back can tell: the writer reports nothing."""
    folder = request.getfixturevalue("small_disk") if disk == "tmpfs" else tmp_path
    out, stats_file = folder / "out.mp4", tmp_path / "stats.json"
    args = ["--engine", str(engine_dir), "--video", str(long_video), "--max-frames", "2000",  # ~1.1 MB of video
            "--output", str(out), "--stats", str(stats_file), *STREAM]
    done = stream_limited(args, 100_000, NO_ROOM_CHECK) if disk == "file-size-limit" else stream(args, NO_ROOM_CHECK)
    assert done.returncode == 2, done.stderr
    assert "was not written completely" in done.stderr and "Traceback" not in done.stderr
    stats = json.loads(stats_file.read_text())
    assert stats["stopped_by"] == "error" and "not written completely" in stats["error"]
    assert not out.exists() and stats["outputs"][0]["written"] is False
    assert leftovers(folder) == []


CUT_SHORT = """
import resource, signal, sys
import numpy as np
import edgeseg.runtime.sinks as s
s.VideoSink._check_room = lambda self: None
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
sink = s.VideoSink(sys.argv[1])
for i, picture in enumerate(np.random.default_rng(0).integers(0, 256, (60, 72, 128, 3), dtype=np.uint8)):
    sink.write(s.Result(i, picture, None, picture, 0.0))
try:
    sink.close()
except s.EdgesegError as exc:
    sys.exit(exc.problem)
"""


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_every_container_is_read_back_before_it_is_published(suffix, tmp_path):
    """mp4 loses its index when cut short, avi and mkv keep a header that still says 60 frames: only decoding
    the tail tells."""
    out = tmp_path / f"out{suffix}"
    done = subprocess.run([sys.executable, "-c", CUT_SHORT, str(out)], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=120)
    assert "was not written completely" in done.stderr and "of its 60 frames read back" in done.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_stopping_for_lack_of_room_keeps_a_playable_video_of_the_frames_so_far(engine_dir, long_video, tmp_path):
    out, stats_file = tmp_path / "out.mp4", tmp_path / "stats.json"
    small_reserve = "import edgeseg.runtime.sinks as s; s.FINALIZE_RESERVE = 64 << 10\n"
    done = stream_limited(["--engine", str(engine_dir), "--video", str(long_video), "--max-frames", "1000",
                           "--output", str(out), "--stats", str(stats_file), *STREAM], 300_000, small_reserve)
    assert done.returncode == 2, done.stderr
    stats = json.loads(stats_file.read_text())
    assert "stopped writing" in stats["error"] and 0 < stats["frames"]["processed"] < 1000
    assert out.exists()
    assert_playable_or_nothing(out, stats)


def test_a_png_folder_that_cannot_be_written_stops_the_stream_without_half_frames(engine_dir, video, tmp_path):
    pngs, stats_file = tmp_path / "pngs", tmp_path / "stats.json"
    done = stream_limited(["--engine", str(engine_dir), "--video", str(video), "--output", str(pngs),
                           "--stats", str(stats_file), *STREAM], limit=8_000)  # a frame is ~11 KB, the stats ~2 KB
    assert done.returncode == 2, done.stderr
    assert "cannot write" in done.stderr and "frame_000000.png" in done.stderr and "Traceback" not in done.stderr
    stats = json.loads(stats_file.read_text())
    assert stats["stopped_by"] == "error" and "File too large" in stats["error"]
    assert list(pngs.iterdir()) == []  # no truncated PNG, no temporary one


def test_stats_that_cannot_be_written_are_an_error_not_a_traceback(engine_dir, video, tmp_path):
    stats_file = tmp_path / "stats.json"
    done = stream_limited(["--engine", str(engine_dir), "--video", str(video), "--max-frames", "3",
                           "--stats", str(stats_file), *STREAM], limit=1_000)
    assert done.returncode == 2, done.stderr
    assert "cannot write the statistics to" in done.stderr and "fix:" in done.stderr
    assert "Traceback" not in done.stderr and "streamed 3 frames" in done.stdout  # still printed
    assert not stats_file.exists() and leftovers(tmp_path) == []


def test_a_full_disk_is_refused_before_streaming(engine_dir, video, small_disk):
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    done = stream(["--engine", str(engine_dir), "--video", str(video), "--stats", str(small_disk / "s.json"), *STREAM])
    assert done.returncode == 2 and "its disk is full" in done.stderr and "--stats" in done.stderr
    assert "Traceback" not in done.stderr and "streaming video" not in done.stdout


# -- 2. nothing is lost silently ---------------------------------------------------------------------------
def test_frames_of_another_size_are_resized_into_the_video_and_counted(engine_dir, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, sample in enumerate(road_video(6, (72, 128), seed=3)):
        image = sample.image if k % 2 == 0 else cv2.resize(sample.image, (100, 60))
        cv2.imwrite(str(folder / f"f{k:02d}.png"), image)
    out = tmp_path / "out.mp4"
    with load(engine_dir) as session:
        stats = Pipeline(ImageFolder(folder), session, [VideoSink(out)], PipelineConfig(**QUIET)).run()
    assert stats.frames["processed"] == 6 and stats.frames["resized"] == 3 and stats.frames["dropped"] == 0
    assert frames_in(out) == 6 and stats.outputs[0]["resized"] == 3
    assert "resized 3" in stats.summary()


def _undecodable_video(video: Path, tmp_path: Path) -> Path:
    """The fixture's mp4 with every byte of its frames replaced by noise: it opens, lists 30 frames, decodes none."""
    data = bytearray(video.read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    assert 0 < start < end
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.mp4"
    path.write_bytes(bytes(data))
    return path


def test_a_source_with_no_decodable_frame_is_an_error_naming_it(engine_dir, video, tmp_path, capsys):
    noise = _undecodable_video(video, tmp_path)
    stats_file = tmp_path / "stats.json"
    assert main(["stream", "--engine", str(engine_dir), "--video", str(noise), "--output", str(tmp_path / "o.mp4"),
                 "--stats", str(stats_file), *STREAM]) == 2
    err = capsys.readouterr().err
    assert f"video {noise}: none of its 30 frames could be decoded" in err and "fix:" in err
    stats = json.loads(stats_file.read_text())
    assert stats["stopped_by"] == "error" and "none of its 30 frames" in stats["error"]
    assert not (tmp_path / "o.mp4").exists()

    broken = tmp_path / "broken"
    broken.mkdir()
    for k in range(3):
        (broken / f"f{k}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with load(engine_dir) as session, pytest.raises(SourceError, match="none of its 3 images could be read"):
        Pipeline(ImageFolder(broken), session, [], PipelineConfig(**QUIET)).run()


def test_a_truncated_video_counts_every_lost_frame_as_corrupt(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (128, 72))
    for sample in road_video(30, (72, 128), seed=4):
        writer.write(sample.image)
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = VideoFile(path)
    source.open()
    delivered = 0
    while source.read() is not None:
        delivered += 1
    source.close()
    assert 0 < delivered < 30 and delivered + source.corrupt == 30  # not 25 retries counted as "corrupt"


class FakeClock:
    """Time that passes only when the source waits: the backoff schedule checked without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False

    def is_set(self) -> bool:
        return False


class NeverOpens(LiveSource):
    kind = "camera"

    def _open_capture(self):
        class Closed:
            def isOpened(self) -> bool:
                return False

            def release(self) -> None:
                pass

        return Closed()


@pytest.mark.parametrize("give_up", [3.0, 0.3, 60.0])
def test_a_live_source_gives_up_after_give_up_seconds_not_before(give_up):
    source = NeverOpens("7", Reconnect(give_up_s=give_up), log=lambda m: None)
    clock = FakeClock()
    source._clock, source.stop_event = clock, clock
    with pytest.raises(SourceError, match="gave up after"):
        source.open()
    assert clock.now == pytest.approx(give_up)  # the tries reach the deadline; it was 1.5 s for --give-up 3


def test_the_stats_are_written_when_a_live_source_gives_up(engine_dir, tmp_path, capsys):
    stats_file = tmp_path / "stats.json"
    assert main(["stream", "--engine", str(engine_dir), "--camera", "97", "--give-up", "0.3",
                 "--stats", str(stats_file), *STREAM]) == 2
    assert "camera 97 cannot be opened" in capsys.readouterr().err
    stats = json.loads(stats_file.read_text())
    assert stats["stopped_by"] == "error" and "camera 97 cannot be opened" in stats["error"]
    assert stats["frames"]["captured"] == 0 and stats["source"]["kind"] == "camera"


def test_the_stats_are_written_when_the_engine_does_not_load(video, tmp_path, capsys):
    stats_file = tmp_path / "stats.json"
    assert main(["stream", "--engine", str(tmp_path / "no-engine"), "--video", str(video),
                 "--stats", str(stats_file), *STREAM]) == 2
    stats = json.loads(stats_file.read_text())
    assert stats["stopped_by"] == "error" and stats["error"] and stats["engine"]["path"].endswith("no-engine")


# -- 3. writers never destroy ------------------------------------------------------------------------------
def test_an_output_that_is_an_input_is_refused_even_with_force(engine_dir, video, tmp_path, capsys):
    before = video.read_bytes()
    link = tmp_path / "link.mp4"
    os.link(video, link)  # another name for the same file
    for flags in (["--output", str(video), "--force"], ["--output", str(link), "--force"],
                  ["--stats", str(video), "--force"], ["--stats", str(engine_dir / "manifest.json"), "--force"]):
        assert main(["stream", "--engine", str(engine_dir), "--video", str(video), *flags, *STREAM]) == 2, flags
        assert "which this stream reads" in capsys.readouterr().err
    assert video.read_bytes() == before
    with load(engine_dir) as session, pytest.raises(EdgesegError, match="which this stream reads"):
        Pipeline(VideoFile(video), session, [VideoSink(video, overwrite=True)], PipelineConfig(**QUIET))
    assert main(["stream", "--engine", str(engine_dir), "--video", str(video), "--output", str(tmp_path / "x.mp4"),
                 "--stats", str(tmp_path / "x.mp4")]) == 2
    assert "are the same path" in capsys.readouterr().err


def test_an_output_folder_of_the_input_images_is_refused(engine_dir, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "frame_000000.png"), np.zeros((72, 128, 3), np.uint8))
    with load(engine_dir) as session, pytest.raises(EdgesegError, match="which this stream reads"):
        Pipeline(ImageFolder(folder), session, [PngFolder(folder, overwrite=True)], PipelineConfig(**QUIET))
    assert (folder / "frame_000000.png").exists()


def test_force_onto_a_png_folder_replaces_our_earlier_frames_and_keeps_other_files(engine_dir, video, tmp_path):
    pngs = tmp_path / "pngs"
    base = ["stream", "--engine", str(engine_dir), "--video", str(video), "--output", str(pngs), *STREAM]
    assert main([*base, "--max-frames", "8"]) == 0
    (pngs / "notes.txt").write_text("mine")
    (pngs / "frame_keep.png").write_bytes(b"not our pattern")
    assert main([*base, "--max-frames", "3"]) == 2  # not empty, no --force
    assert main([*base, "--max-frames", "3", "--force"]) == 0
    assert sorted(p.name for p in pngs.iterdir()) == [
        "frame_000000.png", "frame_000001.png", "frame_000002.png", "frame_keep.png", "notes.txt"]


# -- 4. read-only destinations: refused before streaming, or an EdgesegError after it --------------------------
@pytest.mark.parametrize("flag", ["--output", "--stats"])
def test_a_read_only_destination_is_refused_before_streaming(flag, engine_dir, video, read_only_folder, capsys):
    target = read_only_folder / ("out.mp4" if flag == "--output" else "stats.json")
    assert main(["stream", "--engine", str(engine_dir), "--video", str(video), flag, str(target), *STREAM]) == 2
    out, err = capsys.readouterr()
    assert f"cannot write {flag} in {read_only_folder}" in err and "fix:" in err and "streaming video" not in out
    ro_png = read_only_folder / "pngs"
    with pytest.raises(EdgesegError, match="cannot write --output in"):
        PngFolder(ro_png)


def test_failures_after_the_stream_are_edgeseg_errors(tmp_path, read_only_folder):
    target = tmp_path / "out.mp4"
    sink = VideoSink(target)
    sink.write(result(0, np.zeros((72, 128, 3), np.uint8)))
    target.mkdir()  # something took the name while we streamed: the rename fails
    with pytest.raises(EdgesegError, match=f"cannot move the finished video to {target}"):
        sink.close()
    assert leftovers(tmp_path) == []
    stats = StatsRecorder().freeze(source={}, engine={}, settings={}, stopped_by="end")
    with pytest.raises(EdgesegError, match="cannot write the statistics to"):
        stats.write(read_only_folder / "stats.json")


def test_the_published_video_follows_the_umask(tmp_path):
    sink = VideoSink(tmp_path / "out.mp4")
    sink.write(result(0, np.zeros((72, 128, 3), np.uint8)))
    sink.close()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.mp4").stat().st_mode & 0o777 == 0o666 & ~umask


# -- 5. numbers and options are checked, paths are named for what they are ------------------------------------
@pytest.mark.parametrize("flags, named", [
    (["--alpha", "7"], "--alpha"), (["--alpha", "nan"], "--alpha"), (["--alpha", "-0.1"], "--alpha"),
    (["--max-frames", "-1"], "--max-frames"), (["--max-frames", "0"], "--max-frames"),
    (["--threads", "-1"], "--threads"), (["--cv-threads", "-2"], "--cv-threads"),
    (["--engine-fps", "-5"], "--engine-fps"), (["--report-every", "-1"], "--report-every"),
    (["--report-every", "nan"], "--report-every"),
    (["--give-up", "3"], "--give-up"),  # a file source has nothing to give up on
    (["--view", "mask", "--alpha", "0.3"], "--alpha"),  # no overlay: alpha would be ignored
    (["--output", ""], "--output"), (["--stats", ""], "--stats"),
])
def test_out_of_range_or_inapplicable_options_are_refused_naming_the_flag(flags, named, video, tmp_path, capsys):
    argv = ["stream", "--engine", str(tmp_path / "never-loaded"), "--video", str(video), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {named}" in err and "fix:" in err and "Traceback" not in err


@pytest.mark.parametrize("flags, named", [
    (["--camera", "0", "--loop"], "--loop"), (["--images", ".", "--loop"], "--loop"),
    (["--camera", "-1"], "--camera"), (["--camera", "0", "--give-up", "-1"], "--give-up"),
    (["--camera", "0", "--give-up", "0"], "--give-up"), (["--rtsp", " "], "--rtsp"),
])
def test_live_source_options_are_checked(flags, named, tmp_path, capsys):
    assert main(["stream", "--engine", str(tmp_path / "never-loaded"), *flags]) == 2
    err = capsys.readouterr().err
    assert f"{named}" in err.splitlines()[0] and "fix:" in err


def test_library_settings_are_checked_where_they_are_made():
    for bad in (dict(alpha=7.0), dict(alpha=float("nan")), dict(max_frames=0), dict(max_frames=-1),
                dict(queue_size=0), dict(engine_fps_iterations=-1), dict(view="sideways")):
        with pytest.raises(BadInputError):
            PipelineConfig(**bad)
    for bad in (dict(give_up_s=-1), dict(give_up_s=0), dict(first_s=float("nan")), dict(first_s=2, max_s=1)):
        with pytest.raises(BadInputError):
            Reconnect(**bad)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_video_path_says_what_it_is(tmp_path, video, capsys):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    for path, words in ((tmp_path, "is a folder"), (fifo, "is a named pipe (FIFO)"),
                        (Path("/dev/null"), "is a character device"), (tmp_path / "gone.mp4", "does not exist")):
        with pytest.raises(SourceError, match=re.escape(f"video {path} {words}")):
            open_source(video=str(path))
    with pytest.raises(SourceError, match="is a file, not a folder"):
        open_source(images=str(video))
    assert main(["stream", "--engine", str(tmp_path), "--video", str(tmp_path)]) == 2
    assert "is a folder, not a video file" in capsys.readouterr().err


def test_destinations_that_are_not_files_are_refused(engine_dir, video, tmp_path, capsys):
    (tmp_path / "dir.mp4").mkdir()
    for flags, words in ((["--stats", str(tmp_path)], "is a folder"),
                         (["--output", str(tmp_path / "dir.mp4")], "is a folder"),
                         (["--stats", "/dev/null", "--force"], "is a character device")):
        assert main(["stream", "--engine", str(engine_dir), "--video", str(video), *flags, *STREAM]) == 2, flags
        err = capsys.readouterr().err
        assert f"{flags[0]} {flags[1]} {words}, not a file" in err and "Traceback" not in err
    assert Path("/dev/null").exists() and not Path("/dev/null").is_file()  # the device node is still there
