"""Serving an OpenVINO engine: Triton's openvino backend and OpenVINO Model Server run its IR.

The IR is the INT8 model NNCF made, so a server that should return label maps gets the host tail
(`edgeseg.runtime.tail`) appended here with OpenVINO's own operations (Interpolate, linear, half-pixel;
TopK k=1 with stable order, so ties go to the lower class as with argmax), not by re-quantizing the graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeseg.manifest import Manifest
from edgeseg.serve.tensors import Signature, Tensor

TRITON_BACKEND = "openvino"
TRITON_MODEL_FILE = "model.xml"
INSTANCE_KIND = "KIND_CPU"  # Triton's OpenVINO backend runs on the CPU instance kind; TARGET_DEVICE picks the device
RUNTIME = "openvino"
LABELS = "labels"


def triton_parameters(manifest: Manifest, batched: bool) -> dict[str, str]:
    """The backend sets the model's batch to max_batch_size: without padding a smaller batch is refused."""
    params = {"PERFORMANCE_HINT": "LATENCY", "TARGET_DEVICE": manifest.backend.get("options", {}).get("device", "CPU")}
    if batched:
        params["ENABLE_BATCH_PADDING"] = "YES"
    return params


def ovms_plugin_config(manifest: Manifest) -> dict[str, str]:
    """What the session compiled with: the precision hint keeps bf16-capable CPUs on what was measured."""
    config = {"PERFORMANCE_HINT": "LATENCY"}
    hint = manifest.backend.get("options", {}).get("inference_precision_hint")
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    return config


def served_graph(manifest: Manifest, target: str) -> tuple[str, str]:
    if target == "triton":
        return manifest.backend["engine"], (
            "Triton's openvino backend takes no f32 precision hint (only HINT_BF16): on CPUs with bf16 (AVX512_BF16, "
            "AMX) OpenVINO runs the float layers in bf16, which the parity here (f32) did not measure; OVMS takes "
            "the hint (--to ovms)")
    return manifest.backend["engine"], ""


def deepstream_graph(manifest: Manifest) -> tuple[str, int, str]:
    from edgeseg.backends.onnxruntime.serve import float_graph

    return float_graph(manifest, "an OpenVINO IR quantized by NNCF")


def copy_graph(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_suffix(".bin"), dst.with_suffix(".bin"))


def signature(xml: Path) -> Signature:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return Signature(tuple(_tensor(p) for p in model.inputs), tuple(_tensor(p) for p in model.outputs))


def _tensor(port) -> Tensor:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return Tensor(port.get_any_name(), np.dtype(port.get_element_type().to_dtype()).name, shape)


def append_tail(src: Path, dst: Path, frames: str, layout: str, classes: int) -> None:
    """The IR's single (N, C, h, w) output -> (N, H, W) class ids at the size of input `frames`."""
    import openvino as ov
    import openvino.opset11 as ops11
    import openvino.opset13 as ops

    model = ov.Core().read_model(str(src))
    if len(model.outputs) != 1:
        raise ValueError(f"cannot append the tail: the model has {len(model.outputs)} outputs, not one")
    source = next(p for p in model.inputs if frames in p.get_names())
    logits = model.outputs[0].get_node().input_value(0)
    spatial = [1, 2] if layout == "NHWC" else [2, 3]
    size = ops.gather(ops.shape_of(source, "i64"), ops.constant(np.array(spatial, np.int64)), ops.constant(np.int64(0)))
    upsampled = ops11.interpolate(logits, size, mode="linear", shape_calculation_mode="sizes",
                                  axes=ops.constant(np.array([2, 3], np.int64)),
                                  coordinate_transformation_mode="half_pixel", antialias=False)
    top = ops11.topk(upsampled, ops.constant(np.int64(1)), axis=1, mode="max", sort="value",
                     index_element_type="i32", stable=True)
    labels = ops.convert(ops.squeeze(top.output(1), ops.constant(np.array([1], np.int64))),
                         "u8" if classes <= 256 else "i32")
    labels.output(0).set_names({LABELS})
    ov.save_model(ov.Model([ops.result(labels)], model.get_parameters(), model.get_friendly_name()), str(dst),
                  compress_to_fp16=False)


def runner(path: Path, hint: str | None = None):
    """feeds -> outputs for an IR or an ONNX graph compiled by OpenVINO on the CPU, as OVMS and Triton's
    openvino backend would run it."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    compiled = ov.Core().compile_model(str(path), "CPU", config)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = compiled(feeds)
        return [np.asarray(result[port]) for port in compiled.outputs]

    return run
