"""Full-size export parity for every zoo network: PyTorch vs ONNX Runtime vs OpenVINO (true f32).

    python tools/parity_table.py --data camvid:../shared/data/camvid:val --images 4 \
        --checkpoint deeplabv3plus=runs/camvid-dlv3p-mnv2/best.pt

Each network is exported as edgeseg builds it (uint8 BGR frames in, fused preprocessing; logits out
so that the numbers can be compared), then run on real frames. Networks without a checkpoint get
seeded random weights: parity is a property of the graph, and the table says which weights were used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeseg.build.export import DeployModel, ExportOptions, compare, export_onnx, torch_runner  # noqa: E402
from edgeseg.cli.main import parse_size  # noqa: E402
from edgeseg.data import parse_spec  # noqa: E402
from edgeseg.data.base import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from edgeseg.models import build, names  # noqa: E402
from edgeseg.runtime.frames import resize_to_input  # noqa: E402
from edgeseg.train.checkpoint import build_from_checkpoint  # noqa: E402


def runners(path: Path):
    import onnxruntime as ort
    import openvino as ov

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    return {"onnxruntime": lambda x: session.run(None, {"frames": x})[0], "openvino": lambda x: compiled({0: x})[0]}


def row(name: str, checkpoints: dict[str, str], frames: np.ndarray, size, workdir: Path) -> str:
    torch.manual_seed(0)
    if name in checkpoints:
        model, _ = build_from_checkpoint(checkpoints[name])
        weights = "trained"
    else:
        model, weights = build(name, 11).eval(), "random"
    start = time.perf_counter()
    result = export_onnx(model, workdir / f"{name}.onnx", 11, IMAGENET_MEAN, IMAGENET_STD,
                         ExportOptions(size, fuse_argmax=False), overwrite=True)
    reference = torch_runner(DeployModel(model, 11, IMAGENET_MEAN, IMAGENET_STD, fuse_argmax=False))
    cells = []
    for candidate in runners(Path(result.path)).values():
        match = compare(reference, candidate, frames)
        cells += [f"{100 * match.label_agreement:.3f}", f"{match.max_abs_logit_diff:.1e}"]
    nodes = f"{result.nodes_exported} -> {result.nodes_simplified}"
    return f"| `{name}` | {weights} | {nodes} | " + " | ".join(cells) + f" | {time.perf_counter() - start:.0f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic:4", help="frames to compare on (default synthetic:4)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--input-size", type=parse_size, default=(360, 480))
    parser.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH")
    parser.add_argument("models", nargs="*", help="default: every zoo network")
    args = parser.parse_args()
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    dataset = parse_spec(args.data, "val")
    frames = np.stack([resize_to_input(dataset[i].image, args.input_size) for i in range(args.images)])
    h, w = args.input_size
    print(f"Parity at {h}x{w} on {args.images} frames of {args.data} (argmax agreement %, max |logit diff|)\n")
    print("| model | weights | ONNX nodes (exported -> simplified) | ORT agree % | ORT max diff | OV f32 agree % "
          "| OV max diff | seconds |\n|---|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models or names():
            print(row(name, checkpoints, frames, args.input_size, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
