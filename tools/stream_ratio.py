"""End-to-end against engine-only, for several engines, alternating, each run its own `edgeseg stream` process.

    python tools/stream_ratio.py --video road.mp4 --rounds 3 engines/fastscnn-int8-onnxruntime engines/fastscnn-int8-openvino

Every run streams the video headless with the overlay rendered (`--engine-fps N`: N engine calls alone before
and after the stream, in the same process), so each ratio is measured side by side on the same machine at
the same moment; the rounds alternate the engines so that a load drift hits them all. Prints a Markdown
table of every run and the median ratio per engine; `--json FILE` keeps the raw stats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(engine: str, video: str, engine_fps: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "s.json"
        cmd = [sys.executable, "-m", "edgeseg", "stream", "--engine", engine, "--video", video, "--stats", str(stats),
               "--engine-fps", str(engine_fps), "--report-every", "0", *extra]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
        return json.loads(stats.read_text())


def row(engine: str, i: int, s: dict) -> str:
    e, st = s["engine_only"], s["stages"]
    return (f"| {i} | {Path(engine).name} | {s['fps']:.1f} | {e['fps']:.1f} ({e['fps_before']:.1f} / "
            f"{e['fps_after']:.1f}) | {s['ratio']:.1%} | {s['e2e']['p50_ms']:.1f} | {st['capture']['p50_ms']:.2f} | "
            f"{st['infer']['p50_ms']:.1f} | {st['render']['p50_ms']:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", nargs="+")
    parser.add_argument("--video", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine-fps", type=int, default=100)
    parser.add_argument("--json", help="write every run's stats here")
    parser.add_argument("stream_args", nargs=argparse.REMAINDER, help="after --: more `edgeseg stream` flags")
    args = parser.parse_args()
    extra = [a for a in args.stream_args if a != "--"]
    runs: dict[str, list[dict]] = {e: [] for e in args.engines}
    print("| # | engine | end-to-end FPS | engine-only FPS (before / after) | ratio | e2e p50 ms | capture p50 ms "
          "| infer p50 ms | render p50 ms |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    for i in range(1, args.rounds + 1):
        for engine in args.engines:
            stats = run_once(engine, args.video, args.engine_fps, extra)
            runs[engine].append(stats)
            print(row(engine, i, stats), flush=True)
    print()
    for engine, stats in runs.items():
        ratios = [s["ratio"] for s in stats]
        print(f"{Path(engine).name}: median ratio {statistics.median(ratios):.1%} (min {min(ratios):.1%}, "
              f"max {max(ratios):.1%}) over {len(ratios)} runs; median end-to-end "
              f"{statistics.median(s['fps'] for s in stats):.1f} FPS")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
