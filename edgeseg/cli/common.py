"""What several subcommands share: argument types, help texts, and how result files are written
(refused before the work when they exist or cannot be written; whole or not at all)."""

from __future__ import annotations

import argparse

from edgeseg.errors import BadInputError


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
    from edgeseg.io import write_result

    write_result(path, text.encode(), force)


def writable_output(path: str, force: bool) -> None:
    """A result file: not a folder (or a FIFO, a device), not there already without --force, and its folder
    writable (edgeseg.io.require_writable_parent: read-only disks, a parent that is a file, no permission)."""
    import os

    from edgeseg.inputs import path_kind
    from edgeseg.io import require_writable_parent

    kind = path_kind(path)
    if kind == "a directory":
        raise BadInputError(f"{path} is a folder, not a file", "pass a file path")
    if kind not in ("missing", "a file") and os.path.lexists(path):  # under a file: the folder check says so
        raise BadInputError(f"{path} is {kind}, not a file", "pass the path of a file to write")
    if kind == "a file" and not force:
        raise BadInputError(f"{path} already exists", "choose another path, or pass --force to replace it")
    require_writable_parent(path, path, "pick a destination in a folder you can write to")
