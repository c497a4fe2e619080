"""The foreign-ONNX table: one trained network exported in each convention users bring, each built with
`edgeseg build --onnx`, scored on a val split and timed.

    python tools/import_table.py --checkpoint fastscnn --data camvid:../shared/data/camvid --out runs/import-table

The checkpoint (a path, or a shipped name) is exported by small adapters into graphs as other toolkits
write them (NCHW logits, NHWC in and out with 0-255 mean/std, uint8 in with the normalization inside,
softmax, int64 labels, the 1/8-resolution logits, BGR with dynamic height and width, edgeseg's own
metadata_props), without anything edgeseg would read but what each convention carries. Each is built
for ONNX Runtime FP32 and INT8 (calibrated on the train split), scored on val against the checkpoint
(FP32: `edgeseg eval --engine --reference`, for the pixel agreement; INT8's drop is against the FP32
engine's mIoU), and each pair timed in one interleaved `edgeseg bench`.
Every step is a printed `edgeseg` command; the table goes to OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MEAN255, STD255 = "123.675,116.28,103.53", "58.395,57.12,57.375"


class Adapter(nn.Module):
    """The zoo network (NCHW, RGB, ImageNet-normalized float in; full-resolution logits out) as a
    foreign exporter would have left it."""

    def __init__(self, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.net, self.kind = net.eval(), kind
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x):
        if self.kind == "nhwc_keras":  # NHWC, RGB, (x - mean255) / std255 done by the caller
            return self._logits(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if self.kind == "uint8_inside":  # uint8 NHWC RGB; normalization in the graph
            return self._logits((x.permute(0, 3, 1, 2).float() / 255 - self.mean) / self.std)
        if self.kind == "bgr_dynamic":  # BGR-ordered, normalized in BGR order
            return self._logits(x.flip(1))
        logits = self._logits(x)
        if self.kind == "softmax":
            return logits.softmax(1)
        if self.kind == "int64_labels":
            return logits.argmax(1)
        return logits

    def _logits(self, x):
        out = self.net(x)
        return out["out"] if isinstance(out, dict) else out


# convention -> (how the file is written, the flags `edgeseg build --onnx` needs)
CONVENTIONS = {
    "nchw_logits": ("adapter", ["--preset", "imagenet", "--classes", "camvid"]),
    "nhwc_keras": ("adapter", ["--channel-order", "rgb", "--value-range", "255", "--mean", MEAN255, "--std", STD255,
                               "--classes", "camvid"]),
    "uint8_inside": ("adapter", ["--channel-order", "rgb", "--classes", "camvid"]),
    "softmax": ("adapter", ["--preset", "imagenet", "--classes", "camvid"]),
    "int64_labels": ("adapter", ["--preset", "imagenet", "--classes", "camvid"]),
    "lowres_logits": ("edgeseg-float-lowres", ["--preset", "imagenet", "--classes", "camvid"]),
    "bgr_dynamic": ("adapter", ["--channel-order", "bgr", "--value-range", "1", "--mean", ",".join(map(str, MEAN[::-1])),
                                "--std", ",".join(map(str, STD[::-1])), "--classes", "camvid", "--input-size", "SIZE"]),
    "metadata_props": ("edgeseg-metadata", []),
}


def write_graph(kind: str, how: str, net: nn.Module, dataset: dict, size, path: Path) -> None:
    from edgeseg.build.export import ExportOptions, export_onnx

    if how == "edgeseg-float-lowres":  # edgeseg's own export, float in, cut at the logits; metadata stripped
        import onnx

        export_onnx(net, path, net.num_classes, MEAN, STD, ExportOptions(size, fuse_preprocess=False, host_tail=True))
        model = onnx.load(str(path))
        del model.metadata_props[:]
        onnx.save(model, str(path))
        return
    if how == "edgeseg-metadata":
        export_onnx(net, path, net.num_classes, MEAN, STD, ExportOptions(size, fuse_argmax=False), labels=dataset)
        return
    h, w = size
    nhwc = kind in ("nhwc_keras", "uint8_inside")
    shape = (1, h, w, 3) if nhwc else (1, 3, h, w)
    x = torch.randint(0, 256, shape, dtype=torch.uint8) if kind == "uint8_inside" else torch.randn(shape)
    axes = {"input": {0: "batch", 2: "height", 3: "width"}} if kind == "bgr_dynamic" else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Adapter(net, kind).eval(), (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"], dynamic_axes=axes)


def edgeseg(*args: str) -> None:
    print("$ edgeseg " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgeseg", *args], check=True)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an edgeseg checkpoint, or a shipped name")
    parser.add_argument("--data", required=True, help="dataset root spec without the split, e.g. camvid:PATH")
    parser.add_argument("--size", default="360x480")
    parser.add_argument("--calib-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--only", nargs="+", choices=tuple(CONVENTIONS), help="a subset of the conventions")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from edgeseg.train.checkpoint import build_from_checkpoint
    from edgeseg.weights import checkpoint_path

    checkpoint = str(checkpoint_path(args.checkpoint))
    net, payload = build_from_checkpoint(checkpoint)
    size = tuple(int(v) for v in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in args.only or CONVENTIONS:
        how, flags = CONVENTIONS[kind]
        flags = [args.size if f == "SIZE" else f for f in flags]
        graph = out / f"{kind}.onnx"
        if not graph.exists():
            write_graph(kind, how, net.eval(), payload["metadata"]["dataset"], size, graph)
        engines = {}
        for precision in ("fp32", "int8"):
            target = out / f"{kind}-{precision}"
            engines[precision] = target
            if not target.exists():
                extra = ["--calib", f"{args.data}:train", "--calib-size", str(args.calib_size)] \
                    if precision == "int8" else []
                edgeseg("build", "--onnx", str(graph), *flags, "--backend", "onnxruntime", "--precision", precision,
                        "--out", str(target), *extra)
            score = out / f"eval-{kind}-{precision}.json"
            if not score.exists():  # FP32 against the checkpoint (pixel agreement); INT8's drop is against FP32
                reference = ["--reference", checkpoint] if precision == "fp32" else []
                edgeseg("eval", "--engine", str(target), *reference, "--data", f"{args.data}:val",
                        "--json", str(score), "--no-progress")
        bench = out / f"bench-{kind}.json"
        if not bench.exists():
            edgeseg("bench", "--engine", str(engines["fp32"]), "--engine", str(engines["int8"]), "--data",
                    f"{args.data}:val", "--iterations", str(args.iterations), "--json", str(bench), "--no-progress")
        rows.append(row(kind, flags, engines, out, bench))
    text = table(rows)
    (out / "table.md").write_text(text)
    print(text)
    return 0


def row(kind: str, flags: list[str], engines: dict, out: Path, bench: Path) -> dict:
    fp32 = json.loads((engines["fp32"] / "manifest.json").read_text())
    record = fp32["model"]["onnx_import"]
    detected = record["detected"]
    scores = {p: json.loads((out / f"eval-{kind}-{p}.json").read_text()) for p in engines}
    timed = {Path(r["path"]).name: r["latency_ms"]["mean"] for r in json.loads(bench.read_text())["results"]}
    found = [f"{detected['input']['layout']} {detected['input']['dtype']}",
             f"{detected['output']['kind']} {detected['output']['layout']} {detected['output']['resolution']}"]
    from_file = sorted(k for k, v in record["declared"].items() if v["from"] != "default" and
                       not v["from"].startswith(("--", "preset", "dataset")))
    return {"kind": kind, "detected": "; ".join(found) + (f"; from the file: {', '.join(from_file)}" if from_file else ""),
            "flags": " ".join(flags) or "(none)", "fp32_miou": scores["fp32"]["miou"],
            "fp32_agreement": scores["fp32"]["pixel_agreement"], "int8_miou": scores["int8"]["miou"],
            "int8_drop": 100 * (scores["fp32"]["miou"] - scores["int8"]["miou"]),
            "ratio": timed[engines["int8"].name] / timed[engines["fp32"].name],
            "fp32_ms": timed[engines["fp32"].name], "int8_ms": timed[engines["int8"].name]}


def table(rows: list[dict]) -> str:
    lines = ["| convention | detected | declared | FP32 mIoU % | FP32 pixel agreement with the checkpoint | "
             "INT8 mIoU % | INT8 drop (points) | FP32 ms | INT8 ms | INT8/FP32 latency |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['detected']} | `{r['flags']}` | {100 * r['fp32_miou']:.2f} | "
                     f"{100 * r['fp32_agreement']:.3f}% | {100 * r['int8_miou']:.2f} | {r['int8_drop']:.2f} | "
                     f"{r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
