"""OpenVINO IRs: the build-time half of the backend (convert, NNCF INT8 within an mIoU budget)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from edgeseg.backends.openvino import version
from edgeseg.backends.openvino.failures import convert_fix, nncf_fix, reported, save_fix
from edgeseg.backends.openvino.session import (
    BIN,
    HINTS,
    TYPE_NAMES,
    XML,
    compile_ir,
    layer_precisions,
    precision_as_run,
    runtime_layers,
)
from edgeseg.build.spec import BuildSpec, Built
from edgeseg.errors import BadInputError
from edgeseg.manifest import Manifest

FLOAT_PRECISIONS = ("fp32", "fp16")  # what an INT8 build is timed against


def build(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> Built:
    import openvino as ov

    if spec.precision not in HINTS:
        raise BadInputError(f"OpenVINO builds fp32, fp16 or int8, not {spec.precision}", "pass --precision fp32")
    device = spec.options.device
    with reported(f"OpenVINO cannot convert {onnx_path}", lambda kind, _: convert_fix(kind)):
        model = ov.convert_model(str(onnx_path))
    options = {"device": device, "inference_precision_hint": HINTS[spec.precision]}
    if spec.precision == "int8":
        model, report = _nncf_int8(model, spec)
        options["quantization"] = {"tool": "nncf", "keep_float": list(spec.keep_float),
                                   "overflow_fix": overflow_fix(spec).value}
        # What the IR needs from the CPU, read from the weights it holds and checked at load
        # (edgeseg.runtime.cpu.check_int8_cpu): full-range dense weights saturate oneDNN's vpmaddubsw
        # pairs on x86 CPUs without VNNI
        from edgeseg.runtime.cpu import FULL_RANGE, REDUCED_RANGE, SATURATION_FREE_WEIGHT, requirement_for_weights

        widest = widest_dense_weight(model)
        options.update(int8_weights=REDUCED_RANGE if widest <= SATURATION_FREE_WEIGHT else FULL_RANGE,
                       requires=requirement_for_weights(widest))
        if report is not None:
            options["budget"] = report.to_dict()
            print(report.summary())
    # save_model compresses to FP16 unless told otherwise: an "FP32" IR must say False explicitly.
    with reported(f"OpenVINO cannot write the IR to {out_dir / XML}", lambda kind, _: save_fix(kind)):
        ov.save_model(model, str(out_dir / XML), compress_to_fp16=spec.precision == "fp16")
    compiled = compile_ir(ov.Core(), out_dir / XML, device, spec.precision, "latency", cache_dir=None)
    as_run, note, not_int8 = precision_as_run(compiled), "", {}
    if spec.precision == "int8":
        layers = layer_precisions(compiled)
        as_run = "int8" if layers.get("int8") else as_run
        note = ("layers by runtime precision: " + ", ".join(f"{k} {v}" for k, v in sorted(layers.items()))
                + f"; {options['int8_weights']} weights (NNCF overflow_fix={options['quantization']['overflow_fix']}; "
                f"runs on: {options['requires']})")
        not_int8 = float_layers(compiled)
    elif as_run != spec.precision:
        note = f"{device} has no {spec.precision.upper()} arithmetic; OpenVINO runs this IR in {as_run}"
    return Built([XML, BIN], as_run, f"{device} ({_device_name(device)})", version(), note, options, not_int8)


def overflow_fix(spec: BuildSpec):
    """NNCF's answer to the 16-bit saturation of u8 x s8 pairs on x86 CPUs without VNNI (see
    edgeseg.runtime.cpu): ENABLE quantizes every dense convolution's and MatMul's weights to half the int8
    range, so the IR computes the same labels on every x86 CPU; `--int8-vnni-only` asks for DISABLE (full
    range, exact only with VNNI). NNCF's own default, FIRST_LAYER, bounds only the first convolution:
    exact nowhere without VNNI, so it is never used."""
    import nncf

    return nncf.OverflowFix.DISABLE if spec.options.int8_vnni_only else nncf.OverflowFix.ENABLE


# Ops whose int8 weights oneDNN multiplies in u8 x s8 pairs (vpmaddubsw) without VNNI. Depthwise
# GroupConvolutions (one input and one output channel per group) widen to 16 bits first: exact.
PAIRWISE_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
                "MatMul")


def widest_dense_weight(model) -> int:
    """The largest |int8 weight| any pairwise op reads in `model` (an ov.Model), followed from each int8
    Constant through its dequantization (Convert, Subtract, Multiply, Reshape) to the op: read from the
    IR itself, independently of what NNCF was asked for. 0 when there is none."""
    import numpy as np
    import openvino as ov

    widest = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" or op.get_element_type() != ov.Type.i8:
            continue
        consumer, steps = op, 0
        while consumer.get_type_name() not in PAIRWISE_OPS and steps < 8:
            targets = list(consumer.output(0).get_target_inputs())
            if not targets:
                break
            consumer, steps = targets[0].get_node(), steps + 1
        if consumer.get_type_name() not in PAIRWISE_OPS or _is_depthwise(consumer):
            continue
        widest = max(widest, int(np.abs(op.get_data().astype(np.int32)).max(initial=0)))
    return widest


def _is_depthwise(op) -> bool:
    if not op.get_type_name().startswith("Group"):
        return False
    shape = op.input(1).get_partial_shape()  # (groups, out per group, in per group, kh, kw)
    return shape.rank.is_static and shape.rank.get_length() >= 3 and shape[1] == 1 and shape[2] == 1


def _nncf_int8(model, spec: BuildSpec):
    """NNCF post-training quantization of the IR, fed by the shared CalibrationSet: (model, budget report)."""
    import nncf

    if spec.calibration is None:
        raise BadInputError("an int8 build needs calibration images", "pass --calib SPEC")
    batches = list(spec.calibration.batches())
    ignored = _ignored_scope(nncf, spec)
    common = {"subset_size": len(batches), "preset": nncf.QuantizationPreset.PERFORMANCE,
              **({"ignored_scope": ignored} if ignored else {})}
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=overflow_fix(spec))
    with reported("NNCF cannot quantize the IR", nncf_fix), _quiet_nncf(spec.int8_only is not None):
        quantized = nncf.quantize(model, nncf.Dataset(batches), advanced_parameters=advanced, **common)
    if spec.budget is None:
        return quantized, None
    return _within_budget(model, quantized, batches, common, advanced, spec.budget)


@contextlib.contextmanager
def _quiet_nncf(quiet: bool):
    """NNCF logs one INFO line per ignored op; an instance graph ignores ~700 (its heads)."""
    logger = logging.getLogger("nncf")
    level = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _ignored_scope(nncf, spec: BuildSpec):
    """keep_float by name; with int8_only, every op whose name does not start with it, by pattern: the IR
    renames some ops (a convolution's bias splits it into `.../Conv/WithoutBiases` and an Add), so ONNX
    node names alone would let those into INT8."""
    import re

    patterns = [f"^(?!{re.escape(spec.int8_only)}).*"] if spec.int8_only is not None else []
    if not spec.keep_float and not patterns:
        return None
    return nncf.IgnoredScope(names=list(spec.keep_float), patterns=patterns, validate=False)


def _within_budget(model, quantized, batches, common, advanced, budget):
    """Measure the all-INT8 drop; past the budget, NNCF's accuracy control reverts the layers that
    cost the most to float (it compiles with an f32 hint, so its FP32 reference is true FP32)."""
    import nncf
    import openvino as ov

    from edgeseg.build.budget import BudgetReport
    from edgeseg.measure.evaluate import Predictor, as_predictor

    val = budget.validation
    core = ov.Core()

    def graph_predictor(compiled) -> Predictor:
        return as_predictor(lambda frames: compiled({0: frames})[0])

    def predictor(m):
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return compiled, graph_predictor(compiled)

    fp32 = val.miou(predictor(model)[1])
    compiled, predict = predictor(quantized)
    int8 = final = val.miou(predict)
    strategy = "all-int8"
    if fp32 - int8 > budget.max_drop:
        def validate(compiled_model, items) -> tuple[float, None]:
            return val.miou(graph_predictor(compiled_model), list(items)) / 100.0, None

        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        restorer = AdvancedAccuracyRestorerParameters(
            **({"max_num_iterations": budget.max_kept} if budget.max_kept is not None else {}))
        with reported("NNCF's accuracy control cannot quantize the IR", nncf_fix):
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(batches), nncf.Dataset(list(range(len(val.frames))), lambda i: val.frames[i:i + 1]),
                validate, max_drop=budget.max_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE,
                advanced_quantization_parameters=advanced, advanced_accuracy_restorer_parameters=restorer,
                **common)
        compiled, predict = predictor(quantized)
        final, strategy = val.miou(predict), "nncf-accuracy-control"
    layers = runtime_layers(compiled)
    kept = {name: precision for name, precision in layers.items() if precision != "int8"}
    report = BudgetReport(budget.max_drop, val.spec, len(val.frames), round(fp32, 3), round(int8, 3),
                          round(final, 3), fp32 - final <= budget.max_drop, strategy, sorted(kept), kept,
                          class_map=val.class_map_record())
    return quantized, report


def int8_diagnosis(root: Path, manifest: Manifest) -> str:
    """Why an INT8 IR is slow here: layers left in float and the reorders/converts between them."""
    import openvino as ov

    compiled = compile_ir(ov.Core(), root / XML, "CPU", "int8", "latency", cache_dir=None)
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


def _device_name(device: str) -> str:
    import openvino as ov

    try:
        return ov.Core().get_property(device, "FULL_DEVICE_NAME")
    except RuntimeError:
        return device
