"""TensorRT engines: the build-time half of the backend (parser, builder config, INT8 both ways)."""

from __future__ import annotations

from pathlib import Path

from edgeseg.backends.tensorrt import int8 as _int8
from edgeseg.backends.tensorrt.session import ENGINE_FILE, Logger, init_plugins, major_version
from edgeseg.build.spec import BuildSpec, Built
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.io import atomic_path

FP16_ONNX = "model.fp16.onnx"


FLOAT_PRECISIONS = ("fp32", "fp16")  # what an INT8 build is timed against


TIMING_CACHE = "tensorrt-timing.cache"  # beside the engine directories: shared by every build


def build(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> Built:
    import tensorrt as trt

    if major_version(trt) < 10:
        raise EdgesegError(f"TensorRT {trt.__version__} is too old", "edgeseg builds with TensorRT 10 or 11")
    if spec.precision not in ("fp32", "fp16", "int8"):
        raise BadInputError(f"TensorRT builds fp32, fp16 or int8, not {spec.precision}", "pass --precision fp16")
    strongly_typed = major_version(trt) >= 11 or spec.options.strongly_typed
    source, files, int8 = Path(onnx_path), [ENGINE_FILE], None
    if strongly_typed and spec.precision == "fp16":
        from edgeseg.build.export import fp16_onnx

        fp16_onnx(onnx_path, out_dir / FP16_ONNX)
        source, files = out_dir / FP16_ONNX, [ENGINE_FILE, FP16_ONNX]
    if spec.precision == "int8":
        int8 = spec.options.int8_mode
        _int8.check_mode(int8, major_version(trt), strongly_typed, spec.options.dla_core, spec.int8_only)
        if int8 == "explicit":
            source, _ = _int8.qdq_source(onnx_path, out_dir, spec)
            files = [ENGINE_FILE, _int8.QDQ_FILE]
    logger = Logger(trt)
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
    gpu, capability = _gpu(spec.options.gpu)
    dla = spec.options.dla_core
    options = {"strongly_typed": strongly_typed, "workspace": spec.options.workspace,
               "dla_core": dla, "gpu": gpu, "compute_capability": capability,
               "timing_cache": str(cache_path), "int8_mode": int8,
               "max_batch": spec.options.max_batch}  # the profile's largest batch (Triton's max_batch_size limit)
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
        from edgeseg.build.quantize import float_nodes

        return {name: "fp16/fp32 (TensorRT's choice outside Q/DQ)" + kind[4:]
                for name, kind in float_nodes(out_dir / _int8.QDQ_FILE).items()}
    return {name: "fp16 (pinned)" for name in pinned}


def _implicit_int8(trt, builder, config, network, onnx_path: Path, spec: BuildSpec):
    """INT8 and FP16 flags, the entropy calibrator (cached), and the layers kept in FP16."""
    from edgeseg.backends.tensorrt import cuda as _cuda

    if spec.budget is not None:
        raise BadInputError("--max-miou-drop works on the explicit (Q/DQ) path", "drop --trt-int8 implicit")
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    cache, key = _int8.calibrator_cache(onnx_path, spec.calibration)
    calibrator = _int8.entropy_calibrator(trt, _cuda.open_device(spec.options.gpu),
                                          spec.calibration, cache, key)
    config.int8_calibrator = calibrator
    if -1 in tuple(network.get_input(0).shape):  # dynamic shapes: calibration needs its own profile
        config.set_calibration_profile(_profile(builder, network, spec))
    pinned = _int8.keep_layers_in_float(trt, network, tuple(spec.keep_float), config)
    return calibrator, pinned


def _parse(trt, builder, logger, source: Path, strongly_typed: bool):
    """The network from the ONNX file. Instance graphs (Mask R-CNN) need two operators beyond the semantic
    ones; the parser of TensorRT 10 (onnx-tensorrt, docs/operators.md: NonMaxSuppression and RoiAlign "Y")
    maps NonMaxSuppression to the built-in INMSLayer (addNMS) and RoiAlign to the ROIAlign_TRT plugin
    (version 2; opset 16's coordinate_transformation_mode "output_half_pixel" is its mode 0), which it
    takes from the plugin registry: the plugin library must be registered before parsing."""
    plugins = init_plugins(trt)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        fix = "export with --exporter torchscript (opset 17), or report the model"
        if not plugins:
            fix = ("install TensorRT with its plugin library (libnvinfer_plugin, in JetPack and NVIDIA's tensorrt "
                   "wheels): RoiAlign (instance networks) is a plugin, and registering the library failed")
        elif "plugin" in errors.lower():
            fix = "use a TensorRT 10 or 11 whose plugin library has the plugin named above (RoiAlign: ROIAlign_TRT)"
        raise EdgesegError(f"TensorRT's ONNX parser rejected {source.name}: {errors[:400]}", fix)
    return network, parser


def _builder_config(trt, builder, network, spec: BuildSpec, strongly_typed: bool):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.options.workspace))
    if spec.precision in ("fp16", "int8") and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)  # int8: layers outside Q/DQ may run in FP16
    if spec.precision == "int8" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)
    config.add_optimization_profile(_profile(builder, network, spec))
    dla = spec.options.dla_core
    if dla is not None:
        _use_dla(trt, builder, config, int(dla), spec.precision)
    return config


def _profile(builder, network, spec: BuildSpec):
    """min/opt/max shapes for the input: dynamic batch 1..max_batch; H and W as exported unless given."""
    tensor = network.get_input(0)
    shape = list(tensor.shape)
    profile = builder.create_optimization_profile()
    given = spec.options.profile  # (min, opt, max) shapes
    if given:
        profile.set_shape(tensor.name, *given)
        return profile
    size = spec.options.input_size  # (H, W) of the export, for graphs with dynamic H/W
    layout_hw = (1, 2) if len(shape) == 4 and shape[3] == 3 else (2, 3)
    for axis, value in zip(layout_hw, size or (None, None)):
        if shape[axis] == -1 and value:
            shape[axis] = value
    if any(d == -1 for d in shape[1:]):
        raise BadInputError(f"input {tensor.name} has dynamic dims {tensor.shape} and no profile",
                            "pass --input-size HxW so the optimization profile can be set")
    max_batch = spec.options.max_batch if shape[0] == -1 else shape[0]
    low, high = [1 if shape[0] == -1 else shape[0]] + shape[1:], [max_batch] + shape[1:]
    profile.set_shape(tensor.name, low, low, high)
    return profile


def _use_dla(trt, builder, config, core: int, precision: str) -> None:
    if major_version(trt) >= 11:
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
    path = Path(spec.options.timing_cache or default)
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return path


def _gpu(index: int = 0) -> tuple[str, str]:
    from edgeseg.backends.tensorrt import cuda as _cuda

    device = _cuda.open_device(index)
    try:
        return device.device_properties(index)
    finally:
        device.close()
