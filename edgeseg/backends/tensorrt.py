"""TensorRT engines for Jetson and desktop NVIDIA GPUs, written against the TensorRT 10 and 11 Python API.

Build (TensorRT 10): ONNX parser -> builder config with a workspace limit, an optimization profile
for the input, a timing cache file shared by every build on this GPU, the FP16 builder flag, and a
DLA core with GPU fallback on Jetson.
Build (TensorRT 11): weak typing is gone; networks are strongly typed, so FP16 comes from an FP16
ONNX (made here with FP32 I/O kept) and no precision flags are set. `strongly_typed=True` opts into
the same path on TensorRT 10.12+.
Run: deserialize, pinned host + device buffers, copies and `execute_async_v3` on one CUDA stream.
An engine only runs on the TensorRT version and GPU it was built for: load checks both first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import BadInputError, EdgesegError
from ..io import atomic_path
from ..manifest import Manifest
from . import _tensorrt_int8 as _int8
from .base import Availability, BuildSpec, Built, LoadOptions, Session

NAME = "tensorrt"
ENGINE_FILE = "model.engine"
FP16_ONNX = "model.fp16.onnx"
FLOAT_PRECISIONS = ("fp32", "fp16")  # what an INT8 build is timed against
TIMING_CACHE = "tensorrt-timing.cache"  # beside the engine directories: shared by every build
DEFAULT_WORKSPACE = 1 << 30  # 1 GiB: enough tactics for these networks, and fits a Jetson Orin Nano


def availability() -> Availability:
    try:
        import tensorrt as trt
    except ImportError:
        return Availability(False, None, "tensorrt is not installed (it comes with JetPack, or NVIDIA's wheels: "
                                         "pip install tensorrt); it cannot be installed on CPU-only machines")
    from . import _cuda

    ok, reason = _cuda.available()
    return Availability(ok, trt.__version__, reason, ("cuda",) if ok else ())


def _major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def _rebuild_hint(manifest: Manifest | None = None) -> str:
    command = manifest.command if manifest else "edgeseg build ... --backend tensorrt"
    return f"rebuild the engine on this machine: {command} --force"


class _Logger:
    """Keeps TensorRT's messages so an error can quote them instead of leaving them on stderr."""

    def __new__(cls, trt):
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.messages: list[str] = []

            def log(self, severity, msg):
                if severity in KEPT:
                    self.messages.append(str(msg))

        KEPT = {trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR, trt.ILogger.Severity.WARNING}

        return Logger()


def build(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> Built:
    import tensorrt as trt

    if _major(trt) < 10:
        raise EdgesegError(f"TensorRT {trt.__version__} is too old", "edgeseg builds with TensorRT 10 or 11")
    if spec.precision not in ("fp32", "fp16", "int8"):
        raise BadInputError(f"TensorRT builds fp32, fp16 or int8, not {spec.precision}", "pass --precision fp16")
    strongly_typed = _major(trt) >= 11 or bool(spec.options.get("strongly_typed"))
    source, files, int8 = Path(onnx_path), [ENGINE_FILE], None
    if strongly_typed and spec.precision == "fp16":
        from ..export import fp16_onnx

        fp16_onnx(onnx_path, out_dir / FP16_ONNX)
        source, files = out_dir / FP16_ONNX, [ENGINE_FILE, FP16_ONNX]
    if spec.precision == "int8":
        int8 = spec.options.get("int8_mode", "explicit")
        _int8.check_mode(int8, _major(trt), strongly_typed, spec.options.get("dla_core"))
        if int8 == "explicit":
            source, _ = _int8.qdq_source(onnx_path, out_dir, spec)
            files = [ENGINE_FILE, _int8.QDQ_FILE]
    logger = _Logger(trt)
    builder = trt.Builder(logger)
    network, parser = _parse(trt, builder, logger, source, strongly_typed)  # parser owns weights until the build
    config = _builder_config(trt, builder, network, spec, strongly_typed)
    calibrator, pinned = None, []
    if int8 == "implicit":
        calibrator, pinned = _implicit_int8(trt, builder, config, network, onnx_path, spec)
    cache_path = _attach_timing_cache(config, spec, out_dir.parent / TIMING_CACHE)
    plan = builder.build_serialized_network(network, config)
    del parser
    if calibrator is not None:
        calibrator.release()
    if plan is None:
        raise EdgesegError("TensorRT could not build the engine: " + " | ".join(logger.messages[-3:]),
                           "check the messages above; a larger --workspace or fp32 may help")
    (out_dir / ENGINE_FILE).write_bytes(bytes(plan))
    with atomic_path(cache_path, overwrite=True) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    gpu, capability = _gpu(spec.options.get("gpu", 0))
    dla = spec.options.get("dla_core")
    options = {"strongly_typed": strongly_typed, "workspace": spec.options.get("workspace", DEFAULT_WORKSPACE),
               "dla_core": dla, "gpu": gpu, "compute_capability": capability,
               "timing_cache": str(cache_path), "int8_mode": int8}
    device = f"{gpu} (sm_{capability.replace('.', '')})" + (f", DLA core {dla} with GPU fallback" if dla is not None else "")
    return Built(files, spec.precision, device, trt.__version__, _note(spec.precision, strongly_typed, int8), options,
                 _not_int8(out_dir, int8, pinned))


def _note(precision: str, strongly_typed: bool, int8: str | None) -> str:
    if int8 == "explicit":
        return "explicit INT8 from a Q/DQ ONNX (symmetric INT8 activations, per-channel weights)"
    if int8 == "implicit":
        return "implicit INT8: IInt8EntropyCalibrator2, calibration cache under calibration/cache/"
    if precision == "fp16":
        return "strongly typed: FP16 from an FP16 ONNX" if strongly_typed else \
            "FP16 builder flag: TensorRT may keep layers in FP32 where faster"
    return ""


def _not_int8(out_dir: Path, int8: str | None, pinned: list[str]) -> dict[str, str]:
    if int8 == "explicit":
        from ..quantize import float_nodes

        return {name: "fp16/fp32 (TensorRT's choice outside Q/DQ)" + kind[4:]
                for name, kind in float_nodes(out_dir / _int8.QDQ_FILE).items()}
    return {name: "fp16 (pinned)" for name in pinned}


def _implicit_int8(trt, builder, config, network, onnx_path: Path, spec: BuildSpec):
    """INT8 and FP16 flags, the entropy calibrator (cached), and the layers kept in FP16."""
    from . import _cuda

    if spec.budget is not None:
        raise BadInputError("--max-miou-drop works on the explicit (Q/DQ) path", "drop --trt-int8 implicit")
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    cache, key = _int8.calibrator_cache(onnx_path, spec.calibration)
    calibrator = _int8.entropy_calibrator(trt, _cuda.open_device(int(spec.options.get("gpu", 0))),
                                          spec.calibration, cache, key)
    config.int8_calibrator = calibrator
    if -1 in tuple(network.get_input(0).shape):  # dynamic shapes: calibration needs its own profile
        config.set_calibration_profile(_profile(builder, network, spec))
    pinned = _int8.keep_layers_in_float(trt, network, tuple(spec.keep_float), config)
    return calibrator, pinned


def _parse(trt, builder, logger, source: Path, strongly_typed: bool):
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgesegError(f"TensorRT's ONNX parser rejected {source.name}: {errors[:400]}",
                           "export with --exporter torchscript (opset 17), or report the model")
    return network, parser


def _builder_config(trt, builder, network, spec: BuildSpec, strongly_typed: bool):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.options.get("workspace", DEFAULT_WORKSPACE)))
    if spec.precision in ("fp16", "int8") and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)  # int8: layers outside Q/DQ may run in FP16
    if spec.precision == "int8" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)
    config.add_optimization_profile(_profile(builder, network, spec))
    dla = spec.options.get("dla_core")
    if dla is not None:
        _use_dla(trt, builder, config, int(dla), spec.precision)
    return config


def _profile(builder, network, spec: BuildSpec):
    """min/opt/max shapes for the input: dynamic batch 1..max_batch; H and W as exported unless given."""
    tensor = network.get_input(0)
    shape = list(tensor.shape)
    profile = builder.create_optimization_profile()
    given = spec.options.get("profile")  # {"min": [...], "opt": [...], "max": [...]}
    if given:
        profile.set_shape(tensor.name, given["min"], given["opt"], given["max"])
        return profile
    size = spec.options.get("input_size")  # (H, W) of the export, for graphs with dynamic H/W
    layout_hw = (1, 2) if len(shape) == 4 and shape[3] == 3 else (2, 3)
    for axis, value in zip(layout_hw, size or (None, None)):
        if shape[axis] == -1 and value:
            shape[axis] = value
    if any(d == -1 for d in shape[1:]):
        raise BadInputError(f"input {tensor.name} has dynamic dims {tensor.shape} and no profile",
                            "pass --input-size HxW so the optimization profile can be set")
    max_batch = int(spec.options.get("max_batch", 8)) if shape[0] == -1 else shape[0]
    low, high = [1 if shape[0] == -1 else shape[0]] + shape[1:], [max_batch] + shape[1:]
    profile.set_shape(tensor.name, low, low, high)
    return profile


def _use_dla(trt, builder, config, core: int, precision: str) -> None:
    if _major(trt) >= 11:
        raise EdgesegError("TensorRT 11 does not support DLA", "build DLA engines with TensorRT 10 (JetPack 6)")
    if builder.num_DLA_cores <= core:
        raise BadInputError(f"DLA core {core} requested; this device has {builder.num_DLA_cores}",
                            "omit --dla-core on GPUs without DLA (only Jetson Xavier/Orin have them)")
    if precision == "fp32":
        raise BadInputError("DLA runs FP16 or INT8 only", "pass --precision fp16 or int8 with --dla-core")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU


def _attach_timing_cache(config, spec: BuildSpec, default: Path) -> Path:
    """Tactic timings survive between builds on one GPU, so a rebuild takes seconds, not minutes."""
    path = Path(spec.options.get("timing_cache") or default)
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return path


def _gpu(index: int = 0) -> tuple[str, str]:
    from . import _cuda

    device = _cuda.open_device(index)
    try:
        return device.device_properties(index)
    finally:
        device.close()


def _check_compatible(trt, manifest: Manifest, cuda) -> None:
    built_with = manifest.backend.get("version")
    if built_with != trt.__version__:
        raise EdgesegError(f"this engine was built with TensorRT {built_with}; this machine has {trt.__version__}. "
                           "TensorRT engines only run on the version that built them", _rebuild_hint(manifest))
    want = manifest.backend.get("options", {}).get("compute_capability")
    name, have = cuda.device_properties()
    if want and want != have:
        raise EdgesegError(f"this engine was built for a GPU of compute capability {want}; this GPU ({name}) is {have}",
                           _rebuild_hint(manifest))


class TensorRtSession(Session):
    def __init__(self, manifest: Manifest, root: Path, options: LoadOptions) -> None:
        import tensorrt as trt

        from . import _cuda

        super().__init__(manifest)
        self.trt = trt
        self.cuda = _cuda.open_device(int(options.device or 0))
        _check_compatible(trt, manifest, self.cuda)
        self._logger = _Logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine((root / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise EdgesegError(f"TensorRT cannot deserialize {root / ENGINE_FILE}: " + " | ".join(self._logger.messages[-2:]),
                               _rebuild_hint(manifest))
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input = names[is_input.index(True)]
        self.output = names[is_input.index(False)]
        self._shape: tuple[int, ...] | None = None
        self._buffers: list[int] = []

    def _allocate(self, shape: tuple[int, ...]) -> None:
        """(Re)allocate buffers when the batch shape changes; a camera stream allocates once."""
        trt, engine = self.trt, self.engine
        self._release()
        self.context.set_input_shape(self.input, shape)
        out_shape = tuple(self.context.get_tensor_shape(self.output))
        in_dtype, out_dtype = (np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in (self.input, self.output))
        self.host_in = self.cuda.pinned(shape, in_dtype)
        self.host_out = self.cuda.pinned(out_shape, out_dtype)
        self._buffers = [self.cuda.malloc(self.host_in.nbytes), self.cuda.malloc(self.host_out.nbytes)]
        self.context.set_tensor_address(self.input, self._buffers[0])
        self.context.set_tensor_address(self.output, self._buffers[1])
        self._shape = shape

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self._shape:
            self._allocate(batch.shape)
        np.copyto(self.host_in, batch)
        self.cuda.to_device(self._buffers[0], self.host_in)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise EdgesegError("TensorRT execution failed: " + " | ".join(self._logger.messages[-2:]),
                               "check the GPU with nvidia-smi; rebuild the engine if the driver changed")
        self.cuda.to_host(self.host_out, self._buffers[1])
        self.cuda.synchronize()
        return self.host_out.copy()

    def _release(self) -> None:
        for pointer in self._buffers:
            self.cuda.free(pointer)
        self._buffers = []

    def close(self) -> None:
        self._release()
        self.cuda.close()


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        raise EdgesegError("CUDA_VISIBLE_DEVICES is empty, so no GPU is visible", "unset it to run TensorRT engines")
    return TensorRtSession(manifest, root, options)
