"""`edgeseg stream`: frames from a camera, a video, an image folder, RTSP or GStreamer through an engine.

Torch-free like the rest of the runtime: it imports numpy, OpenCV and the engine's own library.

Everything that can be checked before streaming is (the numbers, which options apply to the chosen source,
the destinations: writable, not the inputs); once the engine is being loaded, every ending (a signal, the
end, an error) prints and writes the statistics, the error in them.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgeseg.cli.common import SPIN_HELP
from edgeseg.errors import BadInputError, EdgesegError

DEFAULT_ALPHA = 0.5
DEFAULT_GIVE_UP_S = 60.0
SOURCE_FLAGS = (("camera", "[NAME=]N", "V4L2/DirectShow camera index (live: latest frame only)"),
                ("video", "[NAME=]FILE", "a video file (every frame)"),
                ("images", "[NAME=]DIR", "a folder of frames, sorted by name (every frame)"),
                ("rtsp", "[NAME=]URL", "an RTSP/HTTP stream (live)"),
                ("gst", "[NAME=]PIPELINE", "a GStreamer pipeline ending in appsink (live)"))
LIVE_FLAGS = ("camera", "rtsp", "gst")
NAME_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9_.-]{0,31})=(.*)", re.DOTALL)


class SourceAction(argparse.Action):
    """Every source flag appends (flag, value) to one list, so several sources keep the command line's order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        sources = list(getattr(namespace, self.dest, None) or [])
        sources.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, sources)


def add_commands(sub) -> None:
    p = sub.add_parser("stream", help="stream camera/video frames through an engine (real-time segmentation)",
                       description="capture -> preprocess -> infer -> render -> sinks: a capture thread per source, "
                                   "one engine thread, one display thread. "
                                   "Ctrl+C or SIGTERM stops cleanly: statistics written, video finalized.")
    p.add_argument("--engine", metavar="DIR",
                   help="engine directory (edgeseg build); default: the newest under engines/, named on the first line")
    src = p.add_argument_group("sources (one or several, in any mix; NAME=VALUE names a source: front=0)")
    for flag, metavar, words in SOURCE_FLAGS:
        src.add_argument(f"--{flag}", metavar=metavar, action=SourceAction, dest="sources", help=words)
    p.add_argument("--loop", action="store_true", help="--video only: start over at the end until stopped (soak)")
    p.add_argument("--show", action="store_true",
                   help="show the picture in a window, several sources as a grid (q or Esc stops)")
    p.add_argument("--output", metavar="PATH",
                   help="FILE.mp4 / FILE.avi, or a folder for PNG frames; several sources: one each, named by "
                        "{source} in PATH (runs/{source}.mp4) or after PATH (out.mp4 -> out-front.mp4)")
    p.add_argument("--batch", type=int, metavar="N",
                   help="frames per engine call for a --dynamic engine (default: one per source)")
    p.add_argument("--engine-workers", type=int, metavar="N",
                   help="several sources: N engine calls at once, each source served by one of them (ONNX Runtime "
                        "engines; default: one per source for a batch-1 ONNX Runtime engine, else 1)")
    p.add_argument("--force", action="store_true", help="replace an existing --output / --stats")
    p.add_argument("--view", choices=("overlay", "mask", "side"), default="overlay")
    p.add_argument("--alpha", type=float, help=f"--view overlay: colour mask weight, 0..1 (default {DEFAULT_ALPHA})")
    p.add_argument("--no-legend", dest="legend", action="store_false", help="no class legend")
    p.add_argument("--score-threshold", type=float, metavar="S",
                   help="instance engines (Mask R-CNN): draw the objects scoring S or more, 0..1 (default 0.5)")
    p.add_argument("--no-hud", dest="hud", action="store_false", help="no FPS/latency text on the picture")
    p.add_argument("--stats", metavar="FILE.json", help="write the run's statistics here at the end (on errors too)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames (N >= 1)")
    p.add_argument("--report-every", type=float, default=5.0, metavar="S", help="console line interval (0: off)")
    p.add_argument("--engine-fps", type=int, default=50, metavar="N",
                   help="time N session.infer calls alone before and N after the stream, on the stream's frames, "
                        "and print end-to-end / engine-only (default 50; 0: skip)")
    # The library's own choice (all cores) by default: on a quiet 2-core machine the engine on both cores
    # streamed 1.5-1.6x faster end to end than on one core with the other left to decode and render
    # (docs/streaming.md); only while other jobs held the cores did one engine thread win.
    p.add_argument("--threads", type=int, default=0,
                   help="inference library threads (default 0: the library's own choice, all cores)")
    p.add_argument("--cv-threads", type=int, default=1,
                   help="OpenCV threads (default 1: decode, resize and render run beside the engine's threads)")
    p.add_argument("--device", help="OpenVINO device (CPU, GPU) or TensorRT GPU index (default: as built)")
    p.add_argument("--spin", action="store_true", help=SPIN_HELP)
    p.add_argument("--give-up", type=float, metavar="S",
                   help=f"live sources: stop after S seconds without a frame, reconnecting meanwhile "
                        f"(default {DEFAULT_GIVE_UP_S:g})")
    p.set_defaults(func=run_stream)


def run_stream(args: argparse.Namespace) -> int:
    import cv2

    from edgeseg.runtime import LoadOptions, load
    from edgeseg.runtime.pipeline import Pipeline

    check_options(args)
    if args.engine is None:
        from edgeseg.runtime.engines import default_engine

        args.engine = str(default_engine())
    _check_engine_kind(args)
    cv2.setNumThreads(args.cv_threads)
    feeds = _feeds(args)
    _check_destinations(args, feeds)
    config = _config(args)
    pipeline, error = None, None
    try:
        with load(args.engine, LoadOptions(threads=args.threads, device=args.device, spin=args.spin)) as session:
            pipeline = Pipeline(feeds, session, config=config)
            _print_start(args, session, pipeline)
            with _stop_on_signals(pipeline):
                pipeline.run()
    except OSError as exc:  # the last resort: an environment fault is an error message, never a traceback
        from edgeseg.runtime.destinations import os_error

        error = os_error(exc)
        raise error from None
    except BaseException as exc:
        error = exc
        raise
    finally:
        _finish(args, pipeline, feeds, config, error)
    return 0


# -- checks before anything is opened ---------------------------------------------------------------------
def check_options(args: argparse.Namespace) -> None:
    """Refuse numbers that would run nothing (--max-frames -1 used to exit 0 at once) or something else than
    asked (--alpha 7), and options the chosen source or view would silently ignore, naming the flag."""
    args.sources = parse_sources(args.sources)
    flags = [flag for _, flag, _ in args.sources]
    if args.give_up is not None and not set(flags) & set(LIVE_FLAGS):
        raise BadInputError("--give-up applies to live sources (--camera, --rtsp, --gst), not to "
                            f"{' and '.join(sorted({'--' + f for f in flags}))}",
                            "drop --give-up: a file source ends at its last frame")
    if args.loop and "video" not in flags:
        raise BadInputError(f"--loop applies to --video only, not to --{flags[0]}",
                            "drop --loop (a camera or stream has no end to start over from)")
    _need(args.batch is None or args.batch >= 1, "--batch", args.batch, "1 or more")
    _need(args.engine_workers is None or args.engine_workers >= 1, "--engine-workers", args.engine_workers,
          "1 or more")
    if args.alpha is not None and args.view != "overlay":
        raise BadInputError(f"--alpha applies to --view overlay only, not to --view {args.view}",
                            "drop --alpha, or pass --view overlay")
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    _need(math.isfinite(alpha) and 0 <= alpha <= 1, "--alpha", alpha, "a weight between 0 and 1")
    _need(args.max_frames is None or args.max_frames >= 1, "--max-frames", args.max_frames, "1 or more")
    give_up = DEFAULT_GIVE_UP_S if args.give_up is None else args.give_up
    _need(give_up > 0, "--give-up", give_up, "a number of seconds above 0")  # NaN fails too
    _need(args.report_every >= 0, "--report-every", args.report_every, "0 (off) or a number of seconds")
    _need(args.engine_fps >= 0, "--engine-fps", args.engine_fps, "0 (skip) or more")
    _need(args.threads >= 0, "--threads", args.threads, "0 (the library's choice) or more")
    _need(args.cv_threads >= 0, "--cv-threads", args.cv_threads, "0 or more")
    threshold = args.score_threshold
    _need(threshold is None or (math.isfinite(threshold) and 0 <= threshold <= 1), "--score-threshold", threshold,
          "a score between 0 and 1")
    for flag in ("output", "stats"):
        if getattr(args, flag) is not None and not getattr(args, flag).strip():
            raise BadInputError(f"--{flag} is empty", f"pass a path with --{flag}, or drop it")
    args.alpha, args.give_up = alpha, give_up


def _need(ok: bool, flag: str, value: object, rule: str) -> None:
    if not ok:
        raise BadInputError(f"{flag} {value} is out of range: it must be {rule}", f"pass {flag} with {rule}")


def _check_engine_kind(args: argparse.Namespace) -> None:
    """--score-threshold on a semantic engine is refused before anything is opened (it would be ignored).
    An engine whose manifest does not read is left to `load`, which names the problem with the stats."""
    if args.score_threshold is None:
        return
    from edgeseg.manifest import read_manifest

    try:
        manifest = read_manifest(args.engine)
    except EdgesegError:
        return
    if manifest.output.kind != "instances":
        raise BadInputError(f"--score-threshold applies to instance engines; {args.engine} is a semantic engine "
                            f"(output {manifest.output.kind!r}: it labels pixels and scores no objects)",
                            "drop --score-threshold, or pass an instance engine (built from a Mask R-CNN)")


def parse_sources(given: list[tuple[str, str]] | None) -> list[tuple[str | None, str, object]]:
    """(flag, text) pairs -> (name or None, flag, value): NAME=VALUE names a source (a video file whose own name
    holds '=' is taken whole when it exists); camera indexes become ints. Empty values are refused by flag."""
    if not given:
        raise BadInputError("no source was given",
                            "pass one or more of --camera N, --video FILE, --images DIR, --rtsp URL, --gst PIPELINE")
    sources = []
    for flag, text in given:
        name, value = None, text
        match = NAME_PREFIX.match(text)
        if match and not (flag in ("video", "images") and Path(text).exists()):
            name, value = match.group(1), match.group(2)
        if not value.strip():
            raise BadInputError(f"--{flag} is empty", f"pass --{flag} with a value")
        if flag == "camera":
            if not value.strip().isdigit():
                raise BadInputError(f"--camera {value!r} is out of range: it must be a device index, 0 or more",
                                    "pass the camera's index, 0 or above (0 for /dev/video0)")
            value = int(value)
        sources.append((name, flag, value))
    return sources


def _feeds(args: argparse.Namespace) -> list:
    """A Feed per source, each with its own output (when --output is given) and the window shared as a grid."""
    from edgeseg.runtime.feeds import Feed, check_feed_names, default_names, output_for
    from edgeseg.runtime.sinks import WindowSink, output_sink
    from edgeseg.runtime.sources import Reconnect, open_source

    timeout = min(5.0, args.give_up)
    reconnect = Reconnect(give_up_s=args.give_up, stall_s=timeout)
    sources = [open_source(**{flag: value}, reconnect=reconnect, loop=args.loop and flag == "video",
                           decode_threads=args.cv_threads or None, timeout_s=timeout)
               for _, flag, value in args.sources]
    names = [name or default for (name, _, _), default in zip(args.sources, default_names(sources))]
    check_feed_names(names)
    window = WindowSink() if args.show else None
    feeds = []
    for source, name in zip(sources, names):
        sinks = [output_sink(output_for(args.output, name, len(sources) > 1), overwrite=args.force)] \
            if args.output else []
        feeds.append(Feed(source, sinks + ([window] if window else []), name))
    return feeds


def _check_destinations(args: argparse.Namespace, feeds: list) -> None:
    """--stats and every --output: writable, not each other, and never one of the files the stream reads (the
    sources, the engine), whatever --force says."""
    from edgeseg.runtime.destinations import check_file_destination, refuse_overwriting_inputs, same_path
    from edgeseg.runtime.sinks import Sink

    engine = Path(args.engine)
    inputs = [*(p for f in feeds for p in f.source.inputs()), engine, *(engine.rglob("*") if engine.is_dir() else ())]
    outputs = [sink for f in feeds for sink in f.sinks if isinstance(sink, Sink) and sink.destination() is not None]
    for sink in outputs:
        refuse_overwriting_inputs(sink, inputs, "--output")
    paths = [sink.destination() for sink in outputs]
    clash = next((p for i, p in enumerate(paths) if any(same_path(p, q) for q in paths[:i])), None)
    if clash is not None:
        raise BadInputError(f"two sources would write to {clash}",
                            "put {source} in --output (runs/{source}.mp4) so that each source has its own file")
    if args.stats:
        stats = Path(args.stats)
        check_file_destination(stats, args.force, "--stats")
        refuse_overwriting_inputs(stats, inputs, "--stats")
        if any(same_path(stats, p) for p in paths):
            raise BadInputError(f"--stats and --output are the same path ({args.stats})",
                                "write the statistics to a .json file of their own")


def _config(args: argparse.Namespace):
    from edgeseg.runtime.pipeline import PipelineConfig

    return PipelineConfig(view=args.view, alpha=args.alpha, legend=args.legend, hud=args.hud,
                          max_frames=args.max_frames, report_every_s=args.report_every,
                          engine_fps_iterations=args.engine_fps, score_threshold=args.score_threshold,
                          batch=args.batch, engine_workers=args.engine_workers)


def _print_start(args, session, pipeline) -> None:
    from cv2 import getNumThreads as cv2_threads

    d = session.describe()
    weights = "  [RANDOM WEIGHTS: speed only]" if d.get("random_weights") else ""
    shown = ""
    if getattr(session, "detects_instances", False):
        from edgeseg.runtime.instance_render import score_threshold_for

        shown = f" (objects scoring >= {score_threshold_for(session, args.score_threshold):g})"
    feeds = pipeline.feeds
    what = (f"{feeds[0].source.kind} {feeds[0].source.name}" if len(feeds) == 1
            else f"{len(feeds)} sources ({', '.join(f'{f.name}: {f.source.kind} {f.source.name}' for f in feeds)})")
    where = "; ".join(f"{f.name} -> " + (", ".join(s.describe() for s in f.sinks)) for f in feeds) \
        if len(feeds) > 1 else ", ".join(s.describe() for s in feeds[0].sinks)
    batch = f", batch {pipeline.batch}" if pipeline.batch > 1 else ""
    print(f"streaming {what} through {args.engine} ({d['backend']} {d['precision_as_run']}, "
          f"input {session.manifest.input.size[0]}x{session.manifest.input.size[1]}{batch}, "
          f"{args.threads or 'default'} engine threads, {cv2_threads()} OpenCV threads) -> {where}{shown}{weights}",
          flush=True)


# -- every ending -----------------------------------------------------------------------------------------
def _finish(args: argparse.Namespace, pipeline, feeds: list, config, error: BaseException | None) -> None:
    """Print and write the statistics, whatever ended the stream (they are most wanted after a failure). A stats
    file that cannot be written is the run's error, or, after another error, reported beside it."""
    from edgeseg.runtime.stats import stats_without_stream

    stats = pipeline.stats if pipeline is not None else None
    if stats is None:  # the engine did not load, or the pipeline could not be made
        settings = {"view": config.view, "alpha": config.alpha, "max_frames": config.max_frames,
                    "score_threshold": config.score_threshold, "sinks": []}
        from edgeseg.runtime.feeds import describe_sources

        source = describe_sources([(f.name, f.source) for f in feeds])
        stats = stats_without_stream(source, {"path": args.engine}, settings, error)
    print(stats.summary(), flush=True)
    if not args.stats:
        return
    try:
        stats.write(args.stats, overwrite=args.force)
    except EdgesegError as exc:
        if error is None:
            raise
        print(f"edgeseg: error: {exc.problem}" + (f"\n  fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return
    print(f"wrote {args.stats}", flush=True)


@contextmanager
def _stop_on_signals(pipeline) -> Iterator[None]:
    """SIGINT and SIGTERM set the pipeline's stop event: frames in flight finish, the video is finalized.
    A second signal while stopping falls through to Python's default (KeyboardInterrupt / termination)."""
    previous = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        print(f"\nedgeseg: {name}: stopping (finishing frames in flight, closing outputs)", file=sys.stderr, flush=True)
        pipeline.stop("signal")
        for sig, old in previous.items():
            signal.signal(sig, old)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
