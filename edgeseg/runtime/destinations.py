"""Where a stream's outputs may go, checked before the first frame (exists, writable, not an input) and
watched while writing (room left, file size limits), and how a failed write becomes an error with a fix.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runtime.sources import path_kind

try:  # POSIX only: the file size limit (ulimit -f) a video must fit under
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None


WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk, or write to another disk",
    errno.EFBIG: "the file outgrew the filesystem's largest file (FAT32: 4 GiB) or the file size limit "
                 "(ulimit -f): write to another filesystem, or stop earlier with --max-frames",
    errno.EROFS: "that filesystem is mounted read-only: write to a writable disk",
    errno.EACCES: "you may not write there: choose a folder you can write to, or change its permissions",
    errno.EPERM: "you may not write there: choose a folder you can write to, or change its permissions",
}


# -- destinations: checked before streaming, failures reported as EdgesegError ---------------------------------
def write_error(path: str | os.PathLike, exc: OSError, doing: str) -> EdgesegError:
    """An OSError while writing -> an error naming the path, the cause and the fix (printed without a traceback)."""
    fix = WRITE_FIXES.get(exc.errno, "check the destination is writable and its disk healthy")
    return EdgesegError(f"cannot {doing} {path}: {exc.strerror or exc}", fix)


def os_error(exc: OSError) -> EdgesegError:
    """Any OSError that reached the command (a file or device the stream touched) -> an EdgesegError naming it."""
    where = f" ({exc.filename})" if exc.filename else ""
    fix = WRITE_FIXES.get(exc.errno, "check the paths and devices passed to edgeseg stream")
    return EdgesegError(f"{exc.strerror or exc}{where}", fix)


def check_file_destination(path: Path, overwrite: bool, flag: str) -> None:
    """A file to be written: refused if it exists (without --force) or is not a regular file (a folder, a device:
    renaming over /dev/stdout would replace the device node), and its folder must be writable."""
    kind = path_kind(path)
    if kind not in ("nothing", "a file"):
        raise EdgesegError(f"{flag} {path} is {kind}, not a file", f"choose a file name for {flag}")
    if kind == "a file" and not overwrite:
        raise EdgesegError(f"{path} already exists", f"choose another {flag}, or pass --force to replace it")
    check_writable(path.parent, flag)


def check_writable(folder: Path, flag: str) -> None:
    """`folder` exists or can be made, and a file can be written in it: the check every command's outputs get
    (edgeseg.io.require_writable_folder writes a probe file, the one check that sees read-only mounts, full
    disks, quotas and ACLs alike; os.access sees none of them for root)."""
    from edgeseg.io import require_writable_folder

    require_writable_folder(folder, flag, f"choose another {flag} in a folder you can write to")


def refuse_overwriting_inputs(sink_or_path, inputs: Sequence[Path], flag: str) -> None:
    """No output (a Sink or a path) may be written over what the stream reads (the source video, the engine): a `--force`d
    output that is the input would destroy it before a single frame is read."""
    is_sink = hasattr(sink_or_path, "would_remove")  # a Sink (edgeseg.runtime.sinks), else a path
    for path in inputs:
        hit = sink_or_path.would_remove(path) if is_sink else same_path(path, sink_or_path)
        if hit:
            dest = sink_or_path.destination() if is_sink else sink_or_path
            raise EdgesegError(f"{flag} {dest} would overwrite {path}, which this stream reads",
                               f"choose another {flag}")


def same_path(a: Path, b: Path) -> bool:
    """The same file (hard or symbolic links included), or the same name once resolved if either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def file_size_limit() -> int | None:
    """The soft RLIMIT_FSIZE (ulimit -f) in bytes, or None if unlimited: past it a write fails with EFBIG."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def largest_file(folder: Path) -> int | None:
    """The largest file the filesystem under `folder` can hold (FAT32: 4 GiB - 1), or None if not smaller than 2^63."""
    try:
        bits = os.pathconf(folder, "PC_FILESIZEBITS")
    except (AttributeError, ValueError, OSError):  # Windows, or not reported
        return None
    return 2 ** bits - 1 if 0 < bits < 64 else None


def frames_readable(path: Path, expected: int) -> int:
    """How many frames of a finished video can be read back. Fast path: the container's frame count matches and
    the last frame decodes (a short write loses the index, the tail, or both); otherwise count by decoding."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        if int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == expected:
            cap.set(cv2.CAP_PROP_POS_FRAMES, expected - 1)
            if cap.read()[0]:
                return expected
    finally:
        cap.release()
    cap, count = cv2.VideoCapture(str(path)), 0
    try:
        while cap.read()[0]:
            count += 1
    finally:
        cap.release()
    return count


def new_file_beside(path: Path) -> Path:
    """An empty, new file beside `path` named like an unfinished one of ours, created with the umask's mode
    (mkstemp's 0600 would be renamed into place and leave the published video unreadable to others)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def write_whole(path: Path, data: np.ndarray) -> None:
    """Write bytes under a temporary name and rename: the file appears whole or not at all, and any OSError
    (ENOSPC, EFBIG, EROFS, even at close) is raised as an EdgesegError."""
    tmp = path.with_name(f".{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.tobytes())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc, "write") from None


def has_entries(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError as exc:
        raise write_error(folder, exc, "list") from None


def human_bytes(n: int) -> str:
    n = max(0, n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def print_note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
