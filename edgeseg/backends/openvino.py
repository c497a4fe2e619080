"""OpenVINO: IR (.xml/.bin) via openvino.convert_model, for Intel CPUs, iGPUs and NPUs.

Precision facts this module exists to get right:
- On CPUs with AVX512-BF16 or AMX, OpenVINO runs an "FP32" model in bf16 unless
  INFERENCE_PRECISION_HINT is f32. FP32 builds set it; the manifest records what the compiled model
  reports, never what was asked.
- FP16 is a compressed IR (FP16 weights). x86 CPUs without AVX512-FP16 execute it in bf16 (or f32);
  the precision "as run" is read back from the compiled model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError, EdgesegError
from ..manifest import Manifest
from .base import Availability, BuildSpec, Built, LoadOptions, Session

NAME = "openvino"
XML, BIN = "model.xml", "model.bin"
# INT8 IRs keep the layers NNCF leaves in float at f32 (bf16 would be a second, unrequested change)
HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32"}
FLOAT_PRECISIONS = ("fp32", "fp16")  # what an INT8 build is timed against
PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
TYPE_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "int8"}


def availability() -> Availability:
    try:
        import openvino as ov
    except ImportError:
        return Availability(False, None, "openvino is not installed (pip install 'edgeseg[openvino]')")
    try:
        devices = tuple(ov.Core().available_devices)
    except Exception as exc:  # a broken plugin install
        return Availability(False, ov.get_version(), f"OpenVINO cannot enumerate devices: {exc}")
    return Availability(bool(devices), _version(), "" if devices else "OpenVINO found no devices", devices)


def _version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def build(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> Built:
    import openvino as ov

    if spec.precision not in HINTS:
        raise BadInputError(f"OpenVINO builds fp32, fp16 or int8, not {spec.precision}", "pass --precision fp32")
    device = spec.options.get("device", "CPU")
    model = ov.convert_model(str(onnx_path))
    options = {"device": device, "inference_precision_hint": HINTS[spec.precision]}
    if spec.precision == "int8":
        model, report = _nncf_int8(model, spec)
        options["quantization"] = {"tool": "nncf", "keep_float": list(spec.keep_float)}
        if report is not None:
            options["budget"] = report.to_dict()
            print(report.summary())
    # save_model compresses to FP16 unless told otherwise: an "FP32" IR must say False explicitly.
    ov.save_model(model, str(out_dir / XML), compress_to_fp16=spec.precision == "fp16")
    compiled = _compile(ov.Core(), out_dir / XML, device, spec.precision, "latency", cache_dir=None)
    as_run, note, not_int8 = _precision_as_run(compiled), "", {}
    if spec.precision == "int8":
        layers = layer_precisions(compiled)
        as_run = "int8" if layers.get("int8") else as_run
        note = "layers by runtime precision: " + ", ".join(f"{k} {v}" for k, v in sorted(layers.items()))
        not_int8 = float_layers(compiled)
    elif as_run != spec.precision:
        note = f"{device} has no {spec.precision.upper()} arithmetic; OpenVINO runs this IR in {as_run}"
    return Built([XML, BIN], as_run, f"{device} ({_device_name(device)})", _version(), note, options, not_int8)


def _nncf_int8(model, spec: BuildSpec):
    """NNCF post-training quantization of the IR, fed by the shared CalibrationSet: (model, budget report)."""
    import nncf

    if spec.calibration is None:
        raise BadInputError("an int8 build needs calibration images", "pass --calib SPEC")
    batches = list(spec.calibration.batches())
    ignored = nncf.IgnoredScope(names=list(spec.keep_float), validate=False) if spec.keep_float else None
    common = {"subset_size": len(batches), "preset": nncf.QuantizationPreset.PERFORMANCE,
              **({"ignored_scope": ignored} if ignored else {})}
    quantized = nncf.quantize(model, nncf.Dataset(batches), **common)
    if spec.budget is None:
        return quantized, None
    return _within_budget(model, quantized, batches, common, spec.budget)


def _within_budget(model, quantized, batches, common, budget):
    """Measure the all-INT8 drop; past the budget, NNCF's accuracy control reverts the layers that
    cost the most to float (it compiles with an f32 hint, so its FP32 reference is true FP32)."""
    import nncf
    import openvino as ov

    from ..budget import BudgetReport, as_labels

    val = budget.validation
    core = ov.Core()

    def predictor(m):
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return compiled, (lambda frames: as_labels(compiled({0: frames})[0], frames.shape[1:3]))

    fp32 = val.miou(predictor(model)[1])
    compiled, predict = predictor(quantized)
    int8 = final = val.miou(predict)
    strategy = "all-int8"
    if fp32 - int8 > budget.max_drop:
        def validate(compiled_model, items) -> tuple[float, None]:
            indices = [i for i in items]
            return val.miou(lambda f: as_labels(compiled_model({0: f})[0], f.shape[1:3]), indices) / 100.0, None

        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        restorer = AdvancedAccuracyRestorerParameters(
            **({"max_num_iterations": budget.max_kept} if budget.max_kept is not None else {}))
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(batches), nncf.Dataset(list(range(len(val.frames))), lambda i: val.frames[i:i + 1]),
            validate, max_drop=budget.max_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=restorer, **common)
        compiled, predict = predictor(quantized)
        final, strategy = val.miou(predict), "nncf-accuracy-control"
    layers = runtime_layers(compiled)
    kept = {name: precision for name, precision in layers.items() if precision != "int8"}
    report = BudgetReport(budget.max_drop, val.spec, len(val.frames), round(fp32, 3), round(int8, 3),
                          round(final, 3), fp32 - final <= budget.max_drop, strategy, sorted(kept), kept)
    return quantized, report


def int8_diagnosis(root: Path, manifest: Manifest) -> str:
    """Why an INT8 IR is slow here: layers left in float and the reorders/converts between them."""
    import openvino as ov

    compiled = _compile(ov.Core(), root / XML, "CPU", "int8", "latency", cache_dir=None)
    layers = runtime_layers(compiled)
    kinds: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind in ("Reorder", "Convert"):
            kinds[kind] = kinds.get(kind, 0) + 1
    floating = sum(1 for p in layers.values() if p != "int8")
    return (f"{floating} of {len(layers)} convolutions/matmuls run in float; {kinds.get('Reorder', 0)} reorders and "
            f"{kinds.get('Convert', 0)} precision converts between layers")


def runtime_layers(compiled) -> dict[str, str]:
    """The executed convolutions/matmuls by name, with the precision each actually runs in."""
    layers: dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind.lower() not in ("convolution", "fullyconnected", "matmul", "deconvolution", "groupconvolution"):
            continue
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        layers[op.get_friendly_name()] = TYPE_NAMES.get(precision.lower(), precision.lower())
    return layers


# Ops that only move, reshape or convert data: they compute nothing a precision could change.
DATA_MOVEMENT = {"input", "output", "const", "reshape", "reorder", "convert", "transpose", "stridedslice",
                 "concatenation", "split", "gather", "broadcast", "squeeze", "unsqueeze"}


def float_layers(compiled) -> dict[str, str]:
    """Every executed op that computes in a precision other than INT8, by name: float convolutions, and
    the layers around them (Interpolate, TopK for the fused ArgMax, eltwise subgraphs) that stay float."""
    layers: dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str).lower() if "layerType" in info else ""
        precision = info["runtimePrecision"].astype(str).lower() if "runtimePrecision" in info else "?"
        if kind and kind not in DATA_MOVEMENT and TYPE_NAMES.get(precision, precision) != "int8":
            layers[op.get_friendly_name()] = f"{TYPE_NAMES.get(precision, precision)} ({kind})"
    return layers


def layer_precisions(compiled) -> dict[str, int]:
    """Count the executed convolutions/matmuls by the precision they actually run in."""
    counts: dict[str, int] = {}
    for precision in runtime_layers(compiled).values():
        counts[precision] = counts.get(precision, 0) + 1
    return counts


def _compile(core, xml: Path, device: str, precision: str, performance: str, cache_dir: str | None):
    config = {"INFERENCE_PRECISION_HINT": HINTS.get(precision, "f32"),
              "PERFORMANCE_HINT": PERFORMANCE_HINTS[performance]}
    if cache_dir:
        config["CACHE_DIR"] = cache_dir
    try:
        return core.compile_model(str(xml), device, config)
    except RuntimeError as exc:
        raise EdgesegError(f"OpenVINO cannot compile {xml} for {device}: {str(exc).splitlines()[0][:200]}",
                           "check the device with `edgeseg doctor`, or rebuild with `edgeseg build ... --force`") from exc


def _precision_as_run(compiled) -> str:
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return TYPE_NAMES.get(name, name)


def _device_name(device: str) -> str:
    import openvino as ov

    try:
        return ov.Core().get_property(device, "FULL_DEVICE_NAME")
    except RuntimeError:
        return device


class OpenVinoSession(Session):
    def __init__(self, manifest: Manifest, root: Path, options: LoadOptions) -> None:
        import openvino as ov

        super().__init__(manifest)
        core = ov.Core()
        if options.threads:
            core.set_property("CPU", {"INFERENCE_NUM_THREADS": options.threads})
        device = options.device or manifest.backend.get("options", {}).get("device", "CPU")
        cache = options.cache_dir or str(root / ".cache")  # compiled blobs make the second load fast
        self._compiled = _compile(core, root / XML, device, manifest.precision["requested"],
                                  options.performance_hint, cache if _writable(root) else None)
        self.precision_as_run = _precision_as_run(self._compiled)
        if manifest.precision["requested"] == "int8" and layer_precisions(self._compiled).get("int8"):
            self.precision_as_run = "int8"  # the hint only governs the layers NNCF left in float
        self._request = self._compiled.create_infer_request()
        self._throughput = (core, root / XML, device, manifest.precision["requested"], cache if _writable(root) else None)

    def run_for(self, frames: np.ndarray, seconds: float) -> tuple[int, float, int]:
        """Throughput mode: a THROUGHPUT-hint compile (several CPU streams) fed by an AsyncInferQueue
        with the plugin's optimal number of requests, so requests overlap as in a batch or multi-camera job."""
        import time

        import openvino as ov

        batch = self.check_frames(frames)
        if self._host_preprocess:
            from .base import normalize

            batch = normalize(batch, self.manifest.input.mean, self.manifest.input.std)
        core, xml, device, precision, cache = self._throughput
        queue = ov.AsyncInferQueue(_compile(core, xml, device, precision, "throughput", cache))
        if self.manifest.output.kind != "labels":  # the host tail is part of every result, as in infer()
            from ..tail import upsample_argmax

            size = frames.shape[-3:-1]
            queue.set_callback(lambda request, _: upsample_argmax(request.get_output_tensor(0).data, size))
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            queue.start_async({0: batch})
            done += len(batch)
        queue.wait_all()
        return done, time.perf_counter() - start, len(queue)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: batch}, share_inputs=True)
        return self._request.get_output_tensor(0).data.copy()

    def describe(self) -> dict:
        return {**super().describe(), "precision_as_run": self.precision_as_run}


def _writable(root: Path) -> bool:
    import os

    return os.access(root, os.W_OK)


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    return OpenVinoSession(manifest, root, options)
