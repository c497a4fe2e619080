"""ONNX variants of an engine's graph for servers that cannot do what the edgeseg session does.

- `append_tail`: a graph that ends at low-resolution logits (the session upsamples and takes the argmax on
  the host, `edgeseg.runtime.tail`) gets that work back at its end, so a server returns label maps:
  Resize (linear, half-pixel, the session's convention) to the input's height and width, then ArgMax.
- `float_frames`: DeepStream's nvinfer converts frames to float32 before the engine (its conversion
  kernels write float), so a graph that takes uint8 frames takes float32 frames holding the same 0..255
  values instead. Where the frames only pass layout operations before a cast to float, the cast becomes
  the identity; otherwise a cast to uint8 is put in front. Both are exact for whole-number values.
- `prepend_channel_scale`: nvinfer normalizes with one scale for three channels; a graph that takes
  normalized float NCHW gets the per-channel 1/std as its first operation, so nvinfer's part is exact.
- `cast_output`: nvinfer binds FLOAT, HALF, INT8 and INT32 tensors only, so uint8 label maps become int32.
- `append_softmax`: nvinfer's semantic segmentation parser keeps a class only where its score beats
  `segmentation-threshold` and -1 (its starting maximum): raw logits below -1 would be left unlabelled.
  Softmax does not change the argmax and puts every winning score above 1/C.

Each is checked by `onnx.checker` and ONNX shape inference, and run against the original by the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgeseg.serve.tensors import Signature, Tensor

LABELS = "labels"
PROBS = "probs"
LAYOUT_OPS = {"Transpose", "Reshape", "Slice", "Concat", "Squeeze", "Unsqueeze", "Identity", "Split", "Flatten"}


def signature(path: Path) -> Signature:
    """The graph's inputs (initializers excluded) and outputs, with symbolic dimensions as None."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    return Signature(tuple(_tensor(v) for v in model.graph.input if v.name not in weights),
                     tuple(_tensor(v) for v in model.graph.output))


def _tensor(value: onnx.ValueInfoProto) -> Tensor:
    kind = value.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(kind.elem_type)).name if kind.elem_type else "unknown"
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in kind.shape.dim)
    return Tensor(value.name, dtype, shape)


def has_qdq(path: Path) -> bool:
    """Whether the graph carries its own INT8 ranges (QuantizeLinear/DequantizeLinear pairs)."""
    model = onnx.load(str(path), load_external_data=False)
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


def append_tail(src: Path, dst: Path, frames: str, layout: str, classes: int) -> None:
    """src's single (N, C, h, w) float output -> (N, H, W) class ids at the size of input `frames`."""
    model = onnx.load(str(src))
    graph = model.graph
    _one_output(graph, "append the tail")
    logits = graph.output[0].name
    spatial = (1, 3) if layout == "NHWC" else (2, 4)
    label_type = TensorProto.UINT8 if classes <= 256 else TensorProto.INT32
    const = _constants(graph, {"serve_nc_begin": [0], "serve_nc_end": [2], "serve_hw_begin": [spatial[0]],
                               "serve_hw_end": [spatial[1]]})
    graph.node.extend([
        helper.make_node("Shape", [logits], ["serve_logits_shape"], name="serve_logits_shape"),
        helper.make_node("Slice", ["serve_logits_shape", const["serve_nc_begin"], const["serve_nc_end"]],
                         ["serve_nc"], name="serve_nc"),
        helper.make_node("Shape", [frames], ["serve_frames_shape"], name="serve_frames_shape"),
        helper.make_node("Slice", ["serve_frames_shape", const["serve_hw_begin"], const["serve_hw_end"]],
                         ["serve_hw"], name="serve_hw"),
        helper.make_node("Concat", ["serve_nc", "serve_hw"], ["serve_sizes"], axis=0, name="serve_sizes"),
        helper.make_node("Resize", [logits, "", "", "serve_sizes"], ["serve_upsampled"], mode="linear",
                         coordinate_transformation_mode="half_pixel", name="serve_upsample"),
        helper.make_node("ArgMax", ["serve_upsampled"], ["serve_argmax"], axis=1, keepdims=0, name="serve_argmax"),
        helper.make_node("Cast", ["serve_argmax"], [LABELS], to=label_type, name="serve_labels"),
    ])
    batch = _dims(graph.output[0])[0]
    size = [d for i, d in enumerate(_dims(_value(graph.input, frames))) if spatial[0] <= i < spatial[1]]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(LABELS, label_type, [batch or "N", *(d or None for d in size)]))
    _save_checked(model, dst)


def float_frames(src: Path, dst: Path, frames: str) -> str:
    """The uint8 input `frames` -> float32 with the same values. Returns how: 'retyped' or 'cast'."""
    model = onnx.load(str(src))
    graph = model.graph
    source = _value(graph.input, frames)
    if source.type.tensor_type.elem_type != TensorProto.UINT8:
        raise ValueError(f"input {frames!r} is not uint8")
    if _only_layout_then_float(graph, frames):
        source.type.tensor_type.elem_type = TensorProto.FLOAT
        _drop_inferred_types(graph)
        how = "retyped"
    else:
        renamed = frames + "_uint8"
        for node in graph.node:
            node.input[:] = [renamed if name == frames else name for name in node.input]
        graph.node.insert(0, helper.make_node("Cast", [frames], [renamed], to=TensorProto.UINT8, name="serve_to_uint8"))
        source.type.tensor_type.elem_type = TensorProto.FLOAT
        how = "cast"
    _save_checked(model, dst)
    return how


def prepend_channel_scale(src: Path, dst: Path, frames: str, scales: list[float]) -> None:
    """The NCHW float input `frames` multiplied by one factor per channel before the graph reads it: with
    nvinfer's single net-scale-factor of 1/255 and offsets of 255 * mean, factors of 1/std make its
    normalization exactly the engine's (x / 255 - mean) / std."""
    model = onnx.load(str(src))
    graph = model.graph
    _value(graph.input, frames)
    scaled = frames + "_per_channel"
    for node in graph.node:
        node.input[:] = [scaled if name == frames else name for name in node.input]
    graph.initializer.append(helper.make_tensor("serve_channel_scale", TensorProto.FLOAT, [1, len(scales), 1, 1],
                                                [float(v) for v in scales]))
    graph.node.insert(0, helper.make_node("Mul", [frames, "serve_channel_scale"], [scaled], name="serve_channel_scale"))
    _save_checked(model, dst)


def cast_output(src: Path, dst: Path, dtype: int) -> None:
    """src's single output cast to `dtype` (an onnx.TensorProto type), under its own name."""
    model = onnx.load(str(src))
    graph = model.graph
    _one_output(graph, "cast the output")
    out = graph.output[0]
    inner = out.name + "_uncast"
    for node in graph.node:
        node.output[:] = [inner if name == out.name else name for name in node.output]
    graph.node.append(helper.make_node("Cast", [inner], [out.name], to=dtype, name="serve_cast_output"))
    dims = _dims(out)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(out.name, dtype, [d or None for d in dims]))
    _save_checked(model, dst)


def append_softmax(src: Path, dst: Path) -> None:
    """src's single (N, C, h, w) float output -> its softmax over C, named `probs`."""
    model = onnx.load(str(src))
    graph = model.graph
    _one_output(graph, "append a softmax")
    out = graph.output[0]
    graph.node.append(helper.make_node("Softmax", [out.name], [PROBS], axis=1, name="serve_softmax"))
    dims = _dims(out)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(PROBS, TensorProto.FLOAT, [d or None for d in dims]))
    _save_checked(model, dst)


def _only_layout_then_float(graph: onnx.GraphProto, frames: str) -> bool:
    """Every path from `frames` passes layout operations only, then a Cast to float."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    pending, seen = [frames], set()
    while pending:
        tensor = pending.pop()
        if tensor in outputs or not users.get(tensor):
            return False
        for node in users[tensor]:
            if id(node) in seen:
                continue
            seen.add(id(node))
            if (node.op_type == "Cast" and _attr(node, "to") == TensorProto.FLOAT) or node.op_type == "Shape":
                continue  # a cast to float ends the path; Shape reads no values
            if node.op_type not in LAYOUT_OPS or node.input[0] != tensor:
                return False
            pending += list(node.output)
    return True


def _drop_inferred_types(graph: onnx.GraphProto) -> None:
    """Intermediate types recorded for uint8 layout tensors would now be wrong; shape inference redoes them."""
    del graph.value_info[:]


def _attr(node: onnx.NodeProto, name: str):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _one_output(graph: onnx.GraphProto, what: str) -> None:
    if len(graph.output) != 1:
        raise ValueError(f"cannot {what}: the graph has {len(graph.output)} outputs, not one")


def _value(values, name: str) -> onnx.ValueInfoProto:
    found = next((v for v in values if v.name == name), None)
    if found is None:
        raise ValueError(f"the graph has no input {name!r}")
    return found


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value.type.tensor_type.shape.dim]


def _constants(graph: onnx.GraphProto, values: dict[str, list[int]]) -> dict[str, str]:
    for name, data in values.items():
        graph.initializer.append(helper.make_tensor(name, TensorProto.INT64, [len(data)], data))
    return {name: name for name in values}


def _save_checked(model: onnx.ModelProto, dst: Path) -> None:
    onnx.checker.check_model(model)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(dst))
