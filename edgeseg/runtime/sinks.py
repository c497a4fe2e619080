"""Where rendered frames go: a window, an .mp4 file, a folder of PNGs, a callback, or nowhere.

A sink is opened lazily on its first frame (the picture's size is known only then), so that a stream
that fails before any frame leaves no empty file behind. Outputs never replace existing files unless
`overwrite=True` (the CLI's --force), never write over the stream's own inputs, and are checked for
writability when the sink is made, before streaming.

A failed write stops the stream with an error. OpenCV's VideoWriter reports nothing (a full disk, a file size
limit or an I/O error only shows as a short or unreadable file), so VideoSink watches the room left while it
writes and reads the finished file back before publishing it: the path then holds a playable video of every
frame it reports, or nothing (a file it would replace is left as it was).
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.runtime.destinations import (
    WRITE_FIXES,
    check_file_destination,
    check_writable,
    file_size_limit,
    frames_readable,
    has_entries,
    human_bytes,
    largest_file,
    new_file_beside,
    print_note,
    same_path,
    write_error,
    write_whole,
)
from edgeseg.runtime.sources import path_kind

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


FRAME_PATTERN = re.compile(r"frame_\d{6,}\.png")  # the names PngFolder writes; --force removes only these


PARTIAL_PATTERN = re.compile(r"\.frame_\d{6,}\.png")  # a frame PngFolder was writing when the run died


# Kept free while a video is written: what the muxer still holds in memory (FFmpeg flushed 256 KiB at a
# time here) and writes at close. Below it the stream stops while the video can still be finalized.
FINALIZE_RESERVE = 4 << 20


INDEX_BYTES_PER_FRAME = 64  # the container's per-frame index (an mp4's stsz/stco/stts entries), written at close


@dataclass
class Result:
    """One processed frame: `picture` is what the sinks show; `labels` are at the engine's input size. An
    instance engine leaves `labels` None and sets `instances`: the objects drawn (score at or above the
    stream's threshold), boxes and masks at the frame's size."""

    index: int
    frame: np.ndarray  # (H, W, 3) uint8 BGR, as the source delivered it
    labels: np.ndarray | None  # (h, w) uint8 class ids at the engine's input size; None on an instance engine
    picture: np.ndarray  # (H, W or 2W, 3) uint8 BGR, the rendered view
    t_capture: float  # time.perf_counter() when the frame was read
    instances: Any = None  # edgeseg.runtime.instances.Instances on an instance engine, else None
    source: str = ""  # the name of the source the frame came from (several sources: its tile in a grid window)


class Sink:
    """Base: `write(result)` returns False to ask the stream to stop (a window's q/Esc key)."""

    resized = 0  # frames written at another size than they came (see VideoSink)

    def write(self, result: Result) -> bool:  # pragma: no cover - every sink overrides it
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__

    def destination(self) -> Path | None:
        """The file or folder this sink writes, checked against the stream's inputs."""
        return None

    def would_remove(self, path: Path) -> bool:
        """Whether writing (with --force) would delete or replace `path`."""
        dest = self.destination()
        return dest is not None and same_path(path, dest)

    def report(self) -> dict[str, Any] | None:
        """What this sink wrote, for the stats JSON's `outputs`; None for sinks that write no file."""
        return None


class NullSink(Sink):
    """Headless: measure and discard."""

    def write(self, result: Result) -> bool:
        return True

    def describe(self) -> str:
        return "headless"


class CallbackSink(Sink):
    """Hand every Result to a function (embedding the pipeline in an application); a False return stops."""

    def __init__(self, fn: Callable[[Result], bool | None]) -> None:
        self._fn = fn

    def write(self, result: Result) -> bool:
        return self._fn(result) is not False


class WindowSink(Sink):
    """An OpenCV window; q or Esc stops the stream. Shared by several sources, it shows their newest pictures
    as a grid of tiles (each at the first tile's size), redrawn whenever one of them has a new frame."""

    def __init__(self, title: str = "edgeseg") -> None:
        build = cv2.getBuildInformation()
        gui = next((ln.split(":", 1)[1].strip() for ln in build.splitlines() if ln.strip().startswith("GUI:")), "")
        if gui.upper() == "NONE":
            raise EdgesegError("this OpenCV has no GUI (opencv-python-headless), so --show cannot open a window",
                               "install opencv-python instead of the headless build, or write --output FILE.mp4")
        self._title = title
        self._tiles: dict[str, np.ndarray] = {}

    def write(self, result: Result) -> bool:
        self._tiles[result.source] = result.picture
        cv2.imshow(self._title, result.picture if len(self._tiles) == 1 else grid(list(self._tiles.values())))
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self._title)


def grid(pictures: list[np.ndarray]) -> np.ndarray:
    """Pictures tiled row by row in a near-square grid, each resized to the first one's size; empty tiles black."""
    h, w = pictures[0].shape[:2]
    cols = math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / cols)
    canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, picture in enumerate(pictures):
        r, c = divmod(i, cols)
        tile = picture if picture.shape[:2] == (h, w) else cv2.resize(picture, (w, h), interpolation=cv2.INTER_AREA)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return canvas


class VideoSink(Sink):
    """An .mp4 (mp4v) / .avi (MJPG) file written beside the target, read back and renamed over it on close,
    so the path holds either nothing or a finalized, playable video of `frames` frames, whatever stopped the
    stream. A frame of another size than the first is resized to the video's size and counted in `resized`
    (OpenCV's writer would drop it without a word). `fps=None`: the source's frame rate (the pipeline fills it in)."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None, overwrite: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise BadInputError(f"cannot write video {self.path}: unknown suffix '{suffix}'",
                                f"use one of {', '.join(VIDEO_SUFFIXES)}, or a folder name for PNGs")
        check_file_destination(self.path, overwrite, "--output")
        self.fps = fps
        self.frames = 0
        self.resized = 0
        self.kept = False  # True once the finished, verified video is at `path`
        self._log = log or print_note
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._largest_file: int | None = None
        self._last_bytes = self._largest_step = 0

    def _open(self, picture: np.ndarray) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._tmp = new_file_beside(self.path)
        except OSError as exc:
            raise write_error(self.path, exc, "start writing") from None
        h, w = picture.shape[:2]
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[self.path.suffix.lower()])
        fps = self.fps if self.fps is not None and math.isfinite(self.fps) and 0 < self.fps <= 1000 else 30.0
        self._writer = cv2.VideoWriter(str(self._tmp), fourcc, float(fps), (w, h))
        if not self._writer.isOpened():
            raise EdgesegError(f"OpenCV cannot write {self.path}", "check the folder is writable and the disk not full")
        self._size = (h, w)
        self._largest_file = largest_file(folder)

    def write(self, result: Result) -> bool:
        if self._writer is None:
            self._open(result.picture)
        picture = self._fit(result.picture, result.index)
        self._check_room()
        self._writer.write(picture)
        self.frames += 1
        return True

    def _fit(self, picture: np.ndarray, index: int) -> np.ndarray:
        """A video has one frame size; OpenCV's writer silently drops any other, so resize and count it instead."""
        if picture.shape[:2] == self._size:
            return picture
        if not self.resized:
            self._log(f"edgeseg: frame {index} is {picture.shape[1]}x{picture.shape[0]} but {self.path} is "
                      f"{self._size[1]}x{self._size[0]}: such frames are resized to fit and counted as 'resized'")
        self.resized += 1
        return cv2.resize(picture, (self._size[1], self._size[0]), interpolation=cv2.INTER_AREA)

    def _check_room(self) -> None:
        """Stop (raise) while the video can still be finalized: the writer itself would fail without a word."""
        try:
            size = self._tmp.stat().st_size
            room, where, fix = self._room(size)
        except OSError as exc:  # the partial file removed under us, the disk gone
            raise write_error(self.path, exc, "keep writing") from None
        self._largest_step = max(self._largest_step, size - self._last_bytes)
        self._last_bytes = size
        need = FINALIZE_RESERVE + 2 * self._largest_step + INDEX_BYTES_PER_FRAME * (self.frames + 1)
        if room < need:
            raise EdgesegError(f"stopped writing {self.path} after {self.frames} frames: {where} leaves "
                               f"{human_bytes(room)}, too little to go on and still finalize the video", fix)

    def _room(self, size: int) -> tuple[int, str, str]:
        """Bytes the temporary file may still grow by, what bounds it, and the fix."""
        folder = self._tmp.parent
        limits = [(shutil.disk_usage(folder).free, f"the disk holding {folder}", WRITE_FIXES[errno.ENOSPC])]
        soft = file_size_limit()
        if soft is not None:
            limits.append((soft - size, f"the file size limit (ulimit -f: {human_bytes(soft)})", WRITE_FIXES[errno.EFBIG]))
        if self._largest_file is not None:
            limits.append((self._largest_file - size, f"the largest file {folder}'s filesystem can hold",
                           WRITE_FIXES[errno.EFBIG]))
        return min(limits, key=lambda limit: limit[0])

    def close(self) -> None:
        """Finish the container (the moov atom of an mp4), read it back, and publish it in one rename."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.release()
                if self.frames:
                    self._verify()
                    self._publish()
        finally:
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()

    def _verify(self) -> None:
        readable = frames_readable(self._tmp, self.frames)
        if readable != self.frames:
            try:
                _, where, fix = self._room(self._tmp.stat().st_size)
            except OSError:
                where, fix = f"the disk holding {self.path.parent}", WRITE_FIXES[errno.ENOSPC]
            kept = "the earlier file there was left as it was" if self.path.exists() else "nothing was left there"
            raise EdgesegError(f"the video {self.path} was not written completely: {readable} of its {self.frames} "
                               f"frames read back, so it was not kept ({kept}); the tightest limit on it is {where}",
                               fix)

    def _publish(self) -> None:
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise write_error(self.path, exc, "move the finished video to") from None
        self.kept = True

    def describe(self) -> str:
        return f"video {self.path}"

    def destination(self) -> Path:
        return self.path

    def report(self) -> dict[str, Any]:
        return {"kind": "video", "path": str(self.path), "frames": self.frames, "resized": self.resized,
                "written": self.kept}


class PngFolder(Sink):
    """frame_000000.png, frame_000001.png, ... in a new or empty folder (or, with overwrite=True, one whose
    earlier frames are removed first: only files named like ours, nothing else). Each frame is encoded in
    memory and written under a temporary name, then renamed, so a failed write leaves no half PNG and raises."""

    def __init__(self, folder: str | os.PathLike, overwrite: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        kind = path_kind(self.folder)
        if kind not in ("nothing", "a folder"):
            raise EdgesegError(f"--output {self.folder} is {kind}, not a folder",
                               "choose another --output (a name ending in .mp4, .avi or .mkv writes a video)")
        if kind == "a folder" and not overwrite and has_entries(self.folder):
            raise EdgesegError(f"{self.folder} already exists and is not empty",
                               "choose another --output, or pass --force to write into it (the frames of an "
                               "earlier run there are removed first, other files are kept)")
        check_writable(self.folder, "--output")
        self.overwrite = overwrite
        self.frames = 0
        self.cleared = 0  # earlier frames removed (--force)
        self._log = log or print_note
        self._opened = False

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.overwrite:
                self.cleared = self._clear_earlier_frames()
        except OSError as exc:
            raise write_error(self.folder, exc, "prepare") from None
        self._opened = True

    def _clear_earlier_frames(self) -> int:
        """--force: remove the frames an earlier run of ours left, so the folder holds this run's frames only;
        files we did not write (by name) stay."""
        ours = [p for p in self.folder.iterdir()
                if (FRAME_PATTERN.fullmatch(p.name) or PARTIAL_PATTERN.fullmatch(p.name)) and p.is_file()]
        for path in ours:
            path.unlink()
        if ours:
            self._log(f"edgeseg: removed {len(ours)} frames of an earlier run from {self.folder} (--force)")
        return len(ours)

    def write(self, result: Result) -> bool:
        if not self._opened:
            self._open()
        path = self.folder / f"frame_{result.index:06d}.png"
        ok, data = cv2.imencode(".png", result.picture)
        if not ok:
            raise EdgesegError(f"OpenCV cannot encode frame {result.index} as PNG", "report this as a bug")
        write_whole(path, data)
        self.frames += 1
        return True

    def describe(self) -> str:
        return f"png folder {self.folder}"

    def destination(self) -> Path:
        return self.folder

    def would_remove(self, path: Path) -> bool:
        if same_path(path, self.folder):
            return True
        return self.overwrite and FRAME_PATTERN.fullmatch(path.name) is not None and same_path(path.parent, self.folder)

    def report(self) -> dict[str, Any]:
        return {"kind": "png", "path": str(self.folder), "frames": self.frames, "removed_earlier": self.cleared,
                "written": self.frames > 0}


def output_sink(path: str | os.PathLike, fps: float | None = None, overwrite: bool = False) -> Sink:
    """--output: a video for a known video suffix, otherwise a folder of PNGs."""
    if not str(path).strip():
        raise BadInputError("--output is empty", "pass --output FILE.mp4 or a folder name for PNG frames")
    if Path(path).suffix.lower() in VIDEO_SUFFIXES:
        return VideoSink(path, fps=fps, overwrite=overwrite)
    if Path(path).suffix:
        raise BadInputError(f"--output {path}: '{Path(path).suffix}' is neither a video nor a folder",
                            f"use {', '.join(VIDEO_SUFFIXES)} for a video, or a name without a suffix for PNG frames")
    return PngFolder(path, overwrite=overwrite)
