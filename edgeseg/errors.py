"""User-facing errors: every one names the problem and the fix, so the CLI can print both without a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class EdgesegError(Exception):
    """An error caused by the user's input or environment, not by a bug in edgeseg."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class UnknownNameError(EdgesegError, KeyError):
    """A name (model, backbone, option) that is not one of the valid choices."""

    def __init__(self, kind: str, name: object, valid: Iterable[str]) -> None:
        valid = sorted(valid)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        super().__init__(f"unknown {kind} '{name}'", f"{hint}valid {kind}s: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return Exception.__str__(self)


class BadInputError(EdgesegError, ValueError):
    """A value that has the wrong shape, type, range or size."""


class CheckpointError(EdgesegError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the KeyboardInterrupt or SystemExit hidden anywhere in `exc`'s cause/context chain.

    Libraries turn an interrupt into their own error: when cleanup code fails while a Ctrl+C unwinds,
    torch's ONNX exporter wraps that failure (whose context is the KeyboardInterrupt) in a
    TorchExportError. An `except Exception` that then falls back, warns or reports "not available"
    lets an interrupted build carry on and publish. Call this first in every broad `except` on the
    build path; it returns when the chain holds no interrupt.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (KeyboardInterrupt, SystemExit)):
            raise current
        pending += [current.__cause__, current.__context__]
