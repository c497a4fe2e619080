"""The gate's false-alarm and detection rates, measured: N self-vs-baseline runs and N slowed-down runs.

    python tools/gate_trials.py --engine engines/fastscnn-fp32-ort-rw \
        --slow-engine engines/fastscnn-fp32-ort-rw-448x480 --data camvid:/work/shared/data/camvid:val

1. One `edgeseg bench --json base.json` of the engine: the baseline file, as CI would keep it.
2. N times, alternating so drift on the machine hits both kinds alike:
   - the same engine gated against base.json (every failure is a false alarm);
   - a slower configuration gated against base.json (every pass is a miss): another engine
     (--slow-engine, e.g. the same network at 1.25x the pixels) or other thread counts (--slow-threads).
By default each gated run also re-times the baseline engine (its directory is still here), call for
call with the engine under test; --no-rerun-baseline gates on the file's numbers alone (cross-run).
Each trial is the real CLI in a fresh process (`edgeseg bench ... --baseline base.json
--fail-on-regression T`), exit status and all. Prints one line per trial and the tally.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINE = re.compile(r"new/base (?P<r>[0-9.]+) \[(?P<lo>[0-9.]+), (?P<hi>[0-9.]+)\]")


def bench_cmd(engine: str, args: argparse.Namespace, threads: int | None, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "edgeseg", "bench", "--engine", engine, "--data", args.data,
           "--duration", str(args.duration), "--rounds", str(args.rounds), "--warmup", str(args.warmup),
           "--throughput-seconds", "0", "--no-progress"]
    return cmd + (["--threads", str(threads)] if threads else []) + extra


def trial(cmd: list[str]) -> tuple[int, str, float]:
    """Run one gated bench; (exit status, 'ratio [lo, hi]', seconds)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    match = LINE.search(done.stdout)
    if done.returncode not in (0, 1) or not match:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"bench failed (exit {done.returncode}): {' '.join(cmd)}")
    return done.returncode, f"{match['r']} [{match['lo']}, {match['hi']}]", time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", required=True)
    p.add_argument("--slow-engine", help="the slower configuration: another engine directory")
    p.add_argument("--slow-threads", type=int, help="the slower configuration: the same engine with these threads")
    p.add_argument("--threads", type=int, help="threads for the baseline and self runs (default: library default)")
    p.add_argument("--data", default="synthetic:16")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--duration", type=float, default=3.0, help="timed seconds per engine per trial")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threshold", default="10%")
    p.add_argument("--no-rerun-baseline", action="store_true",
                   help="gate on the baseline file's numbers only (cross-run), not on the re-timed baseline engine")
    p.add_argument("--workdir", help="where base.json goes (default: a temporary directory)")
    args = p.parse_args(argv)
    if not (args.slow_engine or args.slow_threads):
        p.error("pass --slow-engine DIR or --slow-threads N")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gate-trials-"))
    base = work / "base.json"
    subprocess.run(bench_cmd(args.engine, args, args.threads, ["--json", str(base)]), check=True,
                   capture_output=True)
    gate = ["--baseline", str(base), "--fail-on-regression", args.threshold]
    gate += ["--no-rerun-baseline"] if args.no_rerun_baseline else []
    slow_engine = args.slow_engine or args.engine
    slow_threads = args.slow_threads or args.threads
    alarms = caught = 0
    for i in range(1, args.trials + 1):
        rc, ci, sec = trial(bench_cmd(args.engine, args, args.threads, gate))
        alarms += rc == 1
        print(f"trial {i:2d} self: exit {rc} new/base {ci} ({sec:.0f} s)", flush=True)
        rc, ci, sec = trial(bench_cmd(slow_engine, args, slow_threads, gate))
        caught += rc == 1
        print(f"trial {i:2d} slow: exit {rc} new/base {ci} ({sec:.0f} s)", flush=True)
    print(f"false alarms (self vs baseline): {alarms}/{args.trials}")
    print(f"slowdown flagged: {caught}/{args.trials}")
    print(f"baseline: {base}")
    return 0 if alarms == 0 and caught == args.trials else 1


if __name__ == "__main__":
    raise SystemExit(main())
