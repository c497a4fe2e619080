"""Soak test: stream a long video file headless and check that memory stays flat.

    python tools/stream_soak.py --engine engines/fastscnn-int8-ort-rw-180x240 --frames 10000

Writes a video of `--frames` frames (`--distinct` synthetic road frames repeated, at `--size`) unless it
exists, streams every frame through the full pipeline (capture, preprocess, infer, render with legend and
HUD, a sink), and samples the process's resident memory (`edgeseg.measure.bench.rss_mb`, from /proc: no psutil) after
`--warmup` frames and every `--every` frames. Prints the growth from the post-warm-up sample to the last
one; exits 1 if it is over `--max-growth-mb` (default 50).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

from edgeseg.data.synthetic import road_video
from edgeseg.measure.bench import rss_mb
from edgeseg.runtime import LoadOptions, load
from edgeseg.runtime.pipeline import Pipeline, PipelineConfig
from edgeseg.runtime.sinks import CallbackSink
from edgeseg.runtime.sources import VideoFile


def make_video(path: Path, frames: int, size: tuple[int, int], distinct: int) -> None:
    t0 = time.perf_counter()
    images = [s.image for s in road_video(distinct, size, seed=7)]
    tmp = path.with_name(f".{path.stem}.partial.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (size[1], size[0]))
    for i in range(frames):
        # ping-pong through the distinct frames so the video has no jump cut
        k = i % (2 * distinct - 2)
        writer.write(images[k if k < distinct else 2 * distinct - 2 - k])
    writer.release()
    tmp.replace(path)
    print(f"wrote {path} ({frames} frames {size[0]}x{size[1]}, {path.stat().st_size / 2**20:.1f} MiB) "
          f"in {time.perf_counter() - t0:.1f}s", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--size", default="180x240", help="video frame size HxW (default 180x240)")
    p.add_argument("--distinct", type=int, default=120, help="distinct synthetic frames in the video")
    p.add_argument("--video", default="/tmp/edgeseg-soak.mp4", help="made if missing")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="engine threads (default 1, as in the README soak figure; 0: the library's own choice)")
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    p.add_argument("--json", help="write the samples and the verdict here")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    video = Path(args.video)
    if not video.exists():
        make_video(video, args.frames, size, args.distinct)
    samples: list[tuple[int, float]] = []

    def sample(result) -> None:
        n = result.index + 1
        if n == args.warmup or (n > args.warmup and n % args.every == 0):
            samples.append((n, rss_mb()))
            print(f"  frame {n:6d}: RSS {samples[-1][1]:.1f} MiB", flush=True)

    start_rss = rss_mb()
    with load(args.engine, LoadOptions(threads=args.threads)) as session:
        config = PipelineConfig(max_frames=args.frames, report_every_s=30.0)
        stats = Pipeline(VideoFile(video), session, [CallbackSink(sample)], config).run()
        if samples[-1][0] != stats.frames["processed"]:
            samples.append((stats.frames["processed"], rss_mb()))  # before the session is closed
    growth = samples[-1][1] - samples[0][1]
    peak = max(rss for _, rss in samples) - samples[0][1]
    ok = stats.frames["processed"] == args.frames and growth < args.max_growth_mb
    print(stats.summary())
    print(f"RSS: {start_rss:.1f} MiB before loading, {samples[0][1]:.1f} MiB after {samples[0][0]} frames, "
          f"{samples[-1][1]:.1f} MiB after {samples[-1][0]} frames: growth {growth:+.1f} MiB (peak {peak:+.1f}) "
          f"(limit {args.max_growth_mb:g}) -> {'PASS' if ok else 'FAIL'}")
    if args.json:
        verdict = {"samples": samples, "growth_mb": growth, "peak_growth_mb": peak, "ok": ok, "stats": stats.to_dict()}
        Path(args.json).write_text(json.dumps(verdict, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
