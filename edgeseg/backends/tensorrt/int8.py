"""TensorRT INT8, both ways, against NVIDIA's documented Python API.

Explicit (TensorRT 10 and 11; the only INT8 TensorRT 11 has): the network is parsed from the Q/DQ
ONNX that edgeseg.build.quantize writes with symmetric INT8 activations (zero point 0) and per-channel
symmetric weights, which is what TensorRT requires of Q/DQ scales. Strongly typed networks take
their precisions from the graph; weakly typed ones (TensorRT 10) set the INT8 flag, and FP16 so that
layers outside Q/DQ pairs may run in half precision.

Implicit (TensorRT <= 10: JetPack 5/6, DLA): the float ONNX, the INT8 flag and an
IInt8EntropyCalibrator2 fed from the shared CalibrationSet. Its calibration cache is kept under
calibration/cache/, keyed like the Q/DQ range cache by the ONNX hash, the calibration pixels and the
method, with a sidecar holding the key and the cache's sha256: a stale or edited cache is
recalibrated, never used. Layers kept out of INT8 get `layer.precision = float16` and
OBEY_PRECISION_CONSTRAINTS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.build.calibration import CACHE_DIR, CalibrationSet, cache_is_valid, cache_path, seal_cache
from edgeseg.build.spec import BuildSpec
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.io import atomic_path, sha256_file

QDQ_FILE = "model.int8.onnx"
MODES = ("explicit", "implicit")
IMPLICIT_METHOD = "trt-entropy2"  # the cache key's method: TensorRT's own entropy calibration


def check_mode(mode: str, major: int, strongly_typed: bool = False, dla_core: int | None = None) -> None:
    if mode not in MODES:
        raise BadInputError(f"unknown TensorRT INT8 mode '{mode}'", f"choose one of {', '.join(MODES)}")
    if mode == "implicit" and major >= 11:
        raise EdgesegError("TensorRT 11 has no implicit INT8 (calibrators were removed)",
                           "build with --trt-int8 explicit (Q/DQ ONNX), or use TensorRT 10 for implicit INT8")
    if mode == "implicit" and strongly_typed:
        raise BadInputError("a strongly typed network takes no calibrator and no precision flags",
                            "drop strongly_typed for --trt-int8 implicit, or use --trt-int8 explicit")
    if mode == "explicit" and dla_core is not None:
        raise BadInputError("DLA does not run Q/DQ (explicit) INT8 networks",
                            "build DLA engines with --trt-int8 implicit (IInt8EntropyCalibrator2, TensorRT <= 10)")


def calibrator_cache(onnx_path: Path, calib: CalibrationSet, root: Path = CACHE_DIR) -> tuple[Path, dict]:
    """Where the implicit calibrator's cache lives, and the key it must match to be read."""
    model_sha = sha256_file(onnx_path)
    path = cache_path(model_sha, calib, IMPLICIT_METHOD, root).with_suffix(".cache")
    return path, {"onnx_sha256": model_sha, "calibration": calib.describe(), "method": IMPLICIT_METHOD}


def read_valid_cache(path: Path, key: dict) -> bytes | None:
    """The cache bytes when its key and sha256 match; None (recalibrate) otherwise."""
    if cache_is_valid(path, key):
        return path.read_bytes()
    if path.exists():
        print(f"TensorRT calibration cache {path} is stale or was modified; recalibrating")
    return None


def write_cache(path: Path, key: dict, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(data)
    seal_cache(path, key)


def entropy_calibrator(trt, cuda, calib: CalibrationSet, cache: Path, key: dict):
    """An IInt8EntropyCalibrator2 over the CalibrationSet's ready batches (uint8 NHWC frames)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = calib.batches()
            first = calib.frames[: calib.batch]
            self._host = cuda.pinned(first.shape, first.dtype)
            self._device = cuda.malloc(self._host.nbytes)

        def get_batch_size(self) -> int:
            return calib.batch

        def get_batch(self, names):  # one device pointer per input, None when the data is spent
            batch = next(self._batches, None)
            if batch is None:
                return None
            np.copyto(self._host, batch)
            cuda.to_device(self._device, self._host)
            cuda.synchronize()
            return [int(self._device)]

        def read_calibration_cache(self):
            return read_valid_cache(cache, key)

        def write_calibration_cache(self, data) -> None:
            write_cache(cache, key, bytes(data))

        def release(self) -> None:
            cuda.free(self._device)

    return EntropyCalibrator()


def qdq_source(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> tuple[Path, object]:
    """The Q/DQ ONNX TensorRT builds explicit INT8 from: symmetric s8 activations, zero point 0."""
    from edgeseg.build.quantize import qdq_from_onnx

    if spec.budget is not None:
        raise BadInputError("--max-miou-drop is not wired to TensorRT engines yet",
                            "build without --max-miou-drop and check the drop with `edgeseg eval --engine ... "
                            "--reference ...`, or fit the budget on onnxruntime/openvino")
    result = qdq_from_onnx(onnx_path, out_dir / QDQ_FILE, spec.calibration, spec.calib_method, spec.keep_float,
                           activations="s8")
    print(result.summary())
    return out_dir / QDQ_FILE, result


def keep_layers_in_float(trt, network, names: tuple[str, ...], config) -> list[str]:
    """Implicit mode: pin the named layers (ONNX node names, as the parser names layers) to FP16."""
    wanted, pinned = set(names), []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in wanted:
            layer.precision = trt.float16
            pinned.append(layer.name)
    missing = wanted - set(pinned)
    if missing:
        raise BadInputError(f"--keep-float names no TensorRT layer: {', '.join(sorted(missing))}",
                            "use the ONNX node names of model.onnx (the parser keeps them as layer names)")
    if pinned:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return pinned
