"""The streaming pipeline: capture -> preprocess -> infer -> render -> sinks, in three kinds of thread.

    from edgeseg.runtime import load
    from edgeseg.runtime.pipeline import Pipeline, PipelineConfig
    from edgeseg.runtime.sinks import VideoSink
    from edgeseg.runtime.sources import VideoFile

    with load("engines/fastscnn-int8-onnxruntime") as session:
        stats = Pipeline(VideoFile("drive.mp4"), session, [VideoSink("out.mp4")], PipelineConfig(view="side")).run()
    print(stats.summary())

Several sources share one engine: pass `[Feed(source, sinks, name), ...]` instead of one source. Each
source has its own capture thread, reconnect policy, drop counting, sinks and statistics; the engine
takes the frames that are ready, a batch per call where the engine takes one (`--batch N` or
`--dynamic` at build time). A source that dies ends its own feed; the others stream on.

Why threads: OpenCV's decode/resize/encode and the inference libraries release the GIL, so while the
engine runs on frame k the capture thread decodes k+1 and the display thread draws k-1; the stream runs at
the speed of its slowest stage (the engine) instead of the sum of all stages. Why only three kinds (a
capture thread per source: read and resize; the engine thread: batch and infer; the display thread:
render and sinks): on a machine whose cores the engine fills, every wake-up of another thread preempts
one of the engine's workers and stalls the rest at its next barrier. Five threads, one per stage, ran
the stream at 88-95% of the engine's rate with 66-79 ms latency; three at 86-101% with 33-43 ms
(Fast-SCNN INT8 at 360x480, 2 cores, 2026-12-02; docs/streaming.md).

File sources wait for the engine (every frame is processed); live sources keep only their newest frame
(stale frames are dropped and counted: a driver wants the newest frame, not a queue of old ones).
Stopping (`stop()`, a signal, the window's q key, --max-frames, the end of a file, an error in any stage)
ends capture; the frames already in flight are drained through every stage and the sinks are closed, so
an output video is always finalized. `run()` sets `stats` on every ending, a source that never opened
included, so the statistics (with the error) can always be written.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.errors import BadInputError
from edgeseg.runtime.destinations import refuse_overwriting_inputs
from edgeseg.runtime.engine_only import engine_only, time_infer
from edgeseg.runtime.feeds import (END, Ends, Feed, FeedState, Mailboxes, batch_size_for, check_feed_names,
                                   default_names, describe_sources, engine_workers_for)
from edgeseg.runtime.frames import resize_to_input
from edgeseg.runtime.instance_render import InstanceTally, renderer_for, score_threshold_for
from edgeseg.runtime.pipeline_config import PipelineConfig
from edgeseg.runtime.sinks import NullSink, Result, Sink
from edgeseg.runtime.sources import Source
from edgeseg.runtime.stats import StatsRecorder, StreamStats, error_text

__all__ = ["Feed", "Pipeline", "PipelineConfig"]

STUCK_READ_S = 3.0  # after a stop, how long a live source's read() may block before the stream ends without it


@dataclass
class Packet:
    """A frame on its way through the stages; each stage fills its field and drops what is no longer needed."""

    feed: FeedState
    index: int
    frame: np.ndarray
    t_capture: float
    input: np.ndarray | None = None  # the frame at the engine's input size (made by the capture thread)
    labels: np.ndarray | None = None
    instances: Any = None  # an instance engine's Instances above the threshold, at the frame's size
    picture: np.ndarray | None = None


@dataclass
class Batch:
    """The packets of one engine call; `inputs` holds their engine-size frames (padded to a fixed batch)."""

    packets: list[Packet]
    inputs: np.ndarray | None = None



class Pipeline:
    """Sources, one Session, sinks. `run()` blocks until the stream ends, returns StreamStats and raises the first
    error (an engine or sink error, or a source that gave up) after draining and closing, with `self.stats` set."""

    def __init__(self, source: Source | Sequence[Feed], session, sinks: Sequence[Sink] = (),
                 config: PipelineConfig = PipelineConfig(), log: Callable[[str], None] | None = None) -> None:
        feeds = [Feed(source, sinks)] if isinstance(source, Source) else list(source)
        if not isinstance(source, Source) and sinks:
            raise BadInputError("sinks were passed beside a list of feeds", "give each Feed its own sinks")
        if not feeds or not all(isinstance(f, Feed) for f in feeds):
            raise BadInputError("Pipeline needs a Source or a list of Feed(source, sinks, name)",
                                "pass at least one source")
        names = [f.name or d for f, d in zip(feeds, default_names([f.source for f in feeds]))]
        check_feed_names(names)
        self.session, self.config = session, config
        self.workers = engine_workers_for(session, config, len(feeds))
        self.batch, self._pad = batch_size_for(session, config, -(-len(feeds) // self.workers))
        self.size = session.manifest.input.size
        self.stop_event = threading.Event()
        self.recorder = StatsRecorder()  # every feed's frames together, and the shared stages' times
        self.threshold = score_threshold_for(session, config.score_threshold)  # None: a semantic engine
        self.renderer = renderer_for(session, config.view, config.alpha, config.legend, self.threshold)
        self.feeds = [FeedState(i, name, f.source, list(f.sinks) or [NullSink()]) for i, (f, name)
                      in enumerate(zip(feeds, names))]
        all_inputs = [path for f in self.feeds for path in getattr(f.source, "inputs", list)()]
        for feed in self.feeds:
            if self.threshold is not None:
                feed.tally = InstanceTally(self.threshold, session.manifest.classes)
            for sink in feed.sinks:  # before anything is opened: a --force'd output must not destroy an input
                if isinstance(sink, Sink):
                    refuse_overwriting_inputs(sink, all_inputs, "the output")
        self.source = self.feeds[0].source  # the first (or only) source, for callers of the one-source API
        self.stats: StreamStats | None = None
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._stopped_by = None  # set by stop(): a reason for the whole stream
        self._error: BaseException | None = None
        self._kept: collections.deque = collections.deque(maxlen=max(1, config.keep_inputs))
        self._primed: dict[int, list[np.ndarray]] = {}  # frames read before the threads start (engine-only timing)
        self._before: np.ndarray | None = None  # seconds per session.infer call, timed before the stream

    # -- control ------------------------------------------------------------------------------------------
    def stop(self, reason: str = "signal") -> None:
        """Ask the stream to end (safe from a signal handler or any thread); frames in flight are finished."""
        if not self.stop_event.is_set():
            self._stopped_by = reason
            self.stop_event.set()
            for feed in self.feeds:
                feed.stop(reason)

    def _fail(self, exc: BaseException) -> None:
        """Keep the first error; the stream then ends as stopped by "error", whatever else asked it to stop."""
        if self._error is None:
            self._error = exc
            self._stopped_by = "error"
        self.stop("error")

    def _feed_failed(self, feed: FeedState, exc: BaseException) -> None:
        """A source's own error ends its feed only; with one source, that is the stream's error."""
        feed.fail(exc)
        if len(self.feeds) == 1:
            self._fail(exc)
            return
        self._log(f"edgeseg: source {feed.name} ended with an error ({error_text(exc)}); the others stream on")

    def _first_error(self) -> BaseException | None:
        """The stream's own error (engine, sink), else the first source's that gave up."""
        return self._error or next((f.error for f in self.feeds if f.error is not None), None)

    def _count(self, feed: FeedState, name: str, n: int = 1) -> None:
        feed.recorder.count(name, n)
        self.recorder.count(name, n)

    # -- stages -------------------------------------------------------------------------------------------
    def _capture(self, feed: FeedState, out: Mailboxes) -> None:
        """Read until the end, a stop or --max-frames (files: exactly that many frames are read)."""
        ring, limit, source = feed.recorder.rings["capture"], self.config.max_frames, feed.source
        primed = self._primed.get(feed.index, [])
        try:
            while not feed.stop_event.is_set():
                if limit and not source.live and feed.frames_read >= limit:
                    feed.stop("max-frames")
                    break
                t0 = time.perf_counter()
                frame = primed.pop(0) if primed else source.read()
                if frame is None:
                    break
                t = time.perf_counter()
                packet = Packet(feed, feed.frames_read, frame, t, resize_to_input(frame, self.size))
                took = time.perf_counter() - t0  # read and resize
                ring.add(took)
                self.recorder.rings["capture"].add(took)
                self._count(feed, "captured")
                out.put(feed.index, packet)
                feed.frames_read += 1
        except BaseException as exc:  # noqa: BLE001 - handed to run(), which re-raises it
            self._feed_failed(feed, exc)
        finally:
            out.close(feed.index)

    def _preprocess(self, packets: list[Packet]) -> Batch:
        """Frames at the engine's size; a dynamic-size engine takes the first frame's size for the whole batch
        (cameras of one rig share it; a frame of another size is resized, its labels drawn at its own size)."""
        size = self.size if None not in self.size else packets[0].frame.shape[:2]
        inputs = [resize_to_input(p.input, size) for p in packets]  # resized already unless the size is dynamic
        for p in packets:
            p.input = None
        if self._pad and len(inputs) < self.batch:  # a fixed-batch engine: the rest of the batch repeats a frame
            inputs += [inputs[-1]] * (self.batch - len(inputs))
        return Batch(packets, inputs[0][None] if len(inputs) == 1 else np.stack(inputs))

    def _infer(self, batch: Batch) -> Batch:
        if self.threshold is None:
            labels = self.session.infer(batch.inputs)
            for p, lab in zip(batch.packets, labels):
                p.labels = lab
        else:  # masks pasted once, at the size they are shown at
            for i, p in enumerate(batch.packets):
                found = self.session.detect(batch.inputs[i:i + 1], p.frame.shape[:2])[0]
                p.instances = found.above(self.threshold)
        self._kept.append(batch.inputs)
        batch.inputs = None
        return batch

    def _render(self, batch: Batch) -> Batch:
        for p in batch.packets:
            lines = self._hud_lines(p.feed) if self.config.hud else ()
            p.picture = self.renderer.render(p.frame, p.labels if self.threshold is None else p.instances, lines)
        return batch

    def _hud_lines(self, feed: FeedState) -> list[str]:
        r = feed.recorder
        name = f"{feed.name}  " if len(self.feeds) > 1 else ""
        return [f"{name}{r.fps():5.1f} FPS  infer {self.recorder.rings['infer'].last() * 1e3:4.0f} ms  "
                f"e2e {r.e2e.last() * 1e3:4.0f} ms",
                f"dropped {r.counts['dropped']}  corrupt {feed.source.corrupt}"]

    def _sink(self, batch: Batch) -> None:
        limit = self.config.max_frames
        for p in batch.packets:
            feed = p.feed
            if limit and feed.recorder.counts["processed"] >= limit:  # a live source's frames in flight at the limit
                self._count(feed, "dropped")
                continue
            result = Result(p.index, p.frame, p.labels, p.picture, p.t_capture, p.instances, feed.name)
            keep_going = all([sink.write(result) for sink in feed.sinks])
            feed.recorder.done(p.t_capture)
            self.recorder.done(p.t_capture)
            if feed.tally is not None:
                feed.tally.add(p.instances)
            if not keep_going:
                self.stop("window")
            if limit and feed.recorder.counts["processed"] >= limit:
                feed.stop("max-frames")
        return None

    def _stage(self, steps: Sequence[tuple[str, Callable[[Any], Any]]], inq, outq) -> None:
        """Run the steps, in turn, on every batch until the end marker, each timed in its stage's ring. Steps
        share a thread where a handoff would cost more than it overlaps (each wake-up of a thread on a busy core
        preempts one of the engine's workers). After its own error a thread drains its input (counting drops)
        so that no other thread blocks; the threads after it finish what they already have."""
        failed = False
        while (item := inq.get()) is not END:
            packets = item if isinstance(item, list) else item.packets
            if failed:
                self._drop(packets)
                continue
            try:
                for name, fn in steps:
                    t0 = time.perf_counter()
                    item = fn(item)
                    self.recorder.rings[name].add(time.perf_counter() - t0)
            except BaseException as exc:  # noqa: BLE001 - handed to run(), which re-raises it
                self._fail(exc)
                self._drop(packets)
                failed = True
                continue
            if outq is not None and item is not None:
                outq.put(item)
        if outq is not None:
            outq.put(END)

    def _drop(self, packets: list[Packet]) -> None:
        for p in packets:
            self._count(p.feed, "dropped")

    # -- run ----------------------------------------------------------------------------------------------
    def run(self) -> StreamStats:
        """Stream until the end; Ctrl+C (KeyboardInterrupt) in the calling thread stops cleanly too.
        `self.stats` is set on every ending, an error in opening a source included, before it is raised."""
        for feed in self.feeds:
            if hasattr(feed.source, "stop_event"):
                feed.source.stop_event = feed.stop_event  # a backoff wait ends at once when the feed is stopped
        try:
            self._open_sources()
            if self.config.engine_fps_iterations:
                self._time_engine_before()
            self._join(self._start())
        except KeyboardInterrupt:
            self.stop("signal")
        except BaseException as exc:  # noqa: BLE001 - recorded in the stats, then re-raised below
            self._fail(exc)
        finally:
            self._close()
            self.stats = self._freeze()
        error = self._first_error()
        if error is not None:
            raise error
        return self.stats

    def _open_sources(self) -> None:
        """Open every source; with several, one that cannot be opened (and gives up) ends its own feed only."""
        for feed in self.feeds:
            try:
                feed.source.open()
            except BaseException as exc:
                if len(self.feeds) == 1 or isinstance(exc, KeyboardInterrupt):
                    raise
                self._feed_failed(feed, exc)
                continue
            for sink in feed.sinks:
                if getattr(sink, "fps", 0) is None:
                    sink.fps = feed.source.fps_hint
        if all(f.error is not None for f in self.feeds):
            raise self.feeds[0].error

    def _start(self) -> list[threading.Thread]:
        size, live = self.config.queue_size, [f.source.live for f in self.feeds]
        boxes = [Mailboxes(live, size, self.batch, lambda i: self._count(self.feeds[i], "dropped"))
                 for _ in range(self.workers)]
        self._mailbox_of = {f.index: boxes[f.index % self.workers] for f in self.feeds}  # one worker per source
        for feed in self.feeds:  # each worker's mailboxes hold its own sources; the others' are closed from the start
            for box in boxes:
                if box is not self._mailbox_of[feed.index] or feed.error is not None:
                    box.close(feed.index)
        done = queue.Queue(size)
        engines = [threading.Thread(target=self._stage, args=(self._engine_steps(), box, done),
                                    name=f"edgeseg-infer-{i}", daemon=True) for i, box in enumerate(boxes)]
        display = threading.Thread(target=self._stage, args=(self._display_steps(), Ends(done, len(boxes)), None),
                                   name="edgeseg-render", daemon=True)
        threads = [*engines, display]
        captures = [threading.Thread(target=self._capture, args=(f, self._mailbox_of[f.index]), daemon=True,
                                     name=f"edgeseg-capture-{f.name}") for f in self.feeds if f.error is None]
        self._capture_threads = {f.index: t for f, t in zip([f for f in self.feeds if f.error is None], captures)}
        for t in captures + threads:
            t.start()
        return captures + threads

    def _engine_steps(self) -> list:
        return [("preprocess", self._preprocess), ("infer", self._infer)]

    def _display_steps(self) -> list:
        return [("render", self._render), ("sink", self._sink)]

    def _join(self, threads: list[threading.Thread]) -> None:
        """Wait in short slices so signal handlers run in this (main) thread, printing the console line."""
        every = self.config.report_every_s
        next_report = time.perf_counter() + every
        stopped_at: dict[int, float] = {}
        while alive := [t for t in threads if t.is_alive()]:
            try:
                alive[-1].join(0.2)
                if every and time.perf_counter() >= next_report:
                    self._log(self._console_line())
                    next_report += every
                self._abandon_stuck_captures(stopped_at, threads)
            except KeyboardInterrupt:
                self.stop("signal")

    def _console_line(self) -> str:
        line = self.recorder.line()
        if len(self.feeds) > 1:
            line += "  | " + ", ".join(f"{f.name} {f.recorder.counts['processed']} frames {f.recorder.fps():.1f} FPS"
                                       for f in self.feeds)
        return line

    def _abandon_stuck_captures(self, stopped_at: dict[int, float], threads: list[threading.Thread]) -> None:
        """A driver stuck inside read() cannot be interrupted: end its feed without the capture thread
        (a daemon, it dies with the process), so the frames in flight and the sinks still finish."""
        now = time.perf_counter()
        for feed in self.feeds:
            thread = self._capture_threads.get(feed.index)
            if thread not in threads or not thread.is_alive() or not feed.source.live or not feed.stop_event.is_set():
                continue
            stopped_at.setdefault(feed.index, now)
            if now - stopped_at[feed.index] > STUCK_READ_S:
                self._log(f"edgeseg: {feed.source.kind} {feed.source.name} is stuck in read(); closing without it")
                self._mailbox_of[feed.index].close(feed.index)
                threads.remove(thread)

    def _close(self) -> None:
        closed: set[int] = set()
        for feed in self.feeds:
            for sink in feed.sinks:
                if id(sink) in closed:  # a grid window shared by several feeds
                    continue
                closed.add(id(sink))
                try:
                    sink.close()
                except BaseException as exc:  # noqa: BLE001 - an unfinalized output is an error worth raising
                    self._fail(exc)
        for feed in self.feeds:
            feed.source.close()
            self._count(feed, "corrupt", feed.source.corrupt)
            self._count(feed, "reconnects", feed.source.reconnects)
            self._count(feed, "resized", sum(getattr(sink, "resized", 0) for sink in feed.sinks))

    def _freeze(self) -> StreamStats:
        engine_only_stats = ratio = None
        if self._before is not None and self._kept and self._error is None:
            try:
                after = time_infer(self.session, _frames_of(self._kept), self.config.engine_fps_iterations,
                                   batch=self.batch)
            except Exception as exc:  # noqa: BLE001 - the stats are still written, with this error in them
                self._fail(exc)
            else:
                engine_only_stats = engine_only(self._before, after, self.batch)
                ratio = self.recorder.fps() / engine_only_stats.fps
        m = self.session.manifest
        engine = {"name": m.name, **self.session.describe(), "input_size": list(self.size), "batch": self.batch,
                  "workers": self.workers}
        all_sinks = list({id(s): s for f in self.feeds for s in f.sinks}.values())  # a shared window once
        settings = {"view": self.config.view, "alpha": self.config.alpha, "max_frames": self.config.max_frames,
                    "score_threshold": self.threshold, "sinks": [s.describe() for s in all_sinks]}
        sources = [self._feed_stats(f) for f in self.feeds]
        tallies = [f.tally for f in self.feeds if f.tally is not None]
        return self.recorder.freeze(source=describe_sources([(f.name, f.source) for f in self.feeds]),
                                    engine=engine, settings=settings, stopped_by=self._overall_stop(),
                                    error=error_text(self._first_error()), engine_only=engine_only_stats, ratio=ratio,
                                    outputs=[o for s in sources for o in s["outputs"]],
                                    instances=InstanceTally.merged(tallies) if tallies else None, sources=sources)

    def _feed_stats(self, feed: FeedState) -> dict:
        outputs = [r for r in (s.report() for s in feed.sinks if isinstance(s, Sink)) if r is not None]
        return feed.recorder.source_stats(name=feed.name, source=feed.source.describe(), stopped_by=feed.stopped_by,
                                          error=error_text(feed.error), outputs=outputs,
                                          instances=None if feed.tally is None else feed.tally.summary())

    def _overall_stop(self) -> str:
        """The whole stream's reason: a stop of all (signal, window, error), else a source's error, else
        --max-frames if any source reached it, else the end."""
        if self._stopped_by is not None:
            return self._stopped_by
        reasons = [f.stopped_by for f in self.feeds]
        return next((r for r in ("error", "max-frames") if r in reasons), "end")

    def _time_engine_before(self) -> None:
        """Read a few frames ahead from each source and time the engine on them alone. A file source's frames are
        then streamed as well (none is lost); a live source's are stale by then and are not."""
        per_feed = max(1, -(-self.config.keep_inputs // len(self.feeds)))
        inputs = []
        for feed in self.feeds:
            if feed.error is not None:
                continue
            frames = []
            for _ in range(per_feed):
                frame = feed.source.read()
                if frame is None:
                    break
                frames.append(frame)
            inputs += frames
            if not feed.source.live:
                self._primed[feed.index] = frames
        if inputs:
            size = self.size if None not in self.size else inputs[0].shape[:2]
            inputs = [resize_to_input(f, size) for f in inputs]
            self._before = time_infer(self.session, inputs, self.config.engine_fps_iterations, batch=self.batch)


def _frames_of(batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [frame for batch in batches for frame in batch]
