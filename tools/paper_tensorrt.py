"""A TensorRT engine directory "on paper": what `edgeseg build --backend tensorrt --precision fp16` writes, made
from an ONNX Runtime FP32 engine's graph, with a marker file where the plan would be (no TensorRT runs on
these machines). serve-export needs only the manifest and the ONNX the plan was built from; it copies the
plan without reading it (where TensorRT runs, it reads and checks the real one).

    python tools/paper_tensorrt.py engines/deeplabv3plus-fp32-onnxruntime-tail engines/deeplabv3plus-fp16-tensorrt-paper
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

MARKER = b"not a TensorRT plan: an on-paper TensorRT engine for serve-export (no TensorRT on this machine)\n"


def paper_tensorrt_engine(source: Path, out: Path) -> Path:
    from edgeseg.io import sha256_file
    from edgeseg.manifest import load_manifest, read_manifest

    manifest = load_manifest(source)
    if manifest.backend["name"] != "onnxruntime" or manifest.precision["requested"] != "fp32":
        raise SystemExit(f"{source}: expected an ONNX Runtime FP32 engine")
    out.mkdir(parents=True)
    shutil.copyfile(source / manifest.onnx["file"], out / "model.onnx")
    (out / "model.engine").write_bytes(MARKER)
    data = json.loads((source / "manifest.json").read_text())
    data["name"] = out.name
    data["precision"] = {"requested": "fp16", "as_run": "fp16", "note": "on paper: no TensorRT built this"}
    data["backend"] = {"name": "tensorrt", "version": "10.13.0", "device": "Orin (sm_87)", "engine": "model.engine",
                       "chosen": "requested",
                       "options": {"strongly_typed": False, "workspace": 1024, "dla_core": None, "gpu": "Orin",
                                   "compute_capability": "8.7", "int8_mode": None, "max_batch": 8}}
    data["onnx"]["file"] = "model.onnx"
    data["files"] = {name: sha256_file(out / name) for name in ("model.engine", "model.onnx")}
    (out / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    read_manifest(out)  # the manifest schema accepts it
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an ONNX Runtime FP32 engine directory")
    parser.add_argument("out", type=Path, help="the on-paper TensorRT engine directory to write")
    args = parser.parse_args()
    print(paper_tensorrt_engine(args.source, args.out))


if __name__ == "__main__":
    main()
