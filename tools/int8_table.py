"""The INT8 table of one trained checkpoint: builds, accuracy against the checkpoint, speed side by side.

    python tools/int8_table.py --checkpoint runs/camvid-dlv3p-mnv2/best.pt --data camvid:../shared/data/camvid \
        --budget 0.3 --out runs/int8-dlv3p

Builds ONNX Runtime FP32 and INT8, OpenVINO FP32, FP16 and INT8 (INT8 calibrated on the train split
within `--budget` points on the val split, with the speed guard), scores every engine on val against
the FP32 checkpoint (`edgeseg eval --engine --reference`), then times them all in one interleaved
`edgeseg bench` run. Every step is a printed `edgeseg` command, so any row can be redone by hand;
the table goes to OUT/table.md, the numbers behind it to OUT/*.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ENGINES = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "fp16"),
           ("openvino", "int8")]


def edgeseg(*args: str) -> None:
    command = [sys.executable, "-m", "edgeseg", *args]
    print("$ edgeseg " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def build_all(args, out: Path) -> list[Path]:
    engines = []
    for backend, precision in ENGINES:
        target = out / f"{backend}-{precision}"
        engines.append(target)
        if target.exists():
            print(f"kept {target} (delete it to rebuild)")
            continue
        extra = []
        if precision == "int8":
            extra = ["--calib", f"{args.data}:train", "--calib-size", str(args.calib_size), "--val", f"{args.data}:val",
                     "--max-miou-drop", str(args.budget)]
        edgeseg("build", "--checkpoint", args.checkpoint, "--backend", backend, "--precision", precision,
                "--out", str(target), *extra)
    return engines


def evaluate_all(args, engines: list[Path], out: Path) -> dict[str, dict]:
    scores = {}
    for engine in engines:
        path = out / f"eval-{engine.name}.json"
        if not path.exists():
            edgeseg("eval", "--engine", str(engine), "--reference", args.checkpoint, "--data", f"{args.data}:val",
                    "--json", str(path), "--no-progress")
        scores[engine.name] = json.loads(path.read_text())
    return scores


def table(engines: list[Path], scores: dict, bench: dict) -> str:
    timed = {Path(r["path"]).name: r for r in bench["results"]}
    fp32 = {b: timed[f"{b}-fp32"]["latency_ms"]["mean"] for b in ("onnxruntime", "openvino")}
    first = next(iter(scores.values()))
    lines = [f"FP32 checkpoint (PyTorch): {100 * first['reference']['miou']:.2f}% mIoU on val", "",
             "| engine | precision as run | mIoU % | drop (points) | pixel agreement | layers kept in float (budget) | mean ms | p50 ms | "
             "INT8/FP32 latency |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for engine in engines:
        manifest = json.loads((engine / "manifest.json").read_text())
        r, s = timed[engine.name], scores[engine.name]
        backend = manifest["backend"]["name"]
        ratio = r["latency_ms"]["mean"] / fp32[backend]
        kept = len(manifest.get("extra", {}).get("miou_budget", {}).get("kept_float", [])) \
            if manifest["precision"]["requested"] == "int8" else ""
        lines.append(f"| {engine.name} | {r['precision_as_run']} | {100 * s['miou']:.2f} | {s['miou_drop_points']:.2f} | "
                     f"{100 * s['pixel_agreement']:.3f}% | {kept} | {r['latency_ms']['mean']:.2f} | "
                     f"{r['latency_ms']['p50']:.2f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="dataset root spec without the split, e.g. camvid:PATH")
    parser.add_argument("--budget", type=float, required=True, help="--max-miou-drop of the INT8 builds")
    parser.add_argument("--calib-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, help="engine threads in the bench (default: the library's)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engines = build_all(args, out)
    scores = evaluate_all(args, engines, out)
    bench_json = out / "bench.json"
    edgeseg("bench", *[a for e in engines for a in ("--engine", str(e))], "--data", f"{args.data}:val",
            "--iterations", str(args.iterations), "--json", str(bench_json), "--no-progress",
            *(["--threads", str(args.threads)] if args.threads else []))
    text = table(engines, scores, json.loads(bench_json.read_text()))
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
