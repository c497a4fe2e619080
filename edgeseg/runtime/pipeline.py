"""The streaming pipeline: capture -> preprocess -> infer -> render -> sinks, one thread per stage.

    from edgeseg.runtime import load
    from edgeseg.runtime.pipeline import Pipeline, PipelineConfig
    from edgeseg.runtime.sinks import VideoSink
    from edgeseg.runtime.sources import VideoFile

    with load("engines/fastscnn-int8-onnxruntime") as session:
        stats = Pipeline(VideoFile("drive.mp4"), session, [VideoSink("out.mp4")], PipelineConfig(view="side")).run()
    print(stats.summary())

Why threads: OpenCV's decode/resize/encode and the inference libraries release the GIL, so while the
engine runs on frame k the capture thread decodes k+1 and the render thread draws k-1; the stream runs at
the speed of its slowest stage (the engine) instead of the sum of all stages.

Stages talk through bounded queues (a file source waits for the engine: every frame is processed) or,
for live sources, one-frame slots where a new frame replaces an unread one (stale frames are dropped and
counted: a driver wants the newest frame, not a queue of old ones). Stopping (`stop()`, a signal, the
window's q key, --max-frames, the end of a file, an error in any stage) ends capture; the frames already
in flight are drained through every stage and the sinks are closed, so an output video is always finalized.
`run()` sets `stats` on every ending, a source that never opened included, so the statistics (with the
error) can always be written.
"""

from __future__ import annotations

import collections
import numbers
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.errors import BadInputError
from edgeseg.runtime.destinations import refuse_overwriting_inputs
from edgeseg.runtime.frames import resize_to_input
from edgeseg.runtime.instance_render import InstanceTally, check_score_threshold, renderer_for, score_threshold_for
from edgeseg.runtime.sinks import NullSink, Result, Sink
from edgeseg.runtime.sources import Source
from edgeseg.runtime.stats import EngineOnly, StatsRecorder, StreamStats, error_text
from edgeseg.runtime.visualize import VIEWS

END = None  # the end-of-stream marker every stage forwards after its last frame
STUCK_READ_S = 3.0  # after a stop, how long a live source's read() may block before the stream ends without it


@dataclass(frozen=True)
class PipelineConfig:
    view: str = "overlay"  # overlay | mask | side
    alpha: float = 0.5  # weight of the colour mask in the overlay
    legend: bool = True
    hud: bool = True  # FPS and latency drawn on the picture
    max_frames: int | None = None  # stop after this many processed frames
    queue_size: int = 1  # frames between two stages of a file source: 1 overlaps them (2: no faster, +40% latency)
    report_every_s: float = 5.0  # console line interval; 0: quiet
    engine_fps_iterations: int = 0  # > 0: time that many session.infer calls alone before and after the stream
    keep_inputs: int = 8  # frames read ahead (and later the most recent engine inputs kept) for that timing
    score_threshold: float | None = None  # instance engines: objects shown from this score (None: 0.5)

    def __post_init__(self) -> None:
        """Refuse values that would run nothing or something else than asked (max_frames=-1 used to stop at
        once with success, alpha=7 to paint past white) where the config is made, for the CLI and the API alike."""
        if self.view not in VIEWS:
            raise BadInputError(f"view '{self.view}' is not one of {', '.join(VIEWS)}",
                                f"pass one of {', '.join(VIEWS)}")
        if not 0.0 <= _number(self.alpha) <= 1.0:  # NaN fails too
            raise BadInputError(f"alpha {self.alpha!r} is out of range", "pass a mask weight between 0 and 1")
        _need_int("max_frames", self.max_frames, 1, allow_none=True)
        _need_int("queue_size", self.queue_size, 1)
        _need_int("engine_fps_iterations", self.engine_fps_iterations, 0)
        _need_int("keep_inputs", self.keep_inputs, 1)
        check_score_threshold(self.score_threshold)
        if not _number(self.report_every_s) >= 0:
            raise BadInputError(f"report_every_s {self.report_every_s!r} is negative or not a number",
                                "pass 0 (quiet) or a positive interval in seconds")


def _number(value: object) -> float:
    """A setting as a float (numpy scalars included); NaN for anything else, which every range check refuses."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _need_int(name: str, value: object, lowest: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
        raise BadInputError(f"PipelineConfig.{name} is {value!r}: it must be a whole number of at least {lowest}",
                            f"pass {name}={lowest} or more" + (" (or None: no limit)" if allow_none else ""))


@dataclass
class Packet:
    """A frame on its way through the stages; each stage fills its field and drops what is no longer needed."""

    index: int
    frame: np.ndarray
    t_capture: float
    input: np.ndarray | None = None
    labels: np.ndarray | None = None
    instances: Any = None  # an instance engine's Instances above the threshold, at the frame's size
    picture: np.ndarray | None = None


class LatestSlot:
    """A one-frame mailbox for live sources: `put` replaces an unread frame and calls `on_drop`.

    `get` blocks until a frame or the end; the end is delivered only after the last frame, so a stream
    that ends still processes what it captured (captured == processed + dropped, exactly).
    """

    def __init__(self, on_drop: Callable[[], None]) -> None:
        self._cond = threading.Condition()
        self._item: Any = END
        self._closed = False
        self._on_drop = on_drop

    def put(self, item: Any) -> None:
        with self._cond:
            if item is END:
                self._closed = True
            else:
                if self._item is not END:
                    self._on_drop()
                self._item = item
            self._cond.notify()

    def get(self) -> Any:
        with self._cond:
            while self._item is END and not self._closed:
                self._cond.wait()
            item, self._item = self._item, END
            return item


class Pipeline:
    """One source, one Session, any number of sinks. `run()` blocks until the stream ends, returns StreamStats
    and raises the first error a stage hit (after draining and closing, with `self.stats` set)."""

    def __init__(self, source: Source, session, sinks: Sequence[Sink] = (), config: PipelineConfig = PipelineConfig(),
                 log: Callable[[str], None] | None = None) -> None:
        batch = session.manifest.input.shape[0]
        if batch not in (1, None):
            raise BadInputError(f"the engine takes batches of {batch}; a stream sends one frame at a time",
                                "build the engine for streaming with --batch 1 (the default) or --dynamic")
        self.source, self.session, self.config = source, session, config
        self.sinks = list(sinks) or [NullSink()]
        for sink in self.sinks:  # before anything is opened: a --force'd output must not destroy the input
            if isinstance(sink, Sink):
                refuse_overwriting_inputs(sink, getattr(source, "inputs", list)(), "the output")
        self.size = session.manifest.input.size
        self.stop_event = threading.Event()
        self.recorder = StatsRecorder()
        self.threshold = score_threshold_for(session, config.score_threshold)  # None: a semantic engine
        self.renderer = renderer_for(session, config.view, config.alpha, config.legend, self.threshold)
        self.tally = None if self.threshold is None else InstanceTally(self.threshold, session.manifest.classes)
        self.stats: StreamStats | None = None
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._stopped_by = "end"
        self._error: BaseException | None = None
        self._kept: collections.deque = collections.deque(maxlen=max(1, config.keep_inputs))
        self._primed: list[np.ndarray] = []  # frames read before the threads start (engine-only timing)
        self._before: np.ndarray | None = None  # seconds per session.infer call, timed before the stream

    # -- control ------------------------------------------------------------------------------------------
    def stop(self, reason: str = "signal") -> None:
        """Ask the stream to end (safe from a signal handler or any thread); frames in flight are finished."""
        if not self.stop_event.is_set():
            self._stopped_by = reason
            self.stop_event.set()

    def _fail(self, exc: BaseException) -> None:
        """Keep the first error; the stream then ends as stopped by "error", whatever else asked it to stop."""
        if self._error is None:
            self._error = exc
            self._stopped_by = "error"
        self.stop("error")

    # -- stages -------------------------------------------------------------------------------------------
    def _link(self):
        if self.source.live:
            return LatestSlot(lambda: self.recorder.count("dropped"))
        return queue.Queue(maxsize=self.config.queue_size)

    def _capture(self, out) -> None:
        """Read until the end, a stop or --max-frames (files: exactly that many frames are read)."""
        ring, limit, index = self.recorder.rings["capture"], self.config.max_frames, 0
        try:
            while not self.stop_event.is_set():
                if limit and not self.source.live and index >= limit:
                    self.stop("max-frames")
                    break
                t0 = time.perf_counter()
                frame = self._primed.pop(0) if self._primed else self.source.read()
                if frame is None:
                    break
                t = time.perf_counter()
                ring.add(t - t0)
                self.recorder.count("captured")
                out.put(Packet(index, frame, t))
                index += 1
        except BaseException as exc:  # noqa: BLE001 - handed to run(), which re-raises it
            self._fail(exc)
        finally:
            out.put(END)

    def _preprocess(self, p: Packet) -> Packet:
        p.input = resize_to_input(p.frame, self.size)
        return p

    def _infer(self, p: Packet) -> Packet:
        if self.tally is None:
            p.labels = self.session.infer(p.input[None])[0]
        else:  # masks pasted once, at the size they are shown at
            p.instances = self.session.detect(p.input[None], p.frame.shape[:2])[0].above(self.threshold)
        self._kept.append(p.input)
        p.input = None
        return p

    def _render(self, p: Packet) -> Packet:
        lines = self._hud_lines() if self.config.hud else ()
        p.picture = self.renderer.render(p.frame, p.labels if self.tally is None else p.instances, lines)
        return p

    def _hud_lines(self) -> list[str]:
        r = self.recorder
        return [f"{r.fps():5.1f} FPS  infer {r.rings['infer'].last() * 1e3:4.0f} ms  e2e {r.e2e.last() * 1e3:4.0f} ms",
                f"dropped {r.counts['dropped']}  corrupt {self.source.corrupt}"]

    def _sink(self, p: Packet) -> None:
        limit = self.config.max_frames
        if limit and self.recorder.counts["processed"] >= limit:  # a live source's frames in flight at the limit
            self.recorder.count("dropped")
            return None
        result = Result(p.index, p.frame, p.labels, p.picture, p.t_capture, p.instances)
        keep_going = all([sink.write(result) for sink in self.sinks])
        self.recorder.done(p.t_capture)
        if self.tally is not None:
            self.tally.add(p.instances)
        if not keep_going:
            self.stop("window")
        if limit and self.recorder.counts["processed"] >= limit:
            self.stop("max-frames")
        return None

    def _stage(self, name: str, fn: Callable[[Packet], Packet | None], inq, outq) -> None:
        """Run `fn` on every packet until the end marker. After its own error a stage drains its input
        (counting drops) so that no other stage blocks; the stages after it finish what they already have."""
        ring, failed = self.recorder.rings[name], False
        while (p := inq.get()) is not END:
            if failed:
                self.recorder.count("dropped")
                continue
            t0 = time.perf_counter()
            try:
                out = fn(p)
            except BaseException as exc:  # noqa: BLE001 - handed to run(), which re-raises it
                self._fail(exc)
                self.recorder.count("dropped")
                failed = True
                continue
            ring.add(time.perf_counter() - t0)
            if outq is not None and out is not None:
                outq.put(out)
        if outq is not None:
            outq.put(END)

    # -- run ----------------------------------------------------------------------------------------------
    def run(self) -> StreamStats:
        """Stream until the end; Ctrl+C (KeyboardInterrupt) in the calling thread stops cleanly too.
        `self.stats` is set on every ending, an error in opening the source included, before it is raised."""
        if hasattr(self.source, "stop_event"):
            self.source.stop_event = self.stop_event  # a backoff wait ends at once when the stream is stopped
        try:
            self.source.open()
            for sink in self.sinks:
                if getattr(sink, "fps", 0) is None:
                    sink.fps = self.source.fps_hint
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
        if self._error is not None:
            raise self._error
        return self.stats

    def _start(self) -> list[threading.Thread]:
        links = [self._link(), self._link(), queue.Queue(self.config.queue_size), queue.Queue(self.config.queue_size)]
        self._links = links
        stages = [("preprocess", self._preprocess), ("infer", self._infer), ("render", self._render),
                  ("sink", self._sink)]
        threads = [threading.Thread(target=self._capture, args=(links[0],), name="edgeseg-capture", daemon=True)]
        for i, (name, fn) in enumerate(stages):
            outq = links[i + 1] if i + 1 < len(links) else None
            threads.append(threading.Thread(target=self._stage, args=(name, fn, links[i], outq),
                                            name=f"edgeseg-{name}", daemon=True))
        for t in threads:
            t.start()
        return threads

    def _join(self, threads: list[threading.Thread]) -> None:
        """Wait in short slices so signal handlers run in this (main) thread, printing the console line."""
        every = self.config.report_every_s
        next_report = time.perf_counter() + every
        stopped_at = None
        while alive := [t for t in threads if t.is_alive()]:
            try:
                alive[-1].join(0.2)
                if every and time.perf_counter() >= next_report:
                    self._log(self.recorder.line())
                    next_report += every
                stopped_at = stopped_at or (time.perf_counter() if self.stop_event.is_set() else None)
                if stopped_at and alive[0] is threads[0] and time.perf_counter() - stopped_at > STUCK_READ_S:
                    self._abandon_capture(threads)
            except KeyboardInterrupt:
                self.stop("signal")

    def _abandon_capture(self, threads: list[threading.Thread]) -> None:
        """A driver stuck inside read() cannot be interrupted: end the stream without the capture thread
        (a daemon, it dies with the process), so the frames in flight and the sinks still finish."""
        if self.source.live:
            self._log(f"edgeseg: {self.source.kind} {self.source.name} is stuck in read(); closing without it")
            self._links[0].put(END)
            threads.pop(0)

    def _close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:  # noqa: BLE001 - an unfinalized output is an error worth raising
                self._fail(exc)
        self.source.close()
        self.recorder.count("corrupt", self.source.corrupt)
        self.recorder.count("reconnects", self.source.reconnects)
        self.recorder.count("resized", sum(getattr(sink, "resized", 0) for sink in self.sinks))

    def _freeze(self) -> StreamStats:
        engine_only = ratio = None
        if self._before is not None and self._kept and self._error is None:
            try:
                after = time_infer(self.session, list(self._kept), self.config.engine_fps_iterations)
            except Exception as exc:  # noqa: BLE001 - the stats are still written, with this error in them
                self._fail(exc)
            else:
                engine_only = _engine_only(self._before, after)
                ratio = self.recorder.fps() / engine_only.fps
        m = self.session.manifest
        engine = {"name": m.name, **self.session.describe(), "input_size": list(self.size)}
        settings = {"view": self.config.view, "alpha": self.config.alpha, "max_frames": self.config.max_frames,
                    "score_threshold": self.threshold, "sinks": [s.describe() for s in self.sinks]}
        outputs = [r for r in (s.report() for s in self.sinks if isinstance(s, Sink)) if r is not None]
        return self.recorder.freeze(source=self.source.describe(), engine=engine, settings=settings,
                                    stopped_by=self._stopped_by, error=error_text(self._error),
                                    engine_only=engine_only, ratio=ratio, outputs=outputs,
                                    instances=None if self.tally is None else self.tally.summary())

    def _time_engine_before(self) -> None:
        """Read a few frames ahead and time the engine on them alone. A file source's frames are then streamed
        as well (none is lost); a live source's are stale by then and are not."""
        for _ in range(max(1, self.config.keep_inputs)):
            frame = self.source.read()
            if frame is None:
                break
            self._primed.append(frame)
        if self._primed:
            inputs = [resize_to_input(f, self.size) for f in self._primed]
            self._before = time_infer(self.session, inputs, self.config.engine_fps_iterations)
        if self.source.live:
            self._primed.clear()


def time_infer(session, inputs: Sequence[np.ndarray], iterations: int, warmup: int = 3) -> np.ndarray:
    """Seconds per `session.infer` call on the given engine-size frames, cycled, after `warmup` calls."""
    for i in range(warmup):
        session.infer(inputs[i % len(inputs)][None])
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        session.infer(inputs[i % len(inputs)][None])
        times[i] = time.perf_counter() - t0
    return times


def _engine_only(before: np.ndarray, after: np.ndarray) -> EngineOnly:
    both = np.concatenate([before, after])
    return EngineOnly(fps=float(len(both) / both.sum()), mean_ms=float(both.mean() * 1e3),
                      p50_ms=float(np.median(both) * 1e3), iterations=len(both),
                      fps_before=float(len(before) / before.sum()), fps_after=float(len(after) / after.sum()))
