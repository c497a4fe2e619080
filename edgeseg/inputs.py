"""Checks of what a user hands edgeseg, made where the value is read: paths that must be regular files,
JSON files written by edgeseg, counts and limits.

Why one module: a directory, a FIFO or a device passed where a file is expected used to be reported as
"does not exist" (or, for a FIFO, to block on open); a JSON file of the wrong shape ended in a KeyError.
Every reader calls these instead, so each refusal says what the path is and what to pass instead.
Stdlib only: the runtime imports it.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from edgeseg.errors import BadInputError, EdgesegError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def path_kind(path: str | os.PathLike) -> str:
    """What is at `path`, in words: "a file", "a directory", "a FIFO (named pipe)", ..., "a broken
    symbolic link", or "missing"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:  # permission denied on a parent, name too long, a loop of links
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(mode):
        return "a file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def require_file(path: str | os.PathLike, what: str, fix: str,
                 error: type[EdgesegError] = BadInputError) -> Path:
    """`path` as a Path when it is a regular file (or a link to one); else `error` naming what it is.

    Checked before opening: opening a FIFO blocks until a writer comes, and a directory's error reads
    like a missing file."""
    return _require_kind(path, "a file", "a file", what, fix, error)


def require_folder(path: str | os.PathLike, what: str, fix: str,
                   error: type[EdgesegError] = BadInputError) -> Path:
    """`path` as a Path when it is a folder (or a link to one); else `error` naming what it is."""
    return _require_kind(path, "a directory", "a folder", what, fix, error)


def _require_kind(path: str | os.PathLike, kind_wanted: str, noun: str, what: str, fix: str,
                  error: type[EdgesegError]) -> Path:
    kind = path_kind(path)
    if kind == kind_wanted:
        return Path(path)
    if kind == "missing":
        raise error(f"{what} {path} does not exist", fix)
    raise error(f"{what} {path} is {kind}, not {noun}", fix)


def read_json(path: str | os.PathLike, what: str, fix: str, error: type[EdgesegError] = EdgesegError) -> Any:
    """The JSON value of the regular file `path`, or `error` saying why it cannot be read."""
    path = require_file(path, what, fix, error)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not text (not UTF-8)", fix) from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}", fix) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not JSON ({exc.msg} at line {exc.lineno})", fix) from None
    except RecursionError:
        raise error(f"{path} is not JSON edgeseg wrote (nested too deeply)", fix) from None


def count(value: object, what: str, fix: str, *, zero: bool = False) -> int | None:
    """A count or limit given by the user: None stays None (the caller's default); an int of at least 1
    (0 too with `zero`) is returned; anything else (negative, a bool, a float) is refused.

    Why here and not with `value or DEFAULT`: `or` turned 0 into the default and a negative count ran
    nothing, both silently."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{what} must be a whole number, got {value!r}", fix)
    if value < (0 if zero else 1):
        raise BadInputError(f"{what} must be {'0 or more' if zero else 'at least 1'}, got {value}", fix)
    return value


def is_number(value: object) -> bool:
    """A JSON number (int or float, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    return is_number(value) and math.isfinite(value)
