"""How fast `synthetic` makes images (single process): prints images/s, wall clock and CPU time.

    python3 tools/bench_synthetic.py [--count 200] [--size 360x480] [--video]

CPU-time rate is the one to trust on a shared machine: other processes slow the wall clock, not it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeseg.data.synthetic import SyntheticRoadScenes, road_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="images to generate")
    parser.add_argument("--size", default="360x480", help="HxW")
    parser.add_argument("--video", action="store_true", help="time road_video frames instead of dataset images")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    dataset = SyntheticRoadScenes(args.count, size=(h, w))
    dataset[0]  # warm up caches (noise tile, vignetting grid)
    wall, cpu = time.perf_counter(), time.process_time()
    if args.video:
        for _ in road_video(args.count, (h, w)):
            pass
    else:
        for i in range(args.count):
            dataset[i]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    kind = "video frames" if args.video else "images"
    print(f"{args.count} {kind} at {h}x{w}: {args.count / wall:.1f} {kind}/s wall clock, "
          f"{args.count / cpu:.1f} {kind}/s of CPU time ({1000 * wall / args.count:.1f} ms each)")


if __name__ == "__main__":
    main()
