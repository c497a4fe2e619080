"""Progress for long jobs that reads well both on a terminal and in a log.

Why: tqdm redraws its bar with carriage returns. On a terminal that is one live line; in a CI log or a
file it becomes thousands of fragments (`make demo > log 2>&1` was 900 lines of them). So every
progress display in edgeseg goes through `progress()`: on a terminal it is the ordinary tqdm bar; off a
terminal it writes whole plain lines, at most one every EDGESEG_PROGRESS_INTERVAL seconds (default 10),
plus one closing line, e.g.

    epoch 3/50: 20/45 batch (44%), 1:02 elapsed, ETA 1:20, 0.32 batch/s, loss=1.234
    epoch 3/50: 45/45 batch (100%) done in 2:21, 0.32 batch/s, loss=1.198

A bar made with leave=False (it vanishes from a terminal when done) writes its closing line only when it
wrote progress lines before, so short steps leave nothing in the log, as on a terminal.

EDGESEG_PROGRESS=off|lines|bars overrides the choice (default auto: bars on a terminal, lines off it).
Torch-free (stdlib and tqdm only): the streaming runtime may import it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

MODES = ("auto", "off", "lines", "bars")
DEFAULT_INTERVAL_S = 10.0
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A bad environment variable is reported, not raised: it must not end a run hours in."""
    if message not in _warned:
        _warned.add(message)
        print(f"edgeseg: warning: {message}", file=sys.stderr, flush=True)


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def mode(file: IO[str] | None = None) -> str:
    """'off', 'lines' or 'bars': EDGESEG_PROGRESS when set, else bars when `file` (stderr) is a terminal."""
    chosen = os.environ.get("EDGESEG_PROGRESS", "auto").strip().lower() or "auto"
    if chosen not in MODES:
        _warn_once(f"EDGESEG_PROGRESS={chosen!r} is not one of {', '.join(MODES)}; using auto")
        chosen = "auto"
    if chosen != "auto":
        return chosen
    return "bars" if _isatty(file if file is not None else sys.stderr) else "lines"


def interval() -> float:
    """Seconds between two progress lines off a terminal: EDGESEG_PROGRESS_INTERVAL, default 10."""
    text = os.environ.get("EDGESEG_PROGRESS_INTERVAL", "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # NaN fails `>= 0` too
        _warn_once(f"EDGESEG_PROGRESS_INTERVAL={text!r} is not a number of seconds >= 0; "
                   f"using {DEFAULT_INTERVAL_S:g}")
        return DEFAULT_INTERVAL_S
    return value


def progress(iterable: Iterable[Any] | None = None, *, desc: str, total: float | None = None, unit: str = "it",
             disable: bool = False, leave: bool = True, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on a terminal, timed plain lines off it (see the module doc); `disable` shows nothing.

    Used like tqdm: iterate over it, or `update()` it inside `with`; `set_postfix` works in both modes."""
    stream = file if file is not None else sys.stderr
    chosen = mode(stream)
    options = dict(desc=desc, total=total, unit=unit, disable=disable or chosen == "off", leave=leave, file=stream,
                   **kwargs)
    if chosen == "lines":
        return LineProgress(iterable, every=interval(), **options)
    return tqdm(iterable, **options)


def _num(value: float) -> str:
    """A count as written: 1234567, not 1.23457e+06; a fractional one (update(0.5)) to 4 digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _clock(seconds: float) -> str:
    return tqdm.format_interval(max(0.0, seconds))


class LineProgress(tqdm):
    """tqdm that writes whole lines: never a carriage return, a bar glyph or a blank line.

    tqdm calls `display()` on every refresh (updates, set_postfix, its monitor thread) and on close; here
    display writes a line only once `every` seconds have passed since the last one, `clear` and `moveto`
    (cursor moves for nested bars) write nothing, and `close` writes the closing line itself."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, every: float = DEFAULT_INTERVAL_S,
                 **kwargs: Any) -> None:
        self._every = every
        self._last_line: float | None = None  # set from tqdm's start time on the first display
        self._lines = 0
        super().__init__(iterable, **kwargs)

    def line(self, final: bool = False) -> str:
        """The progress as one line: what, how far, how long, how fast, and the postfix (loss, lr...)."""
        d = self.format_dict
        n, total, unit, elapsed = d["n"], d["total"], d["unit"] or "it", d["elapsed"]
        count = f"{_num(n)}/{_num(total)} {unit}" if total else f"{_num(n)} {unit}"
        if total:
            count += f" ({n / total:.0%})"
        rate = d["rate"] if d["rate"] and not final else (n / elapsed if elapsed else None)
        parts = [f"{count} done in {_clock(elapsed)}" if final else f"{count}, {_clock(elapsed)} elapsed"]
        if not final and rate and total and n < total:
            parts.append(f"ETA {_clock((total - n) / rate)}")
        if rate:
            parts.append(f"{rate:.2f} {unit}/s" if rate >= 1 else f"{1 / rate:.2f} s/{unit}")
        if d.get("postfix"):
            parts.append(str(d["postfix"]))
        prefix = f"{d['prefix']}: " if d.get("prefix") else ""
        return prefix + ", ".join(parts)

    def _write_line(self, final: bool = False) -> None:
        self.fp.write(self.line(final) + "\n")
        self.fp.flush()
        self._lines += 1

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # a clear ('') or tqdm's "more hidden" marker: nothing to show in a log
            return False
        if not hasattr(self, "start_t"):  # tqdm's first refresh, inside __init__: nothing done yet
            return True
        now = self._time()
        if self._last_line is None:
            self._last_line = self.start_t
        if now - self._last_line < self._every:
            return True
        self._last_line = now
        _flush_stdout(self.fp)
        self._write_line()
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: lines already written stay, as they should in a log."""

    def moveto(self, n: int) -> None:
        """No cursor to move off a terminal."""

    def close(self) -> None:
        if self.disable:
            return
        if getattr(self, "last_print_t", None) is not None and (self.leave or self._lines):
            self._ema_dt = lambda: None  # the closing rate is the overall average, as tqdm's own close
            with self._lock:
                _flush_stdout(self.fp)
                try:
                    self._write_line(final=True)
                except ValueError:  # the stream was closed first (a bar garbage-collected at exit)
                    pass
        self.leave = False  # tqdm's close then only "clears", which display() and clear() ignore
        super().close()


def _flush_stdout(fp: IO[str]) -> None:
    """When stdout and stderr share one log, what was printed before a progress line shows before it
    (a piped stdout is block-buffered and would otherwise come out later, out of order)."""
    if fp is not sys.stdout:
        try:
            sys.stdout.flush()
        except (AttributeError, ValueError, OSError):
            pass
