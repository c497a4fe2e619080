"""`edgeseg stream`: frames from a camera, a video, an image folder, RTSP or GStreamer through an engine.

Torch-free like the rest of the runtime: it imports numpy, OpenCV and the engine's own library.
"""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgeseg.cli.engines import SPIN_HELP
from edgeseg.errors import EdgesegError


def add_stream_command(sub) -> None:
    p = sub.add_parser("stream", help="stream camera/video frames through an engine (real-time segmentation)",
                       description="capture -> preprocess -> infer -> render -> sinks, one thread per stage. "
                                   "Ctrl+C or SIGTERM stops cleanly: statistics written, video finalized.")
    p.add_argument("--engine", required=True, help="engine directory (edgeseg build)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="V4L2/DirectShow camera index (live: latest frame only)")
    src.add_argument("--video", metavar="FILE", help="a video file (every frame)")
    src.add_argument("--images", metavar="DIR", help="a folder of frames, sorted by name (every frame)")
    src.add_argument("--rtsp", metavar="URL", help="an RTSP/HTTP stream (live)")
    src.add_argument("--gst", metavar="PIPELINE", help="a GStreamer pipeline ending in appsink (live)")
    p.add_argument("--show", action="store_true", help="show the picture in a window (q or Esc stops)")
    p.add_argument("--output", metavar="PATH", help="FILE.mp4 / FILE.avi, or a folder for PNG frames")
    p.add_argument("--force", action="store_true", help="replace an existing --output / --stats")
    p.add_argument("--view", choices=("overlay", "mask", "side"), default="overlay")
    p.add_argument("--alpha", type=float, default=0.5, help="colour mask weight in the overlay (default 0.5)")
    p.add_argument("--no-legend", dest="legend", action="store_false", help="no class legend")
    p.add_argument("--no-hud", dest="hud", action="store_false", help="no FPS/latency text on the picture")
    p.add_argument("--stats", metavar="FILE.json", help="write the run's statistics here at the end")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    p.add_argument("--report-every", type=float, default=5.0, metavar="S", help="console line interval (0: off)")
    p.add_argument("--engine-fps", type=int, default=50, metavar="N",
                   help="time N session.infer calls alone before and N after the stream, on the stream's frames, "
                        "and print end-to-end / engine-only (default 50; 0: skip)")
    # The library's own choice (all cores) by default: on a quiet 2-core machine the engine on both cores
    # streamed 1.5-1.6x faster end to end than on one core with the other left to decode and render
    # (README, "Streaming"); only while other jobs held the cores did one engine thread win.
    p.add_argument("--threads", type=int, default=0,
                   help="inference library threads (default 0: the library's own choice, all cores)")
    p.add_argument("--cv-threads", type=int, default=1,
                   help="OpenCV threads (default 1: decode, resize and render run beside the engine's threads)")
    p.add_argument("--device", help="OpenVINO device (CPU, GPU) or TensorRT GPU index (default: as built)")
    p.add_argument("--spin", action="store_true", help=SPIN_HELP)
    p.add_argument("--give-up", type=float, default=60.0, metavar="S",
                   help="live sources: stop after S seconds without a frame, reconnecting meanwhile (default 60)")
    p.set_defaults(func=run_stream)


def run_stream(args: argparse.Namespace) -> int:
    import cv2

    from edgeseg.runtime import LoadOptions, load
    from edgeseg.runtime.pipeline import Pipeline, PipelineConfig

    cv2.setNumThreads(max(0, args.cv_threads))
    _refuse_existing_stats(args)
    source = _source(args)
    sinks = _sinks(args)
    config = PipelineConfig(view=args.view, alpha=args.alpha, legend=args.legend, hud=args.hud,
                            max_frames=args.max_frames, report_every_s=args.report_every,
                            engine_fps_iterations=max(0, args.engine_fps))
    with load(args.engine, LoadOptions(threads=args.threads, device=args.device, spin=args.spin)) as session:
        _print_start(args, session, source, sinks, args.threads)
        pipeline = Pipeline(source, session, sinks, config)
        try:
            with _stop_on_signals(pipeline):
                pipeline.run()
        finally:
            _finish(args, pipeline)
    return 0


def _refuse_existing_stats(args: argparse.Namespace) -> None:
    if args.stats and Path(args.stats).exists() and not args.force:
        raise EdgesegError(f"{args.stats} already exists", "choose another --stats, or pass --force to replace it")


def _source(args: argparse.Namespace):
    from edgeseg.runtime.sources import Reconnect, open_source

    return open_source(camera=args.camera, video=args.video, images=args.images, rtsp=args.rtsp, gst=args.gst,
                       reconnect=Reconnect(give_up_s=args.give_up, stall_s=min(5.0, args.give_up)))


def _sinks(args: argparse.Namespace) -> list:
    from edgeseg.runtime.sinks import WindowSink, output_sink

    sinks = [output_sink(args.output, overwrite=args.force)] if args.output else []
    if args.show:
        sinks.append(WindowSink())
    return sinks


def _print_start(args, session, source, sinks, threads: int) -> None:
    from cv2 import getNumThreads as cv2_threads

    d = session.describe()
    weights = "  [RANDOM WEIGHTS: speed only]" if d.get("random_weights") else ""
    where = ", ".join(s.describe() for s in sinks) or "headless"
    print(f"streaming {source.kind} {source.name} through {args.engine} ({d['backend']} {d['precision_as_run']}, "
          f"input {session.manifest.input.size[0]}x{session.manifest.input.size[1]}, {threads or 'default'} engine threads, "
          f"{cv2_threads()} OpenCV threads) -> {where}{weights}", flush=True)


def _finish(args: argparse.Namespace, pipeline) -> None:
    """Print and write the statistics, whatever ended the stream (they are most wanted after a failure)."""
    stats = pipeline.stats
    if stats is None:
        return
    print(stats.summary(), flush=True)
    if args.stats:
        stats.write(args.stats, overwrite=args.force)
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
