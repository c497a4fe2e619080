"""Where frames come from: video files, image folders, cameras, RTSP streams and GStreamer pipelines.

Two kinds. A *file* source (VideoFile, ImageFolder) is processed frame by frame, none skipped: the
pipeline waits for it. A *live* source (Camera, RTSP, GStreamer) runs at the sensor's pace: the pipeline
keeps only the latest frame and counts the stale ones it drops, so latency never builds up.

Live sources survive a vehicle: a camera that will not open or stops delivering is reopened with
exponential backoff and a message, and given up (an EdgesegError naming problem and fix) once it has
delivered nothing for `give_up_s` (the last wait is cut short so the give-up comes at `give_up_s`, not
before it). Undecodable frames are skipped and counted in `corrupt`; a file source that delivers no frame
at all is an error naming it, never an empty success.
"""

from __future__ import annotations

import math
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgeseg.errors import BadInputError, EdgesegError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_CONSECUTIVE_CORRUPT = 25  # a file whose next 25 frames all fail to decode has ended or is broken


class SourceError(EdgesegError):
    """A source that cannot be opened or has stopped delivering for good."""


@dataclass(frozen=True)
class Reconnect:
    """How a live source retries: wait `first_s`, doubling to `max_s`, until nothing came for `give_up_s`."""

    first_s: float = 0.5
    max_s: float = 8.0
    give_up_s: float = 60.0
    stall_s: float = 5.0  # no frame for this long on an open device counts as a disconnect

    def __post_init__(self) -> None:
        """A zero, negative or NaN time would give up at once (or never wait): refuse it here, where it is made."""
        for name in ("first_s", "max_s", "give_up_s", "stall_s"):
            value = getattr(self, name)
            if not value > 0:  # also False for NaN
                raise BadInputError(f"Reconnect.{name} is {value!r}: it must be a positive number of seconds",
                                    "pass a time above 0 (the CLI's --give-up S sets give_up_s)")
        if self.max_s < self.first_s:
            raise BadInputError(f"Reconnect.max_s {self.max_s:g} is below first_s {self.first_s:g}",
                                "pass max_s >= first_s")


class Source:
    """Base: `read()` -> (H, W, 3) uint8 BGR frame, or None at the end. Frames may be any size."""

    live = False
    kind = "source"

    def __init__(self, name: str, log: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.corrupt = 0  # frames that could not be decoded, skipped
        self.reconnects = 0
        self.delivered = 0  # good frames returned by read()
        self.fps_hint = 30.0  # the frame rate an output video is written at
        self._log = log or _stderr

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:  # pragma: no cover - every source overrides it
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "live": self.live}

    def inputs(self) -> list[Path]:
        """The files and folders this source reads: no output may be written over them."""
        return []

    def __enter__(self) -> "Source":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _good(frame: np.ndarray | None) -> bool:
    return frame is not None and frame.ndim == 3 and frame.shape[2] == 3 and frame.size > 0


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fps_or_default(fps: float, default: float = 30.0) -> float:
    """A container's frame rate, or `default` where it is missing or absurd (0, NaN, 90000 from a broken header):
    it becomes the output video's rate, and OpenCV cannot write a video at NaN FPS."""
    return float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else default


def path_kind(path: str | os.PathLike) -> str:
    """What is at `path`, in words, so that an error says "is a folder" instead of "does not exist"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "nothing"
    except OSError as exc:  # a symlink loop, a parent folder that cannot be searched
        return f"unreachable ({exc.strerror})"
    kinds = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((words for test, words in kinds if test(mode)), "neither a file nor a folder")


def _camera_hint(path: str | os.PathLike) -> str:
    digits = str(path).removeprefix("/dev/video")
    return f"; for a camera pass --camera {digits}" if str(path).startswith("/dev/video") and digits.isdigit() else ""


def decode_params(threads: int | None) -> list[int]:
    """FFmpeg's decoder threads as an open parameter; None or 0: FFmpeg's own choice (one per core).

    One thread by default: on 2 cores the decoder's second thread only competes with the engine's. Decoding
    this project's 360x480 CamVid video took 0.7 ms of CPU a frame with one thread and 0.9-1.3 ms with two,
    for the same wall time (2026-12-02, AMD EPYC AVX2). Large frames on many cores may want more (--cv-threads).
    """
    return [cv2.CAP_PROP_N_THREADS, int(threads)] if threads else []


def _check_video_path(path: str | os.PathLike) -> None:
    """A video source must be a regular file: say what the path is instead (a folder, a pipe, a device)."""
    kind = path_kind(path)
    if kind == "nothing":
        raise SourceError(f"video {path} does not exist", "pass the path of a video file (.mp4, .avi, .mkv)")
    if kind == "a folder":
        raise SourceError(f"video {path} is a folder, not a video file",
                          "pass a video file, or --images DIR for a folder of frames")
    if kind == "a named pipe (FIFO)":
        raise SourceError(f"video {path} is a named pipe (FIFO), not a video file: a pipe has no length and "
                          "cannot be read twice", "write the video to a file first, or stream the pipe with --gst "
                          f"'filesrc location={path} ! decodebin ! videoconvert ! appsink'")
    if kind != "a file":
        raise SourceError(f"video {path} is {kind}, not a video file",
                          "pass the path of a video file (.mp4, .avi, .mkv)" + _camera_hint(path))


class VideoFile(Source):
    """Every frame of a video file. `live=True` turns it into a stand-in camera (latest frame, drops),
    paced at the file's frame rate when `pace=True`: how the drop accounting is tested without a camera.
    `loop=True` starts over at the end (soak tests) until the stream is stopped."""

    kind = "video"

    def __init__(self, path: str | os.PathLike, live: bool = False, pace: bool = False, loop: bool = False,
                 log: Callable[[str], None] | None = None, decode_threads: int | None = 1) -> None:
        super().__init__(str(path), log)
        _check_video_path(path)
        self.live, self._pace, self._loop = live, pace, loop
        self._decode_threads = decode_threads
        self._cap: cv2.VideoCapture | None = None
        self._next_t = 0.0
        self._done = False
        self._pass_delivered = self._pass_corrupt = 0  # this pass through the file (a loop makes several)

    def inputs(self) -> list[Path]:
        return [Path(self.name)]

    def open(self) -> None:
        self._cap = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG, decode_params(self._decode_threads))
        if not self._cap.isOpened():
            raise SourceError(f"OpenCV cannot open video {self.name}",
                              "check the file plays (ffprobe FILE) and is not empty")
        self.fps_hint = _fps_or_default(self._cap.get(cv2.CAP_PROP_FPS))
        self._next_t = time.perf_counter()

    def read(self) -> np.ndarray | None:
        """The next good frame; None at the end. Ends with an error if the file gave no frame at all."""
        if self._done:
            return None
        failures = 0
        while failures < MAX_CONSECUTIVE_CORRUPT:
            ok, frame = self._cap.read()
            if ok and _good(frame):
                self.delivered += 1
                self._pass_delivered += 1
                self._wait_pace()
                return frame
            failures += 1
            if ok:  # decoded, but not a 3-channel picture
                self.corrupt += 1
                self._pass_corrupt += 1
            elif not self._more_left():
                if not (self._loop and self._pass_delivered):  # a pass that gave nothing would loop forever
                    break
                self._count_missing()
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                failures = 0
        self._end()
        return None

    def _end(self) -> None:
        """The last pass's missing frames are counted; a file that gave no frame at all is an error naming it."""
        self._count_missing()
        self._done = True
        if not self.delivered:
            total = self._total()
            what = f"none of its {total} frames could be decoded" if total > 0 else "it holds no frame"
            raise SourceError(f"video {self.name}: {what}",
                              "check it plays (ffplay FILE; ffprobe -count_frames FILE), or re-encode it: "
                              "ffmpeg -i FILE -c:v libx264 fixed.mp4")

    def _count_missing(self) -> None:
        """Frames the container lists but OpenCV never delivered (skipped inside the decoder, or past a truncation)
        are counted as corrupt, so that a damaged file never ends as a clean, shorter stream."""
        total = self._total()
        missing = total - self._pass_delivered - self._pass_corrupt
        if total > 0 and missing > 0:
            self.corrupt += missing
            self._log(f"edgeseg: video {self.name}: {missing} of its {total} frames could not be decoded "
                      "(counted as corrupt)")
        self._pass_delivered = self._pass_corrupt = 0

    def _total(self) -> int:
        return int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self._cap is not None else 0

    def _more_left(self) -> bool:
        total = self._total()
        return total > 0 and self._cap.get(cv2.CAP_PROP_POS_FRAMES) < total - 1

    def _wait_pace(self) -> None:
        if self._pace:
            self._next_t += 1.0 / self.fps_hint
            time.sleep(max(0.0, self._next_t - time.perf_counter()))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolder(Source):
    """The images of a folder sorted by file name (CamVid's frames are named in capture order)."""

    kind = "images"

    def __init__(self, folder: str | os.PathLike, fps: float = 30.0, log: Callable[[str], None] | None = None) -> None:
        super().__init__(str(folder), log)
        root = Path(folder)
        kind = path_kind(root)
        if kind == "nothing":
            raise SourceError(f"image folder {folder} does not exist", "pass a folder of .jpg/.png frames")
        if kind != "a folder":
            raise SourceError(f"image folder {folder} is {kind}, not a folder",
                              "pass a folder of .jpg/.png frames, or --video FILE for a video")
        try:
            self._files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        except OSError as exc:
            raise SourceError(f"cannot list image folder {folder}: {exc.strerror}",
                              "check the folder's permissions (it must be readable and searchable)") from None
        if not self._files:
            raise SourceError(f"{folder} holds no images",
                              f"put frames with one of {', '.join(IMAGE_EXTENSIONS)} there")
        self._next = 0
        self.fps_hint = _fps_or_default(fps)

    def __len__(self) -> int:
        return len(self._files)

    def inputs(self) -> list[Path]:
        return [Path(self.name), *self._files]

    def read(self) -> np.ndarray | None:
        while self._next < len(self._files):
            frame = cv2.imread(str(self._files[self._next]), cv2.IMREAD_COLOR)
            self._next += 1
            if _good(frame):
                self.delivered += 1
                return frame
            self.corrupt += 1
        if not self.delivered:
            raise SourceError(f"image folder {self.name}: none of its {len(self._files)} images could be read",
                              "check they are valid images (not truncated copies, not another format "
                              "under an image suffix)")
        return None


class LiveSource(Source):
    """A device or stream opened by `_open_capture`; reopened with backoff when it fails."""

    live = True

    def __init__(self, name: str, reconnect: Reconnect = Reconnect(), log: Callable[[str], None] | None = None) -> None:
        super().__init__(name, log)
        self.reconnect = reconnect
        self._clock = time.perf_counter  # replaceable, so that the backoff schedule is tested without waiting
        self._cap: cv2.VideoCapture | None = None
        self._last_frame_t = 0.0
        self._wait = reconnect.first_s
        self.stop_event = threading.Event()  # the pipeline shares its own, so a stop ends a backoff wait at once

    def _open_capture(self) -> cv2.VideoCapture:  # pragma: no cover - every live source overrides it
        raise NotImplementedError

    def _fix(self) -> str:
        return "check the cable/address and that no other program holds the device"

    def open(self) -> None:
        self._last_frame_t = self._clock()
        self._connect(first=True)

    def _connect(self, first: bool = False) -> None:
        """Open until it works, waiting first_s, 2*first_s, ... max_s between tries."""
        while not self.stop_event.is_set():
            self._release()
            cap = self._open_capture()
            if cap.isOpened():
                self._cap = cap
                if not first:
                    self.reconnects += 1
                    self._log(f"edgeseg: {self.kind} {self.name} reconnected")
                return
            cap.release()
            self._back_off("cannot be opened")

    def _back_off(self, why: str) -> None:
        """Wait before the next try; raise SourceError once nothing has come for `give_up_s`.

        The wait is cut to the time left, so the last try happens at `give_up_s` and the give-up comes then:
        giving up when the *next* doubled wait would overshoot ended `--give-up 3` after 1.5 s."""
        silent = self._clock() - self._last_frame_t
        left = self.reconnect.give_up_s - silent
        if left <= 0:
            raise SourceError(f"{self.kind} {self.name} {why}; gave up after {silent:.1f}s without a frame "
                              f"(--give-up {self.reconnect.give_up_s:g}s)", self._fix())
        wait = min(self._wait, left)
        self._log(f"edgeseg: {self.kind} {self.name} {why}; retrying in {wait:.1f}s")
        self.stop_event.wait(wait)
        self._wait = min(self._wait * 2, self.reconnect.max_s)

    def read(self) -> np.ndarray | None:
        while not self.stop_event.is_set():
            ok, frame = self._cap.read() if self._cap is not None else (False, None)
            if ok and _good(frame):
                self._last_frame_t = self._clock()
                self._wait = self.reconnect.first_s
                self.delivered += 1
                return frame
            if ok:
                self.corrupt += 1
            if not ok or self._clock() - self._last_frame_t > self.reconnect.stall_s:
                self._back_off("stopped delivering")
                self._connect()
        return None

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        self._release()


class Camera(LiveSource):
    """A V4L2 (Linux) or DirectShow (Windows) camera by index, e.g. 0 for /dev/video0."""

    kind = "camera"

    def __init__(self, index: int, size: tuple[int, int] | None = None, fps: float | None = None, **kw) -> None:
        super().__init__(str(index), **kw)
        self.index, self._size, self._fps = int(index), size, fps

    def _open_capture(self) -> cv2.VideoCapture:
        api = cv2.CAP_DSHOW if sys.platform == "win32" else cv2.CAP_V4L2
        cap = cv2.VideoCapture(self.index, api)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue would otherwise add frames of latency
            if self._size:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[0])
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[1])
            if self._fps:
                cap.set(cv2.CAP_PROP_FPS, self._fps)
            self.fps_hint = cap.get(cv2.CAP_PROP_FPS) or 30.0
        return cap

    def _fix(self) -> str:
        return (f"check the camera is plugged in and /dev/video{self.index} exists (v4l2-ctl --list-devices), "
                "or pass another --camera index")


class RTSP(LiveSource):
    """An RTSP (or HTTP/RTMP) network stream through FFmpeg, with open and read timeouts."""

    kind = "rtsp"

    def __init__(self, url: str, timeout_ms: int = 5000, decode_threads: int | None = 1, **kw) -> None:
        super().__init__(url, **kw)
        self._timeout_ms, self._decode_threads = int(timeout_ms), decode_threads

    def _open_capture(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms]
        return cv2.VideoCapture(self.name, cv2.CAP_FFMPEG, params + decode_params(self._decode_threads))

    def _fix(self) -> str:
        return "check the URL, credentials and network (ffprobe URL), and that the camera is powered"


class GStreamer(LiveSource):
    """A GStreamer pipeline ending in appsink, e.g. a Jetson CSI camera:
    'nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx
    ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1'."""

    kind = "gstreamer"

    def open(self) -> None:
        if not opencv_has_gstreamer():  # no point retrying for a minute: it can never open
            raise SourceError("this OpenCV was built without GStreamer, so --gst cannot open a pipeline",
                              "use an OpenCV built with GStreamer (on a Jetson: JetPack's python3-opencv, not the "
                              "pip wheel), or --camera N for a V4L2 camera")
        super().open()

    def _open_capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.name, cv2.CAP_GSTREAMER)

    def _fix(self) -> str:
        return "test the pipeline with gst-launch-1.0 (ending in fakesink) and end it with appsink"


VIDEO_BACKENDS = {"FFMPEG": "FFmpeg", "GStreamer": "GStreamer", "v4l/v4l2": "V4L2"}  # build-info key -> name


def opencv_video_io(build_information: str | None = None) -> dict[str, bool]:
    """Which video back-ends this OpenCV was built with (its build information's "Video I/O" section): FFmpeg
    reads files and RTSP, GStreamer runs --gst pipelines (and RTSP through them), V4L2 opens Linux cameras.
    Wheels from PyPI carry FFmpeg but not GStreamer; Debian's and JetPack's python3-opencv carry both."""
    info = build_information if build_information is not None else cv2.getBuildInformation()
    found = {name: False for name in VIDEO_BACKENDS.values()}
    for line in info.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key.strip() in VIDEO_BACKENDS:
            found[VIDEO_BACKENDS[key.strip()]] = value.strip().upper().startswith("YES")
    return found


def opencv_has_gstreamer() -> bool:
    return opencv_video_io()["GStreamer"]


def open_source(*, camera: int | None = None, video: str | None = None, images: str | None = None,
                rtsp: str | None = None, gst: str | None = None, reconnect: Reconnect = Reconnect(),
                loop: bool = False, decode_threads: int | None = 1, timeout_s: float = 5.0) -> Source:
    """Exactly one of the keyword arguments -> a Source (the CLI's --camera/--video/--images/--rtsp/--gst).
    `decode_threads`: FFmpeg's decoder threads for --video and --rtsp; `timeout_s`: RTSP open and read timeout."""
    options = dict(camera=camera, video=video, images=images, rtsp=rtsp, gst=gst)
    given = {k: v for k, v in options.items() if v is not None}
    if len(given) != 1:
        raise BadInputError(f"expected one source but got {len(given)} ({', '.join(given) or 'none'})",
                            "pass exactly one of --camera N, --video FILE, --images DIR, --rtsp URL, --gst PIPELINE")
    (flag, value), = given.items()
    if isinstance(value, str) and not value.strip():
        raise BadInputError(f"--{flag} is empty", f"pass --{flag} with a value")
    if loop and video is None:
        raise BadInputError(f"--loop applies to --video only, not to --{flag}",
                            "drop --loop (a camera or stream has no end to start over from)")
    if camera is not None:
        if isinstance(camera, bool) or int(camera) != camera or camera < 0:
            raise BadInputError(f"--camera {camera!r} is not a device index",
                                "pass the camera's index, 0 or above (0 for /dev/video0)")
        return Camera(camera, reconnect=reconnect)
    if video is not None:
        return VideoFile(video, loop=loop, decode_threads=decode_threads)
    if images is not None:
        return ImageFolder(images)
    if rtsp is not None:
        return RTSP(rtsp, timeout_ms=max(1, round(timeout_s * 1000)), decode_threads=decode_threads,
                    reconnect=reconnect)
    return GStreamer(gst, reconnect=reconnect)
