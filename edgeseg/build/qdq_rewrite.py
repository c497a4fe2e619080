"""Rewrites of a quantized (Q/DQ) graph that make ONNX Runtime's INT8 kernels do less work.

Both keep the integer arithmetic of the graph they start from, or round only where the mIoU budget
measures it:

- `share_concat_scales`: every input of a Concat takes the largest scale of its group, so the INT8
  concat is a copy instead of a requantization of every element (DeepLabV3+'s decoder concat on
  ONNX Runtime: 2.07 -> 0.67 ms; TensorRT too fuses concats whose inputs share a scale).
- `blocks_into_first_conv`: the 3x3 stride-2 convolution on the 3-channel frame becomes a 2x2
  stride-1 convolution on 2x2 pixel blocks (12 channels). Same products, same int32 sums: the
  output is bit-identical. ONNX Runtime's U8S8 kernels are slow on 3 input channels: Fast-SCNN's
  first convolution at 360x480 took 2.3-3.0 ms, the rewritten one 0.8-0.9 ms plus 0.5 ms to form
  the blocks (two row slices and a concat). The int8 values are copied and zeros added, so the
  widest weight is unchanged and reduced-range weights stay within [-64, 64]: "bit-identical" holds
  on every x86 CPU only because no u8 x s8 pair can saturate (`edgeseg.runtime.cpu`); with
  full-range weights the two layouts pair different products, and on AVX2 they clip differently.

`widest_int8_weight` reads back the largest int8 weight a matrix product takes, after all rewrites:
the quantizer refuses a reduced-range graph whose weights came out wider.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeseg.build.graph_rewrite import _attr, _consumers, _producer, prune_initializers, single_chain

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def blocks_into_first_conv(model: onnx.ModelProto) -> bool:
    """frames (N, H, W, C) uint8 -> Transpose -> DequantizeLinear -> Conv 3x3/2 becomes frames ->
    even and odd rows -> pixel pairs -> 2x2 blocks (N, H/2, W/2, 4C) -> Transpose -> DequantizeLinear
    -> Conv 2x2/1 with padding only above and left. True when done; H and W must be even."""
    graph = model.graph
    users, producer = _consumers(graph), _producer(graph)
    init = {t.name: t for t in graph.initializer}
    frames = graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in frames.type.tensor_type.shape.dim]
    chain = single_chain(users, frames.name, ("Transpose", "DequantizeLinear", "Conv"))
    if chain is None or len(dims) != 4 or frames.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        return False
    transpose, dequantize, conv = chain
    _, height, width, channels = dims
    weight_dq = producer.get(conv.input[1])
    if (list(_attr(transpose, "perm", [])) != [0, 3, 1, 2] or not _is_3x3_stride2_pad1(conv)
            or not height or not width or height % 2 or width % 2 or weight_dq is None
            or weight_dq.op_type != "DequantizeLinear" or weight_dq.input[0] not in init
            or len(users.get(weight_dq.output[0], [])) != 1):
        return False
    weight = numpy_helper.to_array(init[weight_dq.input[0]])
    frame_params = [init.get(name) for name in dequantize.input[1:]]
    if weight.shape[1:] != (channels, 3, 3) or any(t is None or t.dims not in ([], [1]) for t in frame_params):
        return False  # the frame's scale and zero point must be one for all channels, as the fold makes them
    weight_zero = init.get(weight_dq.input[2]) if len(weight_dq.input) > 2 and weight_dq.input[2] else None
    if weight_zero is not None and numpy_helper.to_array(weight_zero).any():
        return False  # the new zero taps must dequantize to 0: symmetric weights only
    init[weight_dq.input[0]].CopyFrom(numpy_helper.from_array(_block_weight(weight), weight_dq.input[0]))
    constants = {"frame_rows_from_0": [0], "frame_rows_from_1": [1], "frame_rows_end": [height], "frame_rows_axis": [1],
                 "frame_rows_step": [2], "frame_pairs_shape": [0, height // 2, width // 2, 2 * channels]}
    graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items())
    new_nodes = []
    for parity, start in (("even", "frame_rows_from_0"), ("odd", "frame_rows_from_1")):
        new_nodes += [helper.make_node("Slice", [frames.name, start, "frame_rows_end", "frame_rows_axis", "frame_rows_step"],
                                       [f"frame_{parity}_rows"], name=f"frame_{parity}_rows"),
                      helper.make_node("Reshape", [f"frame_{parity}_rows", "frame_pairs_shape"], [f"frame_{parity}_pairs"],
                                       name=f"frame_{parity}_pairs")]
    new_nodes.append(helper.make_node("Concat", ["frame_even_pairs", "frame_odd_pairs"], ["frame_blocks"], axis=3,
                                      name="frame_blocks"))
    at = list(graph.node).index(transpose)
    for offset, node in enumerate(new_nodes):
        graph.node.insert(at + offset, node)
    transpose.input[0] = "frame_blocks"
    _set_ints(conv, kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0])
    stale = {transpose.output[0], dequantize.output[0]}
    keep = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    prune_initializers(model)
    return True


def _is_3x3_stride2_pad1(conv: onnx.NodeProto) -> bool:
    return (list(_attr(conv, "kernel_shape", [])) == [3, 3] and list(_attr(conv, "strides", [1, 1])) == [2, 2]
            and list(_attr(conv, "pads", [0, 0, 0, 0])) == [1, 1, 1, 1] and _attr(conv, "group", 1) == 1
            and list(_attr(conv, "dilations", [1, 1])) == [1, 1] and _attr(conv, "auto_pad", "NOTSET") == "NOTSET")


def _block_weight(weight: np.ndarray) -> np.ndarray:
    """(O, C, 3, 3) -> (O, 4C, 2, 2). Block row a of the kernel covers block y-1+a; inside a block,
    row b (0 even, 1 odd) is source row 2(y-1+a)+b, i.e. kernel row 2a+b-1 (likewise for columns).
    Channel order is that of the blocks: (row parity, column parity, colour)."""
    out, channels = weight.shape[:2]
    blocks = np.zeros((out, 4 * channels, 2, 2), weight.dtype)
    for a_y in range(2):
        for b_y in range(2):
            for a_x in range(2):
                for b_x in range(2):
                    k_y, k_x = 2 * a_y + b_y - 1, 2 * a_x + b_x - 1
                    if k_y >= 0 and k_x >= 0:
                        first = (2 * b_y + b_x) * channels
                        blocks[:, first:first + channels, a_y, a_x] = weight[:, :, k_y, k_x]
    return blocks


def _set_ints(node: onnx.NodeProto, **values) -> None:
    for attribute in node.attribute:
        if attribute.name in values:
            attribute.ints[:] = values.pop(attribute.name)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in values.items())


def widest_int8_weight(model: onnx.ModelProto) -> int:
    """The largest |int8 weight| a Conv/ConvTranspose/Gemm/MatMul of the Q/DQ graph reads (its weight
    input dequantized from a constant), after every rewrite: what decides whether ONNX Runtime's U8S8
    pairs can saturate on x86 CPUs without VNNI (`edgeseg.runtime.cpu`). The raw int8 values count,
    not value minus zero point: the kernels multiply the raw bytes and correct for zero points after."""
    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    producer = _producer(graph)
    widest = 0
    for node in graph.node:
        dq = producer.get(node.input[1]) if node.op_type in WEIGHTED_OPS and len(node.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in init:
            continue
        weight = init[dq.input[0]]
        if weight.data_type == onnx.TensorProto.INT8 and _size(weight):
            widest = max(widest, int(np.abs(numpy_helper.to_array(weight).astype(np.int32)).max()))
    return widest


def share_concat_scales(model: onnx.ModelProto) -> int:
    """Give every quantized Concat one scale for its inputs and output; returns how many changed.

    Each input's scale (shared by name with its QuantizeLinear, and with the ops that keep it, such as
    a Resize before the Concat) becomes the largest of the group. A larger scale never clips more: it
    only rounds the narrower inputs more coarsely, which the mIoU budget measures. Groups whose zero
    points differ are left alone. Repeated until stable, since a scale may belong to two concats.
    """
    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    producer, users = _producer(graph), _consumers(graph)
    changed: set[str] = set()
    for _ in range(len(graph.node)):
        grew = False
        for node in graph.node:
            if node.op_type != "Concat":
                continue
            group = _concat_quant_params(node, producer, users, init)
            if group is None:
                continue
            scales, zero_points = group
            if len({_scalar(init[z]) for z in zero_points}) != 1:
                continue
            widest = max(_scalar(init[s]) for s in scales)
            narrower = [name for name in scales if _scalar(init[name]) != widest]
            if any(_feeds_weighted_op(name, users) for name in narrower):
                continue  # its bias was quantized at input scale x weight scale: ORT would stop fusing the op
            for name in narrower:
                dtype = numpy_helper.to_array(init[name]).dtype
                init[name].CopyFrom(numpy_helper.from_array(np.array(widest, dtype), name))
                changed.add(node.name or node.output[0])
                grew = True
        if not grew:
            break
    return len(changed)


def _concat_quant_params(node, producer, users, init) -> tuple[list[str], list[str]] | None:
    """(scale names, zero-point names) of a Concat whose inputs are all dequantized and whose output
    is only quantized, with scalar parameters; None for any other Concat."""
    inputs = [producer.get(name) for name in node.input]
    if not inputs or any(dq is None or dq.op_type != "DequantizeLinear" or not _is_activation(dq, producer)
                         for dq in inputs):
        return None  # a dequantized constant would change value with its scale
    ends = inputs + users.get(node.output[0], [])
    if any(n.op_type not in ("DequantizeLinear", "QuantizeLinear") for n in ends):
        return None
    scales = [n.input[1] for n in ends]
    zero_points = [n.input[2] for n in ends if len(n.input) > 2]
    names = scales + zero_points
    if len(zero_points) != len(scales) or any(name not in init or _size(init[name]) != 1 for name in names):
        return None
    return list(dict.fromkeys(scales)), list(dict.fromkeys(zero_points))


def _is_activation(dequantize: onnx.NodeProto, producer) -> bool:
    """A DequantizeLinear of an activation: fed by a QuantizeLinear with the same scale and zero point."""
    quantize = producer.get(dequantize.input[0])
    return quantize is not None and quantize.op_type == "QuantizeLinear" and list(quantize.input[1:]) == list(dequantize.input[1:])


def _feeds_weighted_op(scale: str, users) -> bool:
    dequantized = [n.output[0] for n in users.get(scale, []) if n.op_type == "DequantizeLinear"]
    return any(u.op_type in WEIGHTED_OPS for name in dequantized for u in users.get(name, []))


def _scalar(tensor: onnx.TensorProto):
    return numpy_helper.to_array(tensor).reshape(()).item()


def _size(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims)) if tensor.dims else 1
