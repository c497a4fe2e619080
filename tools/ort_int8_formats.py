"""Which INT8 format runs fastest on ONNX Runtime's CPU provider here: the evidence behind U8S8.

    python tools/ort_int8_formats.py --engine engines/deeplabv3plus-fp32-onnxruntime \
        --calib camvid:../shared/data/camvid:train --calib-size 32 --iterations 40

Quantizes the engine's float graph as Q/DQ with symmetric INT8 activations (S8S8, what TensorRT
needs), Q/DQ with asymmetric UINT8 activations (U8S8) and QOperator U8S8, then times all of them and
the FP32 graph interleaved in rounds on the same frames, and prints each one's ratio to FP32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeseg.build.calibration import open_calibration  # noqa: E402
from edgeseg.build.quantize import OP_TYPES, _Reader, qdq_from_onnx  # noqa: E402
from edgeseg.manifest import load_manifest  # noqa: E402


def qoperator_u8s8(src: Path, dst: Path, calib, input_name: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(src), str(dst), _Reader(calib, input_name).reader, quant_format=QuantFormat.QOperator,
                    op_types_to_quantize=OP_TYPES, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def time_interleaved(paths: dict[str, Path], frames: np.ndarray, iterations: int, rounds: int = 5) -> dict[str, float]:
    import onnxruntime as ort

    sessions = {name: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for name, p in paths.items()}
    feeds = {name: {s.get_inputs()[0].name: frames} for name, s in sessions.items()}
    for name, session in sessions.items():
        for _ in range(3):
            session.run(None, feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(max(1, iterations // rounds)):
                start = time.perf_counter()
                session.run(None, feeds[name])
                samples[name].append(1000 * (time.perf_counter() - start))
    return {name: float(np.mean(v)) for name, v in samples.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help="an engine directory holding model.onnx (fp32 build)")
    parser.add_argument("--calib", required=True, help="calibration spec, e.g. camvid:PATH:train")
    parser.add_argument("--calib-size", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args(argv)
    root = Path(args.engine)
    manifest = load_manifest(root)
    src = root / manifest.onnx["file"]
    calib = open_calibration(args.calib, manifest.input.size, args.calib_size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = {"fp32": src}
        for activations in ("s8", "u8"):
            paths[f"qdq-{activations}s8"] = work / f"qdq-{activations}.onnx"
            qdq_from_onnx(src, paths[f"qdq-{activations}s8"], calib, "minmax", activations=activations,
                          cache_root=work / "cache")
        paths["qoperator-u8s8"] = work / "qop-u8.onnx"
        qoperator_u8s8(src, paths["qoperator-u8s8"], calib, manifest.input.name)
        means = time_interleaved(paths, calib.frames[:1], args.iterations)
    print(f"{'graph':16s} {'mean ms':>8s} {'vs fp32':>8s}")
    for name, ms in means.items():
        print(f"{name:16s} {ms:8.2f} {means['fp32'] / ms:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
