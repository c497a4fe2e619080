"""Several sources into one engine: a feed per source, the mailboxes that batch their frames, and how many
engine calls run at once.

A *feed* is one source with its own sinks, statistics, stop switch and error: a camera that dies or
stalls ends its own feed (its reader keeps reconnecting meanwhile) and never holds the others back.

The engine side takes frames from all feeds at once (`Mailboxes.get`): whatever is ready, round-robin
over the feeds so that none starves, at most `max_batch` frames a call. A live feed keeps only its
newest frame (a new one replaces an unread one, counted as dropped); a file feed holds up to
`capacity` frames and its reader waits for room, so every file frame is processed.
"""

from __future__ import annotations

import collections
import os
import queue
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeseg.errors import BadInputError
from edgeseg.runtime.instance_render import score_threshold_for
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.sources import Source
from edgeseg.runtime.stats import StatsRecorder

END = None  # the end-of-stream marker every stage forwards after its last frame
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")


@dataclass
class Feed:
    """One source and where its rendered frames go. `name` labels its statistics and output files."""

    source: Source
    sinks: Sequence[Sink] = ()
    name: str | None = None


@dataclass
class FeedState:
    """What the pipeline tracks per feed while it streams."""

    index: int
    name: str
    source: Source
    sinks: list
    recorder: StatsRecorder = field(default_factory=StatsRecorder)
    stop_event: threading.Event = field(default_factory=threading.Event)
    tally: Any = None  # an InstanceTally on instance engines
    stopped_by: str = "end"
    error: BaseException | None = None
    frames_read: int = 0

    def stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            self.stopped_by = reason
            self.stop_event.set()

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self.stopped_by = "error"
        self.stop_event.set()


def describe_sources(named_sources: Sequence[tuple[str, Source]]) -> dict[str, Any]:
    """The stats' `source`: the source itself for one, a summary for several (each is in `sources`)."""
    if len(named_sources) == 1:
        return named_sources[0][1].describe()
    names = [name for name, _ in named_sources]
    return {"kind": "several", "name": ",".join(names), "names": names,
            "live": any(source.live for _, source in named_sources)}


def check_feed_names(names: Sequence[str]) -> None:
    """Names become file names and JSON keys: short, plain and unique."""
    for name in names:
        if not NAME_PATTERN.fullmatch(name):
            raise BadInputError(f"source name {name!r} is not a plain name",
                                "name sources with a letter then letters, digits, '_', '-' or '.' "
                                "(at most 32), e.g. --rtsp front=rtsp://...")
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise BadInputError(f"two sources are named {seen[0]!r}", "give every source its own name (NAME=VALUE)")


def output_for(template: str | os.PathLike, name: str, several: bool) -> Path:
    """Where a feed's --output goes: the path itself for one source; with several, `{source}` in the path is
    replaced by the feed's name, or the name is added (out.mp4 -> out-front.mp4, frames/ -> frames/front/)."""
    text = str(template)
    if "{source}" in text:
        return Path(text.replace("{source}", name))
    if not several:
        return Path(text)
    path = Path(text)
    if path.suffix:
        return path.with_name(f"{path.stem}-{name}{path.suffix}")
    return path / name


class Mailboxes:
    """Per-feed mailboxes with one lock: `put` from each feed's reader, `take` from the engine side."""

    def __init__(self, live: Sequence[bool], capacity: int, max_batch: int,
                 on_drop: Callable[[int], None]) -> None:
        self._cond = threading.Condition()
        self._boxes = [collections.deque() for _ in live]
        self._live = list(live)
        self._closed = [False] * len(live)
        self._capacity = max(1, capacity)
        self._max_batch = max(1, max_batch)
        self._on_drop = on_drop
        self._next = 0  # the feed served first by the next take (round-robin)

    def put(self, feed: int, item: Any) -> None:
        """A frame of `feed`, or END when that feed has ended. A file feed waits for room (never drops)."""
        with self._cond:
            box = self._boxes[feed]
            if item is END:
                self._closed[feed] = True
            elif self._live[feed]:
                if box:
                    box.popleft()
                    self._on_drop(feed)
                box.append(item)
            else:
                while len(box) >= self._capacity and not self._closed[feed]:
                    self._cond.wait()
                if self._closed[feed]:  # closed while waiting (abandoned): the frame is dropped
                    self._on_drop(feed)
                else:
                    box.append(item)
            self._cond.notify_all()

    def get(self) -> Any:
        """Up to `max_batch` packets, round-robin over the feeds that have one; END once every feed has ended and
        nothing is left. Blocks while nothing is ready."""
        with self._cond:
            while not any(self._boxes) and not all(self._closed):
                self._cond.wait()
            if not any(self._boxes):
                return END
            taken, n, k = [], len(self._boxes), self._next
            while len(taken) < self._max_batch and any(self._boxes):
                box = self._boxes[k % n]
                if box:
                    taken.append(box.popleft())
                    self._next = (k + 1) % n  # the feed after the last one served goes first next time
                k += 1
            self._cond.notify_all()
            return taken

    def close(self, feed: int) -> None:
        self.put(feed, END)


def default_names(sources: Sequence[Source]) -> list[str]:
    """kind + running number per kind: video0, rtsp0, rtsp1, camera0."""
    seen: collections.Counter = collections.Counter()
    names = []
    for source in sources:
        names.append(f"{source.kind}{seen[source.kind]}")
        seen[source.kind] += 1
    return names


class Ends:
    """A queue that several engine threads end: `get` gives END only once each of them has put its END."""

    def __init__(self, inner: queue.Queue, writers: int) -> None:
        self._inner, self._left = inner, writers

    def get(self):
        while (item := self._inner.get()) is END:
            self._left -= 1
            if not self._left:
                return END
        return item


def engine_workers_for(session, config, feeds: int) -> int:
    """Engine calls at once: each source is served by one worker (its frames stay in order), so at most one
    worker per source; refused for sessions that run one call at a time. By default one per source where the
    session takes concurrent calls and the engine one frame a call: three ONNX Runtime calls at once streamed
    three videos 22% faster than one call at a time and 12% faster than a batch-3 engine (docs/streaming.md)."""
    concurrent = getattr(session, "concurrent_calls", False)
    if config.engine_workers is None:
        return feeds if concurrent and session.manifest.input.shape[0] == 1 else 1
    if config.engine_workers > 1 and not concurrent:
        backend = session.manifest.backend.get("name", "this")
        raise BadInputError(f"the {backend} session runs one engine call at a time, so engine_workers "
                            f"{config.engine_workers} cannot apply", "drop --engine-workers (ONNX Runtime engines "
                            "take it), or build the engine with --batch N to batch the sources instead")
    return min(config.engine_workers, feeds)


def batch_size_for(session, config, feeds: int) -> tuple[int, bool]:
    """Frames per engine call, and whether short batches are padded: a fixed-batch engine takes exactly its
    batch; a dynamic one takes one frame per source of its worker by default (`config.batch` to choose)."""
    engine_batch = session.manifest.input.shape[0]
    instances = score_threshold_for(session, config.score_threshold) is not None
    if engine_batch is None:
        return (1 if instances else (config.batch or feeds)), False
    if config.batch not in (None, engine_batch):
        raise BadInputError(f"batch {config.batch} was asked, but the engine was built for batches of {engine_batch}",
                            "drop --batch (the engine's own batch is used), or build with --dynamic")
    if instances and engine_batch != 1:
        raise BadInputError(f"the instance engine takes batches of {engine_batch}; its stream sends one frame a call",
                            "build the instance engine with --batch 1 (the default)")
    return engine_batch, engine_batch > 1
