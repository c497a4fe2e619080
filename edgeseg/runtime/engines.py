"""Which engine a command runs when none is named: the newest one `edgeseg build` wrote under `engines/`.

    from edgeseg.runtime.engines import newest_engine
    newest_engine()  # Path("engines/deeplabv3plus-int8-openvino")

Torch-free and cheap: it reads each candidate's manifest.json (fields validated, file hashes not: `load`
checks those when the engine is opened).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.manifest import MANIFEST_NAME, ManifestError, read_manifest

__all__ = ["DEFAULT_ENGINES_DIR", "BUILD_COMMAND", "Candidate", "engine_candidates", "newest_engine",
           "default_engine"]

DEFAULT_ENGINES_DIR = "engines"
BUILD_COMMAND = "edgeseg build --model deeplabv3plus --precision int8"


@dataclass(frozen=True)
class Candidate:
    path: Path  # engines_dir / name, as given (relative stays relative)
    built: _dt.datetime  # UTC: the manifest's `created`, else manifest.json's modification time
    from_manifest: bool  # False when `built` is the file time (`created` missing or unreadable)


def engine_candidates(engines_dir: str | os.PathLike = DEFAULT_ENGINES_DIR, note=None) -> list[Candidate]:
    """The engine directories directly under `engines_dir` whose manifest.json reads and validates, newest
    first. Folders without a manifest (and hidden ones: builds in progress) are passed over in silence; a
    manifest that does not read is passed over with a note (`note(msg)`, default: a line on stderr)."""
    note = note or _stderr
    root = Path(engines_dir)
    found = []
    try:
        entries = sorted(root.iterdir())
    except OSError:  # missing, not a folder, unreadable: no candidates (the caller says where it looked)
        return []
    for folder in entries:
        if folder.name.startswith(".") or not (folder / MANIFEST_NAME).is_file():
            continue
        try:
            manifest = read_manifest(folder)
        except ManifestError as exc:
            note(f"edgeseg: note: skipped {folder}: its manifest does not read ({exc.problem})")
            continue
        built = _parse_created(manifest.created)
        from_manifest = built is not None
        if built is None:
            try:
                built = _dt.datetime.fromtimestamp((folder / MANIFEST_NAME).stat().st_mtime, _dt.timezone.utc)
            except OSError:
                continue
        found.append(Candidate(folder, built, from_manifest))
    found.sort(key=lambda c: (c.built, c.path.name), reverse=True)
    return found


def newest_engine(engines_dir: str | os.PathLike = DEFAULT_ENGINES_DIR, note=None) -> Path:
    """The newest engine directory under `engines_dir` (by the manifest's `created`, else the file time).
    Raises EdgesegError naming the folder and the build command when there is none."""
    found = engine_candidates(engines_dir, note)
    if not found:
        raise _none_found(engines_dir)
    return found[0].path


def default_engine(engines_dir: str | os.PathLike = DEFAULT_ENGINES_DIR, what: str = "engine") -> Path:
    """What a command without --engine runs: the newest engine, announced on stdout as
    `engine: engines/X (newest under engines/, built 2026-12-02 04:10 UTC; pass --engine to choose)`."""
    found = engine_candidates(engines_dir)
    if not found:
        raise _none_found(engines_dir)
    c = found[0]
    when = c.built.strftime("%Y-%m-%d %H:%M UTC")
    built = f"built {when}" if c.from_manifest else f"manifest written {when}"
    print(f"{what}: {c.path} (newest under {_shown(engines_dir)}, {built}; pass --engine to choose)", flush=True)
    return c.path


def _none_found(engines_dir: str | os.PathLike) -> EdgesegError:
    return EdgesegError(f"no engine given and none under {_shown(engines_dir)} (looked in "
                        f"{Path(engines_dir).resolve()} for folders holding a readable {MANIFEST_NAME})",
                        f"build one: `{BUILD_COMMAND}`, or pass --engine DIR")


def _shown(engines_dir: str | os.PathLike) -> str:
    return str(engines_dir).rstrip("/\\") + "/"


def _parse_created(text: str) -> _dt.datetime | None:
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if when.tzinfo is None:  # written without an offset: taken as UTC, as edgeseg writes it
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
