"""Serving an ONNX Runtime engine: Triton's onnxruntime backend runs the very graph the session runs.

OpenVINO Model Server and DeepStream cannot run ONNX Runtime; what they get from this engine, and why,
is said here too, so that nothing outside the backend package asks which backend built an engine.
"""

from __future__ import annotations

from edgeseg.manifest import Manifest

TRITON_BACKEND = "onnxruntime"
TRITON_MODEL_FILE = "model.onnx"
# The engine was built for, and measured on, the CPU execution provider; a Q/DQ U8S8 graph on Triton's
# CUDA provider would run differently from what the build measured.
INSTANCE_KIND = "KIND_CPU"
RUNTIME = "onnxruntime"  # the library that runs this engine's served graph here, for the export's parity check


def triton_parameters(manifest: Manifest, batched: bool) -> dict[str, str]:
    return {}


def served_graph(manifest: Manifest, target: str) -> tuple[str, str]:
    """(the engine file a server loads, a note when the server runs it differently from the session)."""
    engine = manifest.backend["engine"]
    if target == "ovms":
        return engine, ("OpenVINO Model Server runs this ONNX graph with OpenVINO, not ONNX Runtime: its labels are "
                        "checked against the engine's below; an OpenVINO engine (edgeseg build --backend openvino) "
                        "is what OVMS runs best")
    return engine, ""


def deepstream_graph(manifest: Manifest) -> tuple[str, int, str]:
    """(ONNX for DeepStream to build its TensorRT engine from, nvinfer network-mode, note)."""
    return float_graph(manifest, "ONNX Runtime's U8S8 Q/DQ graph (asymmetric uint8 activations)")


def float_graph(manifest: Manifest, int8_kind: str) -> tuple[str, int, str]:
    """The FP32 export, for DeepStream: what its TensorRT builds FP32 or FP16 from (network-mode 0 or 2)."""
    requested = manifest.precision["requested"]
    if requested == "int8":
        return manifest.onnx["file"], 2, (
            f"DeepStream builds TensorRT engines, which cannot take this engine's INT8 ({int8_kind}): DeepStream "
            "gets the float graph in FP16 (network-mode=2); for INT8 on DeepStream build a TensorRT engine "
            "(edgeseg build --backend tensorrt --precision int8 --trt-int8 explicit) and export that")
    return manifest.onnx["file"], {"fp32": 0, "fp16": 2}[requested], ""
