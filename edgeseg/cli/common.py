"""What several subcommands share: argument types, help texts, and how result files are written
(refused before the work when they exist or cannot be written; whole or not at all)."""

from __future__ import annotations

import argparse

from edgeseg.errors import BadInputError, EdgesegError


def parse_size(text: str) -> tuple[int, int]:
    """'360x480' -> (360, 480): height first, as in N x C x H x W."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BadInputError(f"cannot read input size '{text}'", "write it as HEIGHTxWIDTH, e.g. 360x480") from None
    if h < 1 or w < 1:
        raise BadInputError(f"input size '{text}' must be positive", "write it as HEIGHTxWIDTH, e.g. 360x480")
    return h, w


def size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except BadInputError as exc:  # argparse prints ArgumentTypeError's text as the usage error
        raise argparse.ArgumentTypeError(f"{exc.problem}; {exc.fix}") from None


SPIN_HELP = ("ONNX Runtime: let idle workers spin between runs (off by default: spinning starves the "
             "host tail, the stream's threads and other engines; alone it can save a fraction of a ms)")


def add_force(p: argparse.ArgumentParser, what: str = "existing output files") -> None:
    p.add_argument("--force", action="store_true", help=f"replace {what}")


def check_outputs(force: bool, *paths: str | None) -> None:
    """Refuse, before any work, output files that exist (without --force) or cannot be written: a long
    bench or eval must not end in a refused or failed write."""
    for path in paths:
        if path:
            writable_output(path, force)


def write_output(path: str, text: str, force: bool) -> None:
    """Write a result file whole or not at all; an OSError becomes an error that names the fix."""
    from edgeseg.io import atomic_path

    try:
        with atomic_path(path, overwrite=force) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise EdgesegError(f"cannot write {path}: {exc.strerror or exc}",
                           "free space or pick a writable folder, then run again") from exc


def writable_output(path: str, force: bool) -> None:
    import os
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise BadInputError(f"{path} is a folder, not a file", "pass a file path")
    if target.exists() and not force:
        raise BadInputError(f"{path} already exists", "choose another path, or pass --force to replace it")
    folder = target.parent if str(target.parent) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write {path}: {existing} is not a writable folder",
                            "pick a destination in a folder you can write to")
