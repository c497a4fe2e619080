"""Where rendered frames go: a window, an .mp4 file, a folder of PNGs, a callback, or nowhere.

A sink is opened lazily on its first frame (the picture's size is known only then), so that a stream
that fails before any frame leaves no empty file behind. Outputs never replace existing files unless
`overwrite=True` (the CLI's --force), and the check happens when the sink is made, before streaming.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgeseg.errors import BadInputError, EdgesegError

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


@dataclass
class Result:
    """One processed frame: `picture` is what the sinks show; `labels` are at the engine's input size."""

    index: int
    frame: np.ndarray  # (H, W, 3) uint8 BGR, as the source delivered it
    labels: np.ndarray  # (h, w) uint8 class ids at the engine's input size
    picture: np.ndarray  # (H, W or 2W, 3) uint8 BGR, the rendered view
    t_capture: float  # time.perf_counter() when the frame was read


class Sink:
    """Base: `write(result)` returns False to ask the stream to stop (a window's q/Esc key)."""

    def write(self, result: Result) -> bool:  # pragma: no cover - every sink overrides it
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__


class NullSink(Sink):
    """Headless: measure and discard."""

    def write(self, result: Result) -> bool:
        return True


class CallbackSink(Sink):
    """Hand every Result to a function (embedding the pipeline in an application); a False return stops."""

    def __init__(self, fn: Callable[[Result], bool | None]) -> None:
        self._fn = fn

    def write(self, result: Result) -> bool:
        return self._fn(result) is not False


class WindowSink(Sink):
    """An OpenCV window; q or Esc stops the stream."""

    def __init__(self, title: str = "edgeseg") -> None:
        build = cv2.getBuildInformation()
        gui = next((ln.split(":", 1)[1].strip() for ln in build.splitlines() if ln.strip().startswith("GUI:")), "")
        if gui.upper() == "NONE":
            raise EdgesegError("this OpenCV has no GUI (opencv-python-headless), so --show cannot open a window",
                               "install opencv-python instead of the headless build, or write --output FILE.mp4")
        self._title = title

    def write(self, result: Result) -> bool:
        cv2.imshow(self._title, result.picture)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self._title)


class VideoSink(Sink):
    """An .mp4 (mp4v) / .avi (MJPG) file written beside the target and renamed over it on close, so the
    path holds either nothing or a finalized, playable video, whatever stopped the stream.
    `fps=None`: the source's frame rate (the pipeline fills it in)."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None, overwrite: bool = False) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise BadInputError(f"cannot write video {self.path}: unknown suffix '{suffix}'",
                                f"use one of {', '.join(VIDEO_SUFFIXES)}, or a folder name for PNGs")
        _refuse_existing(self.path, overwrite)
        if not self.path.parent.is_dir():
            raise BadInputError(f"folder {self.path.parent} does not exist", "create it or choose another --output")
        self.fps = fps
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def _open(self, picture: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".partial{self.path.suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        h, w = picture.shape[:2]
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[self.path.suffix.lower()])
        self._writer = cv2.VideoWriter(tmp, fourcc, float(self.fps or 30.0), (w, h))
        if not self._writer.isOpened():
            raise EdgesegError(f"OpenCV cannot write {self.path}", "check the folder is writable and the disk not full")

    def write(self, result: Result) -> bool:
        if self._writer is None:
            self._open(result.picture)
        self._writer.write(result.picture)
        self.frames += 1
        return True

    def close(self) -> None:
        """Finish the container (the moov atom of an mp4) and publish it in one rename."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if self.frames:
                os.replace(self._tmp, self.path)
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()

    def describe(self) -> str:
        return f"video {self.path}"


class PngFolder(Sink):
    """frame_000000.png, frame_000001.png, ... in a new (or empty) folder: lossless, for inspection."""

    def __init__(self, folder: str | os.PathLike, overwrite: bool = False) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())) and not overwrite:
            raise EdgesegError(f"{self.folder} already exists and is not empty",
                               "choose another --output, or pass --force to write into it")
        self.frames = 0

    def write(self, result: Result) -> bool:
        if self.frames == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"frame_{result.index:06d}.png"
        if not cv2.imwrite(str(path), result.picture):
            raise EdgesegError(f"cannot write {path}", "check the folder is writable and the disk not full")
        self.frames += 1
        return True

    def describe(self) -> str:
        return f"png folder {self.folder}"


def output_sink(path: str | os.PathLike, fps: float | None = None, overwrite: bool = False) -> Sink:
    """--output: a video for a known video suffix, otherwise a folder of PNGs."""
    if Path(path).suffix.lower() in VIDEO_SUFFIXES:
        return VideoSink(path, fps=fps, overwrite=overwrite)
    if Path(path).suffix:
        raise BadInputError(f"--output {path}: '{Path(path).suffix}' is neither a video nor a folder",
                            f"use {', '.join(VIDEO_SUFFIXES)} for a video, or a name without a suffix for PNG frames")
    return PngFolder(path, overwrite=overwrite)


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise EdgesegError(f"{path} already exists", "choose another --output, or pass --force to replace it")
