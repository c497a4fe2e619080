"""INT8 as explicit quantization: a Q/DQ ONNX graph, the one INT8 artifact every backend can take.

Weights: per-channel symmetric INT8. Activations: per-tensor symmetric INT8 ("s8", zero point 0),
which is what TensorRT requires of Q/DQ scales, or asymmetric UINT8 ("u8") for ONNX Runtime on
x86, whose U8S8 kernels are the fast ones: DeepLabV3+ MobileNetV2 at 360x480 on this EPYC ran 2.03x
faster than FP32 as U8S8 but only 1.19x as S8S8 (tools/ort_int8_formats.py). Ranges come
from a `CalibrationSet` by minmax, entropy (KL) or percentile, and are cached under
`calibration/cache/` keyed by the graph's sha256, the calibration pixels and the method.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .calibration import CACHE_DIR, CalibrationSet, cache_path
from .errors import BadInputError
from .io import atomic_path, sha256_file

METHODS = ("minmax", "entropy", "percentile")
# Ops that stay in float: the fused preprocessing (Cast/Mul/Sub/Transpose on uint8 frames) and the
# ArgMax; quantizing them saves nothing and costs accuracy.
OP_TYPES = ["Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "Concat", "Resize", "AveragePool",
            "MaxPool", "GlobalAveragePool", "Clip", "Relu", "ReduceMean", "Sigmoid", "HardSigmoid"]


@dataclass
class QuantResult:
    path: str
    method: str
    calibration: dict
    cache: str
    cache_hit: bool
    excluded: list[str] = field(default_factory=list)  # nodes kept in float
    quantized_nodes: int = 0
    seconds: float = 0.0
    activations: str = "s8"

    def summary(self) -> str:
        hit = "cached ranges" if self.cache_hit else f"calibrated on {self.calibration['images']} images"
        kept = f", {len(self.excluded)} nodes kept in fp32" if self.excluded else ""
        return f"quantized {Path(self.path).name} ({self.method}, {self.activations} activations, {hit}{kept}) " \
               f"in {self.seconds:.1f}s"


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a CalibrationSet."""

    def __init__(self, calib: CalibrationSet, input_name: str) -> None:
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.rewind()

            def get_next(self):
                batch = next(self._it, None)
                return None if batch is None else {input_name: batch}

            def rewind(self):
                self._it = calib.batches()

            def __len__(self):
                return len(calib) // calib.batch

        self.reader = Reader()


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if name not in table:
        raise BadInputError(f"unknown calibration method '{name}'", f"choose one of {', '.join(METHODS)}")
    return table[name]


def _valid_cache(path: Path, key: dict) -> bool:
    """A cache is used only when its key matches and its bytes are the ones written; else it is stale."""
    meta = path.with_suffix(".key.json")
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        stored = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return stored.get("key") == key and stored.get("sha256") == sha256_file(path)


def qdq_from_onnx(src: str | os.PathLike, dst: str | os.PathLike, calib: CalibrationSet, method: str = "entropy",
                  exclude: Sequence[str] = (), activations: str = "s8", cache_root: Path = CACHE_DIR,
                  overwrite: bool = False) -> QuantResult:
    """Write a Q/DQ INT8 copy of the float graph `src` to `dst` (activations "s8" symmetric or "u8")."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    start = time.perf_counter()
    calibrate_method = _method(method)
    model_sha = sha256_file(src)
    cache = cache_path(model_sha, calib, method, Path(cache_root))
    key = {"onnx_sha256": model_sha, "calibration": calib.describe(), "method": method}
    hit = _valid_cache(cache, key)
    if not hit and cache.exists():
        print(f"calibration cache {cache} is stale or was modified; recalibrating")
        cache.unlink()
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    if activations not in ("s8", "u8"):
        raise BadInputError(f"unknown activation type '{activations}'", "use s8 (TensorRT) or u8 (ONNX Runtime on x86)")
    extra = {"ActivationSymmetric": activations == "s8", "WeightSymmetric": True, "CalibMovingAverage": False}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    with atomic_path(dst, overwrite=overwrite) as tmp:
        quantize_static(str(src), str(tmp), _Reader(calib, input_name).reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=OP_TYPES, per_channel=True, reduce_range=False,
                        activation_type=QuantType.QInt8 if activations == "s8" else QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude), calibrate_method=calibrate_method,
                        calibration_cache_path=str(cache), extra_options=extra)
    if not hit:
        with atomic_path(cache.with_suffix(".key.json"), overwrite=True) as tmp:
            tmp.write_text(json.dumps({"key": key, "sha256": sha256_file(cache)}, indent=1))
    quantized = sum(1 for n in onnx.load(str(dst)).graph.node if n.op_type == "QuantizeLinear")
    return QuantResult(str(dst), method, calib.describe(), str(cache), hit, list(exclude), quantized,
                       time.perf_counter() - start, activations)
