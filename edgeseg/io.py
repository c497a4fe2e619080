"""Files that are written whole or not at all, and never overwrite silently.

Both helpers stage beside the target with `tempfile` (0600 files, 0700 directories, so nothing
half-written is readable) and give what they publish the modes a plain `open`/`mkdir` would have:
0666/0777 less the umask, so a deployment group can read an engine its builder published.
`require_writable_parent` checks a destination before the work (every command's output flags use it),
so a read-only or misnamed destination fails in a second, not after a build or an evaluation.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgeseg.errors import EdgesegError

MANIFEST_NAME = "manifest.json"  # what marks a directory as an engine (edgeseg.manifest re-exports it)


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    A crash or exception leaves `path` as it was and removes the partial file.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise EdgesegError(f"{target} already exists", "choose another path, or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.lexists(tmp):  # a writer may have removed it; then there is nothing to publish
            apply_umask(Path(tmp))
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_new(Path(tmp), target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_new(tmp: Path, target: Path) -> None:
    """Publish `tmp` as `target` only if `target` still does not exist: link(2) fails on an existing
    name, where rename(2) would replace a file another writer published meanwhile."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise EdgesegError(f"{target} appeared while it was being written (another process wrote it first); "
                           "nothing was replaced", "choose another path, or pass --force to replace it") from None
    except OSError:  # a file system without hard links: check, then rename (a narrow window)
        if os.path.lexists(target):
            raise EdgesegError(f"{target} appeared while it was being written; nothing was replaced",
                               "choose another path, or pass --force to replace it") from None
        os.replace(tmp, target)


# -- destinations checked before the work ---------------------------------------------------------------------
# Why a probe file failed, in words (the errno's own text is misleading for some: /proc says "No such file").
_PROBE_REASONS = {
    errno.EROFS: "its file system is mounted read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "its disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.ENOENT: "it takes no new files (a virtual file system such as /proc or /sys)",
}


def require_writable_parent(path: str | os.PathLike, what: str, fix: str) -> Path:
    """Refuse, before any work, a file or directory `path` that could not be created: its folder (or the
    nearest one that exists, since missing folders are made) must be a folder this process can write in.
    Returns that folder. `what` names the output in the error ("--json", "the engine directory").

    What it catches, root included: a parent that is a file or a broken link, a read-only mount, a folder
    without write permission, a virtual file system (/proc), a disk with not a byte free. It writes a
    one-byte probe file and removes it: os.access alone misses full disks, quotas and ACLs, and, for
    root, everything but read-only mounts. A disk that fills up later is not foreseeable: writers still
    report that as an error when it happens."""
    return require_writable_folder(Path(path).parent, what, fix)


def require_writable_folder(folder: str | os.PathLike, what: str, fix: str) -> Path:
    """`folder` exists or can be made, and a file can be written in it (see `require_writable_parent`)."""
    from edgeseg.inputs import path_kind

    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:  # missing, or under a file (ENOTDIR)
        existing = existing.parent
    kind = path_kind(existing)
    if kind != "a directory":
        raise EdgesegError(f"cannot write {what} in {folder}: {existing} is {kind}, not a writable folder", fix)
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeseg-probe-", dir=existing)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        reason = _PROBE_REASONS.get(exc.errno, exc.strerror or str(exc))
        room = "free space on that disk, or " if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise EdgesegError(f"cannot write {what} in {existing}: {reason}", room + fix) from None
    return existing


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, and a
    thread creating a file in between would get the temporary value)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): the only portable way
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give `path` (and, for a directory, everything under it) the modes open/mkdir would have given:
    0777 & ~umask for directories and executables, 0666 & ~umask for other files. Symlinks are left alone."""
    mask = current_umask()
    entries = [path]
    if path.is_dir() and not path.is_symlink():
        for parent, dirs, files in os.walk(path):
            entries += [Path(parent, name) for name in dirs + files]
    for entry in entries:
        mode = os.lstat(entry).st_mode
        if stat.S_ISLNK(mode):
            continue
        full = 0o777 if stat.S_ISDIR(mode) or mode & 0o111 else 0o666
        os.chmod(entry, full & ~mask)


def _is_engine_dir(path: Path, marker: str = MANIFEST_NAME) -> bool:
    return path.is_dir() and (path / marker).is_file()  # a link to one: the link is replaced


def check_replaceable(target: Path, overwrite: bool, marker: str = MANIFEST_NAME) -> None:
    """Refuse to publish over `target` unless it is absent, or `overwrite` and it is an engine
    directory (one holding `marker`: an export names its own record) or an empty one: --force replaces
    what edgeseg wrote, never a folder of someone's other files."""
    if not os.path.lexists(target):
        return
    if not overwrite:
        raise EdgesegError(f"{target} already exists", "choose another --out, or pass --force to replace it")
    if target.is_dir() and not any(target.iterdir()):
        return
    if not _is_engine_dir(target, marker):
        what = "an engine directory" if marker == MANIFEST_NAME else "an edgeseg export"
        raise EdgesegError(f"{target} is not {what} (no {marker}); --force only replaces what edgeseg wrote",
                           "choose another --out, or move that folder's files away yourself")


@contextmanager
def staged_dir(path: str | os.PathLike, overwrite: bool = False, marker: str = MANIFEST_NAME,
               scratch: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield an empty directory beside `path`; on success it becomes `path` in one rename.

    A failure removes the staging directory, so a half-built engine never appears under `path`;
    with `overwrite` the old directory is kept until the new one is in place. The target is checked
    at the start (fail before a long build) and again at publish: another build may have published
    there meanwhile, and its engine is never replaced unless `overwrite` was asked. `scratch`: where the
    staging directory (and a replaced one while it is retired) lives instead of beside `path`, on the same file
    system: a model server watching `path`'s folder would otherwise see them as models.
    """
    target = Path(path)
    check_replaceable(target, overwrite, marker)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=scratch or target.parent))
    except OSError:  # say why (a read-only disk, a parent that is a file), not only the errno
        require_writable_parent(target, "the engine directory", "choose another --out in a folder you can write to")
        raise
    try:
        yield staging
        apply_umask(staging)
        if overwrite:
            _replace(staging, target, marker, Path(scratch or target.parent))
        else:
            _publish_new(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _appeared(target: Path) -> EdgesegError:
    return EdgesegError(f"{target} appeared while this build ran (another build published there first); "
                        "nothing was replaced and this build's result is discarded",
                        "choose another --out, or pass --force to replace it")


def _publish_new(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`, failing when `target` now exists. rename(2) fails on a non-empty
    directory or a file, so a finished engine is never replaced; the check refuses an empty directory."""
    if os.path.lexists(target):
        raise _appeared(target)
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise _appeared(target) from None
        raise


def _replace(staging: Path, target: Path, marker: str = MANIFEST_NAME, scratch: Path | None = None) -> None:
    """--force: retire the old engine, rename the new one in, then delete the old one. If another
    build got there in between, put the old one back and say so rather than lose either."""
    if not os.path.lexists(target):
        return _publish_new(staging, target)
    check_replaceable(target, overwrite=True, marker=marker)
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=scratch or target.parent))
    try:
        os.rename(target, retired / target.name)
    except FileNotFoundError:  # another --force build retired it first
        shutil.rmtree(retired, ignore_errors=True)
        return _publish_new(staging, target)
    try:
        _publish_new(staging, target)
    except BaseException:
        if not os.path.lexists(target):
            os.rename(retired / target.name, target)
            shutil.rmtree(retired, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def write_result(path: str | os.PathLike, data: bytes, overwrite: bool) -> None:
    """Write a result file (JSON, report, image) whole or not at all; an OSError becomes an error that
    names the fix."""
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise EdgesegError(f"cannot write {path}: {exc.strerror or exc}",
                           "free space or pick a writable folder, then run again") from exc
