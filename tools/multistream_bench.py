"""N sources through one engine against N separate single-source streams, alternating, on one machine.

    python tools/multistream_bench.py --video road.mp4 --sources 3 --rounds 3 \\
        --batched engines/fastscnn-int8-b3-onnxruntime --single engines/fastscnn-int8-onnxruntime

Three ways to run N copies of the video, each an `edgeseg stream` of its own:
- batched: one process, N sources, the engine built with --batch N (one call per N frames);
- one engine: one process, N sources, the batch-1 engine (the sources' frames one after another);
- separate: N processes started together, one source each, the batch-1 engine (what running the single
  stream N times gives);
- workers (--workers): one process, N sources, the batch-1 engine with --engine-workers N (N calls at once).
FPS in all is the sum of the sources' end-to-end rates (they run side by side over the same time);
latency is each source's capture-to-sink time (p50 / p95), the worst source shown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def stream_cmd(engine: str, videos: list[str], stats: Path) -> list[str]:
    sources = [a for i, v in enumerate(videos) for a in ("--video", f"cam{i}={v}")]
    return [sys.executable, "-m", "edgeseg", "stream", "--engine", engine, *sources, "--stats", str(stats),
            "--engine-fps", "0", "--report-every", "0"]


def per_source(stats: dict) -> list[dict]:
    return stats.get("sources") or [{"name": "cam0", "fps": stats["fps"], "e2e": stats["e2e"],
                                      "frames": stats["frames"]}]


def run_together(cmds: list[list[str]], tmp: Path) -> list[dict]:
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    for proc, cmd in zip(procs, cmds):
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return [s for c in cmds for s in per_source(json.loads(Path(c[c.index("--stats") + 1]).read_text()))]


def measure(way: str, args, tmp: Path) -> list[dict]:
    videos = [args.video] * args.sources
    if way == "batched":
        return run_together([stream_cmd(args.batched, videos, tmp / "b.json")], tmp)
    if way == "one engine":
        return run_together([stream_cmd(args.single, videos, tmp / "o.json") + ["--engine-workers", "1"]], tmp)
    if way == "workers":
        return run_together([stream_cmd(args.single, videos, tmp / "w.json") + ["--engine-workers",
                                                                                str(args.sources)]], tmp)
    return run_together([stream_cmd(args.single, [v], tmp / f"s{i}.json") for i, v in enumerate(videos)], tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batched", required=True, help="the engine built with --batch N (N = --sources)")
    parser.add_argument("--single", required=True, help="the same network built with batch 1")
    parser.add_argument("--workers", action="store_true",
                        help="also: one process, the batch-1 engine, --engine-workers N (ONNX Runtime)")
    args = parser.parse_args()
    ways = ("batched", "one engine", "separate") + (("workers",) if args.workers else ())
    results: dict[str, list[float]] = {w: [] for w in ways}
    print("| # | way | FPS in all | per source FPS | worst source e2e p50 / p95 ms |\n| --- | --- | ---: | --- | ---: |")
    for i in range(1, args.rounds + 1):
        for way in ways:
            with tempfile.TemporaryDirectory() as tmp:
                sources = measure(way, args, Path(tmp))
            total = sum(s["fps"] for s in sources)
            worst = max(sources, key=lambda s: s["e2e"]["p50_ms"])
            results[way].append(total)
            rates = " / ".join(f"{s['fps']:.1f}" for s in sources)
            print(f"| {i} | {way} | {total:.1f} | {rates} | "
                  f"{worst['e2e']['p50_ms']:.0f} / {worst['e2e']['p95_ms']:.0f} |", flush=True)
    print()
    for way, totals in results.items():
        print(f"{way}: median {statistics.median(totals):.1f} FPS in all over {len(totals)} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
