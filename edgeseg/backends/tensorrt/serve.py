"""Serving a TensorRT engine: Triton's tensorrt backend loads the plan; DeepStream builds its own.

A plan only runs on the TensorRT version and GPU model it was built for, so it is served from the machine
kind that built it. Its inputs and outputs are read from the plan where TensorRT runs; elsewhere from the
ONNX graph it was built from (same names, dtypes and shapes: the build keeps FP32/uint8 I/O), which is
what the export's checks then compare the configuration with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeseg.backends.tensorrt.int8 import QDQ_FILE
from edgeseg.manifest import Manifest
from edgeseg.serve.tensors import Signature, Tensor

TRITON_BACKEND = "tensorrt"
TRITON_MODEL_FILE = "model.plan"
INSTANCE_KIND = "KIND_GPU"
RUNTIME = None  # TensorRT needs an NVIDIA GPU: no parity run on machines without one


def triton_parameters(manifest: Manifest, batched: bool) -> dict[str, str]:
    return {}


def served_graph(manifest: Manifest, target: str) -> tuple[str, str]:
    if target == "ovms":
        return manifest.onnx["file"], (
            "OpenVINO Model Server cannot load a TensorRT plan: it gets the FP32 ONNX graph the plan was built from "
            f"(precision fp32, not this engine's {manifest.precision['as_run']}); build an OpenVINO engine for OVMS")
    return manifest.backend["engine"], ""


def deepstream_graph(manifest: Manifest) -> tuple[str, int, str]:
    """Explicit INT8 engines were built from a symmetric Q/DQ graph TensorRT takes as it is (network-mode=1);
    implicit INT8 calibrated inside TensorRT, which DeepStream would need as a calibration table."""
    requested = manifest.precision["requested"]
    if requested == "int8" and manifest.backend.get("options", {}).get("int8_mode") == "explicit":
        return QDQ_FILE, 1, ""
    if requested == "int8":
        return manifest.onnx["file"], 2, ("this engine calibrated INT8 inside TensorRT (implicit); DeepStream gets the "
                                          "float graph in FP16 (network-mode=2); rebuild with --trt-int8 explicit "
                                          "for INT8 on DeepStream")
    return manifest.onnx["file"], {"fp32": 0, "fp16": 2}[requested], ""


def copy_graph(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)


def _deserialized(plan: Path):
    """(tensorrt, the plan's engine), or None where TensorRT cannot run or read it."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    from edgeseg.backends.tensorrt.session import Logger, init_plugins

    init_plugins(trt)
    engine = trt.Runtime(Logger(trt)).deserialize_cuda_engine(plan.read_bytes())
    return None if engine is None else (trt, engine)


def plan_signature(plan: Path) -> Signature | None:
    """The plan's I/O tensors, or None where TensorRT cannot run."""
    found = _deserialized(plan)
    if found is None:
        return None
    trt, engine = found
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        shape = tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(name))
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        (inputs if is_input else outputs).append(Tensor(name, dtype, shape))
    return Signature(tuple(inputs), tuple(outputs))


def profile_max_batch(plan: Path, manifest: Manifest) -> int | None:
    """The largest batch the plan's optimization profile takes (Triton's max_batch_size may not exceed it)."""
    recorded = manifest.backend.get("options", {}).get("max_batch")
    if recorded:
        return int(recorded)
    found = _deserialized(plan)
    if found is None:
        return None
    trt, engine = found
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            return int(engine.get_tensor_profile_shape(name, 0)[2][0])
    return None
