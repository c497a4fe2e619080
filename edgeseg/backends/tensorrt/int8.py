"""TensorRT INT8, both ways, against NVIDIA's documented Python API.

Explicit (TensorRT 10 and 11; the only INT8 TensorRT 11 has): the network is parsed from the Q/DQ
ONNX that edgeseg.build.quantize writes with symmetric INT8 activations (zero point 0) and per-channel
symmetric weights, which is what TensorRT requires of Q/DQ scales. Strongly typed networks take
their precisions from the graph; weakly typed ones (TensorRT 10) set the INT8 flag, and FP16 so that
layers outside Q/DQ pairs may run in half precision.

Implicit (TensorRT <= 10: JetPack 5/6, DLA): the float ONNX, the INT8 flag and an
IInt8EntropyCalibrator2 fed from the shared CalibrationSet. Its calibration cache is kept under
calibration/cache/, keyed like the Q/DQ range cache by the ONNX hash, the calibration pixels and the
method, with a sidecar holding the key and the cache's sha256, and its content checked as TensorRT's
cache format (`cache_problem`): a stale, edited or malformed cache is recalibrated, never used. Layers kept out of INT8 get `layer.precision = float16` and
OBEY_PRECISION_CONSTRAINTS.

Instance graphs (`BuildSpec.int8_only`: the Mask R-CNN backbone and pyramid in INT8, the heads float) are built
explicit only: the Q/DQ graph leaves every node outside int8_only without Q/DQ, and `check_mode` refuses
implicit mode for them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgeseg.build.calibration import CACHE_DIR, CalibrationSet, cache_is_valid, cache_path, seal_cache
from edgeseg.build.spec import BuildSpec
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.io import atomic_path, sha256_file

QDQ_FILE = "model.int8.onnx"
MODES = ("explicit", "implicit")
IMPLICIT_METHOD = "trt-entropy2"  # the cache key's method: TensorRT's own entropy calibration


def check_mode(mode: str, major: int, strongly_typed: bool = False, dla_core: int | None = None,
               int8_only: str | None = None) -> None:
    """Refuse the combinations TensorRT cannot build, each with the flag that works instead."""
    if mode not in MODES:
        raise BadInputError(f"unknown TensorRT INT8 mode '{mode}'", f"choose one of {', '.join(MODES)}")
    if mode == "implicit" and major >= 11:
        raise EdgesegError("TensorRT 11 has no implicit INT8 (calibrators were removed)",
                           "build with --trt-int8 explicit (Q/DQ ONNX), or use TensorRT 10 for implicit INT8")
    if mode == "implicit" and strongly_typed:
        raise BadInputError("a strongly typed network takes no calibrator and no precision flags",
                            "drop strongly_typed for --trt-int8 implicit, or use --trt-int8 explicit")
    if mode == "implicit" and int8_only is not None:
        # The calibrator quantizes every layer TensorRT can run in INT8; keeping the heads float would mean
        # pinning each of the layers the parser makes from the nodes outside int8_only (NMS, RoiAlign, the
        # shape arithmetic among them), whose names are not the ONNX node names one for one. The Q/DQ graph
        # says it exactly: the split BuildSpec.int8_only makes, read by TensorRT as written.
        raise BadInputError(f"implicit INT8 (calibrator) cannot keep the layers outside '{int8_only}' (the heads "
                            "of an instance network) in float",
                            f"build with --trt-int8 explicit: only the nodes under '{int8_only}' get Q/DQ, the heads "
                            "stay float")
    if mode == "explicit" and dla_core is not None:
        raise BadInputError("DLA does not run Q/DQ (explicit) INT8 networks",
                            "build DLA engines with --trt-int8 implicit (IInt8EntropyCalibrator2, TensorRT <= 10)")


def calibrator_cache(onnx_path: Path, calib: CalibrationSet, root: Path = CACHE_DIR) -> tuple[Path, dict]:
    """Where the implicit calibrator's cache lives, and the key it must match to be read."""
    model_sha = sha256_file(onnx_path)
    path = cache_path(model_sha, calib, IMPLICIT_METHOD, root).with_suffix(".cache")
    return path, {"onnx_sha256": model_sha, "calibration": calib.describe(), "method": IMPLICIT_METHOD}


# TensorRT's calibration cache (IInt8Calibrator.read/write_calibration_cache) is text: a header naming the
# TensorRT version and the algorithm, then one "tensor name: scale" line per tensor, the scale a float32's
# bits in hex (big-endian; TensorRT drops leading zeros). E.g.
#   TRT-100300-EntropyCalibration2
#   input: 3c010a14
#   (Unnamed Layer* 8) [Constant]_output: 39137939
_HEADER = re.compile(r"TRT-(\d+)-([A-Za-z0-9]+)")
_ALGORITHM = "EntropyCalibration2"  # what IInt8EntropyCalibrator2 writes (IMPLICIT_METHOD)
_SCALE = re.compile(r"[0-9a-fA-F]{1,8}")
MAX_CACHE_BYTES = 64 << 20  # a cache holds one line per tensor: a few KiB to a few hundred


def version_code(version: str) -> int:
    """The number TensorRT writes in a cache's header: its NV_TENSORRT_VERSION macro, major*1000 +
    minor*100 + patch before TensorRT 10 (8.6.1 -> 8601), major*10000 + minor*100 + patch from 10 on
    (10.3.0 -> 100300)."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    major, minor, patch = parts[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def cache_problem(data: bytes, tensorrt_version: str | None = None) -> str | None:
    """Why `data` is not a calibration cache TensorRT's entropy calibrator 2 wrote (a phrase), or None.

    The sidecar's key and sha256 only prove the bytes are the ones sealed: a cache crafted together with
    its sidecar, or a write TensorRT never finished, is still handed to TensorRT, which takes its scales
    as they are. So the content is checked too: the header and algorithm, one "name: scale" line per
    tensor with no name twice, and every scale a finite, non-negative float32 (a NaN, inf or negative
    scale would become the engine's quantization). Given the running `tensorrt_version`, a cache another
    TensorRT release wrote is refused too: NVIDIA does not promise its scales carry across releases (the
    layers it names and fuses change), and an old cache would otherwise outlive every upgrade."""
    if len(data) > MAX_CACHE_BYTES:
        return f"is {len(data) >> 20} MiB, not a calibration cache"
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return "is not text (TensorRT writes ASCII)"
    header = _HEADER.fullmatch(lines[0].strip()) if lines else None
    if header is None:
        return "has no TRT-<version>-<algorithm> header"
    if header.group(2) != _ALGORITHM:
        return f"was made by {header.group(2)}, not {_ALGORITHM}"
    if tensorrt_version is not None and int(header.group(1)) != version_code(tensorrt_version):
        return (f"was written by another TensorRT release (header TRT-{header.group(1)}; this is TensorRT "
                f"{tensorrt_version}, TRT-{version_code(tensorrt_version)})")
    seen: set[str] = set()
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")
        value, name = value.strip(), name.strip()
        if not sep or not name or not _SCALE.fullmatch(value):
            return f"has a line that is not 'tensor: hex scale' (line {number})"
        if name in seen:
            return f"names tensor {name!r} twice (line {number})"
        seen.add(name)
        scale = float(np.array([int(value, 16)], ">u4").view(">f4")[0])
        if not np.isfinite(scale) or scale < 0:
            return f"has the unusable scale {scale} for tensor {name!r} (line {number})"
    if not seen:
        return "holds no tensor scales"
    return None


def read_valid_cache(path: Path, key: dict, tensorrt_version: str | None = None) -> bytes | None:
    """The cache bytes when its key and sha256 match and its content is a TensorRT entropy calibration
    cache (`cache_problem`); None (recalibrate) otherwise."""
    if cache_is_valid(path, key):
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"TensorRT calibration cache {path} cannot be read ({exc.strerror}); recalibrating")
            return None
        problem = cache_problem(data, tensorrt_version)
        if problem is None:
            return data
        print(f"TensorRT calibration cache {path} {problem}; recalibrating")
        return None
    if path.exists():
        print(f"TensorRT calibration cache {path} is stale or was modified; recalibrating")
    return None


def write_cache(path: Path, key: dict, data: bytes, tensorrt_version: str | None = None) -> None:
    """Keep the cache TensorRT wrote, sealed with its key; a cache that fails `cache_problem` is refused,
    not kept for every later build (its scales are this build's too, so the build must stop)."""
    problem = cache_problem(data, tensorrt_version)
    if problem:
        raise EdgesegError(f"TensorRT wrote a calibration cache that {problem}",
                           "check the calibration images and the network's weights (a NaN activation makes NaN "
                           "scales), then build again")
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
            self.error: EdgesegError | None = None

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
            return read_valid_cache(cache, key, trt.__version__)

        def write_calibration_cache(self, data) -> None:
            try:
                write_cache(cache, key, bytes(data), trt.__version__)
            except EdgesegError as exc:  # raised inside TensorRT's callback it would be lost: raised at release()
                self.error = exc

        def release(self) -> None:
            cuda.free(self._device)
            if self.error is not None:  # the build's scales are the unusable ones: it must not be published
                raise self.error

    return EntropyCalibrator()


def qdq_source(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> tuple[Path, object]:
    """The Q/DQ ONNX TensorRT builds explicit INT8 from: symmetric s8 activations, zero point 0."""
    from edgeseg.build.quantize import qdq_from_onnx

    if spec.budget is not None:
        raise BadInputError("--max-miou-drop is not wired to TensorRT engines yet",
                            "build without --max-miou-drop and check the drop with `edgeseg eval --engine ... "
                            "--reference ...`, or fit the budget on onnxruntime/openvino")
    result = qdq_from_onnx(onnx_path, out_dir / QDQ_FILE, spec.calibration, spec.calib_method,
                           spec.float_node_names(onnx_path), activations="s8")
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
