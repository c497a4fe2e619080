"""ONNX Runtime engines: the build-time half of the backend (FP32 graph or a Q/DQ INT8 graph)."""

from __future__ import annotations

from pathlib import Path

from edgeseg.backends.onnxruntime.session import open_session
from edgeseg.build.spec import BuildSpec, Built
from edgeseg.errors import BadInputError
from edgeseg.manifest import Manifest

# The engine is the exported graph itself: ORT optimizes it at load for the CPU it finds there.
ENGINE_FILE = "model.onnx"


INT8_FILE = "model.int8.onnx"  # the Q/DQ graph: also what TensorRT builds INT8 from


FLOAT_PRECISIONS = ("fp32",)  # what an INT8 build is timed against (the CPU provider has no FP16 kernels)


def build(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> Built:
    import onnxruntime as ort

    if spec.precision == "fp16":
        # The x86 CPU provider has no FP16 convolution kernels; an FP16 graph would either fail to load
        # or run through Cast nodes at FP32 speed while claiming FP16.
        raise BadInputError("ONNX Runtime's CPU provider has no FP16 kernels for this network",
                            "build fp16 with --backend openvino or tensorrt, or use --precision fp32 or int8")
    engine, options, note = ENGINE_FILE, {"provider": "CPUExecutionProvider"}, ""
    if spec.precision == "int8":
        result, report = _int8(onnx_path, out_dir, spec)
        print(result.summary())
        engine = INT8_FILE
        options.update(quantization=result.__dict__ | {"path": INT8_FILE})
        # What the graph needs from the CPU it runs on, checked at load (session.check_int8_cpu): full-range
        # U8S8 weights saturate ORT's vpmaddubsw pairs on x86 CPUs without VNNI (edgeseg.runtime.cpu)
        from edgeseg.runtime.cpu import requirement_for_weights

        options.update(int8_weights=result.weights, requires=requirement_for_weights(result.widest_weight))
        if report is not None:
            options["budget"] = report.to_dict()
            print(report.summary())
        note = (f"Q/DQ INT8, U8S8, {result.weights} weights ({result.quantized_nodes} quantized tensors; "
                f"runs on: {options['requires']})"
                + (f"; kept in fp32: {_listed(result.excluded)}" if result.excluded else "")
                + (f"; {result.folded_input['padding']}" if result.folded_input else "")
                + (f"; {result.shared_concats} concat(s) copy at one shared scale" if result.shared_concats else ""))
    session = open_session(out_dir / engine, threads=0)  # prove it loads before it is published
    del session
    files = [engine] + ([ENGINE_FILE] if engine != ENGINE_FILE else [])
    not_int8 = {}
    if spec.precision == "int8":
        from edgeseg.build.quantize import float_nodes

        not_int8 = float_nodes(out_dir / INT8_FILE)
    return Built(files, spec.precision, "CPU", ort.__version__, note, options, not_int8)


def _listed(names: list[str], shown: int = 6) -> str:
    """Node names for the note: all of a few, or a count and the first (an instance graph keeps ~1000 float)."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{len(names)} nodes ({', '.join(names[:3])}, ...; all in backend.options.quantization.excluded)"


def _int8(onnx_path: Path, out_dir: Path, spec: BuildSpec):
    """U8S8 Q/DQ: ORT's fast x86 INT8 kernels (S8S8 ran 1.19x over FP32 here, U8S8 2.03x)."""
    from edgeseg.build.quantize import qdq_from_onnx

    if spec.budget is None:
        return qdq_from_onnx(onnx_path, out_dir / INT8_FILE, spec.calibration, spec.calib_method,
                             spec.float_node_names(onnx_path), activations="u8",
                             reduce_range=not spec.options.int8_vnni_only), None
    from edgeseg.build.budget import budgeted_qdq
    from edgeseg.measure.evaluate import Predictor, as_predictor

    def predictor_for(graph: Path) -> Predictor:
        session = open_session(graph, threads=0)
        name = session.get_inputs()[0].name
        return as_predictor(lambda frames: session.run(None, {name: frames})[0])

    return budgeted_qdq(onnx_path, out_dir / INT8_FILE, spec, "u8", predictor_for, not spec.options.int8_vnni_only)


def int8_diagnosis(root: Path, manifest: Manifest) -> str:
    """Why an INT8 graph is slow here: the float islands between its INT8 layers."""
    from edgeseg.build.quantize import float_islands

    islands = float_islands(root / manifest.backend["engine"])
    if not islands:
        return "every layer runs in INT8; the float graph's memory-bound ops dominate at this size"
    listed = ", ".join(f"{op} x{n}" for op, n in sorted(islands.items(), key=lambda kv: -kv[1]))
    return (f"{sum(islands.values())} ops compute in float between INT8 layers ({listed}); each costs a "
            "dequantize and a requantize")
