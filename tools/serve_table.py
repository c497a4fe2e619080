"""Every engine given, exported to Triton, DeepStream and OVMS with the real CLI, re-checked, and broken on purpose.

    python tools/serve_table.py --frames camvid:PATH:val --count 101 engines/fastscnn-int8-onnxruntime ...

For each engine and target: `edgeseg serve-export` into a scratch folder (timed; its parity run on `--frames`),
`edgeseg serve-check` on what it wrote (must pass), then a copy with one wrong type or key (Triton: the frames'
data_type; DeepStream: infer-dims with 4 channels; OVMS: a key its schema does not have) that `serve-check` must
refuse. Prints the Markdown table of docs/serving.md; `--json FILE` keeps each export's record.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ("triton", "deepstream", "ovms")


def edgeseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True)


def break_copy(target: str, exported: Path, scratch: Path) -> Path:
    """A copy of the export with one error a server would refuse."""
    copy = scratch / f"broken-{target}"
    if target == "ovms":
        shutil.copytree(exported.parent, copy)
        config = json.loads((copy / "config.json").read_text())
        config["model_config_list"][0]["config"]["mean"] = [0.485, 0.456, 0.406]
        (copy / "config.json").write_text(json.dumps(config))
        return copy
    shutil.copytree(exported, copy)
    if target == "triton":
        path = copy / "config.pbtxt"
        path.write_text(path.read_text().replace("data_type: TYPE_UINT8", "data_type: TYPE_FP32", 1))
    else:
        path = copy / "config_infer_primary.txt"
        path.write_text(path.read_text().replace("infer-dims=3;", "infer-dims=4;", 1))
    return copy


def one(engine: str, target: str, scratch: Path, args) -> dict:
    out = scratch / target
    extra = ["--check-frames", args.frames, "--check-count", str(args.count)] if args.frames else []
    if target == "deepstream" and args.input_size:
        extra += ["--input-size", args.input_size]
    if args.tail:
        extra += ["--tail", args.tail]
    start = time.perf_counter()
    done = edgeseg("serve-export", "--engine", engine, "--to", target, "--out", str(out), *extra)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"engine": engine, "target": target, "error": done.stderr.strip().splitlines()[-2:]}
    name = re.search(r"wrote (\S+) for", done.stdout).group(1)
    record = json.loads((Path(name) / "edgeseg-export.json").read_text())
    checked = edgeseg("serve-check", str(out if target == "ovms" else name))
    broken = edgeseg("serve-check", str(break_copy(target, Path(name), scratch)))
    return {"engine": Path(engine).name, "target": target, "seconds": round(seconds, 1), "record": record,
            "check_rc": checked.returncode, "broken_rc": broken.returncode,
            "broken_says": broken.stdout.strip().splitlines()[0] if broken.stdout.strip() else ""}


def row(r: dict) -> str:
    if "error" in r:
        return f"| {Path(r['engine']).name} | {r['target']} | refused: {' '.join(r['error'])} | | | | |"
    rec = r["record"]
    p = rec["parity"]
    parity = (f"{100 * p['agreement']:.2f}% vs {p['against']} ({p['runtime'].split(' ')[0]}, {p['frames']} frames)"
              if p.get("agreement") is not None else f"not run: {p['skipped']}")
    return (f"| {r['engine']} | {r['target']} | {rec['output']} | {rec['graph']} | {parity} | "
            f"{'pass' if r['check_rc'] == 0 else 'FAIL'} | {'caught' if r['broken_rc'] == 1 else 'MISSED'} | "
            f"{r['seconds']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engines", nargs="+")
    parser.add_argument("--frames", help="--check-frames for every export (default: serve-export's own)")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--input-size", help="DeepStream network size for engines with open height/width")
    parser.add_argument("--tail", choices=("auto", "server", "client"))
    parser.add_argument("--json", help="write every record here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines:
            for target in args.targets:
                scratch = Path(tmp) / Path(engine).name
                results.append(one(engine, target, scratch, args))
                print(row(results[-1]), flush=True)
    print("\n| engine | target | output | served graph | labels vs the engine | serve-check | broken copy | export s |")
    print("| --- | --- | --- | --- | --- | --- | --- | ---: |")
    for r in results:
        print(row(r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
