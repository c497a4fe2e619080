"""ONNX rewrites that move fixed float work out of the way of a CPU engine.

Both exist because INT8 can only shrink the convolutions: on Fast-SCNN at 360x480 the full-resolution
tail (bilinear upsampling of the logits, ArgMax) and the fused preprocessing were more than half of
ONNX Runtime's INT8 run.

- `cut_upsample_tail`: the graph ends at the low-resolution logits; the session upsamples and takes
  the argmax on the host, boundary cells only (`edgeseg.runtime.tail`). Same labels, up to float rounding.
- `fold_preprocess`: for INT8 graphs, the per-channel normalization and the BGR->RGB flip go into the
  first convolution's weights, and the frame's uint8 values feed that convolution directly (one
  scalar zero point). Interior pixels compute exactly what the unfolded graph computes; the
  convolution's zero padding becomes the grey `zero_point` instead of the per-channel mean. The fold
  changes float weights before quantization, so the quantizer's weight range (reduced, [-64, 64],
  for ONNX Runtime) applies to the folded weights as to any other; frames in [0, 255] then meet
  them exactly as any u8 activation does.

Rewrites of the quantized graph itself are in `edgeseg.build.qdq_rewrite`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

LOGITS = "logits"
GREY = 115  # the padding value closest to ImageNet's mean in normalized units (R -0.15, G -0.02, B +0.20)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _producer(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def single_chain(users: dict, tensor: str, ops: tuple[str, ...]) -> list[onnx.NodeProto] | None:
    """The nodes `ops` that follow `tensor` one after another, each the only reader of the last; or None."""
    chain = []
    for op in ops:
        nexts = users.get(tensor, [])
        if len(nexts) != 1 or nexts[0].op_type != op:
            return None
        chain.append(nexts[0])
        tensor = nexts[0].output[0]
    return chain


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    _rename_input(graph, old, new)
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    for info in graph.value_info:
        if info.name == old:
            info.name = new


@dataclass(frozen=True)
class TailCut:
    output: str  # the new graph output: (N, C, h, w) float logits
    shape: list  # its shape, None where dynamic


def cut_upsample_tail(model: onnx.ModelProto) -> TailCut | None:
    """End the graph at the logits when it ends in Resize(bilinear, half-pixel) -> ArgMax(axis 1) [-> Cast].

    Returns None, leaving the model unchanged, for graphs that end any other way (full-resolution
    decoders such as U-Net have no upsampling to move).
    """
    graph = model.graph
    if len(graph.output) != 1:
        return None
    producer, users = _producer(graph), _consumers(graph)
    node = producer.get(graph.output[0].name)
    chain = []
    if node is not None and node.op_type == "Cast":
        chain.append(node)
        node = producer.get(node.input[0])
    if node is None or node.op_type != "ArgMax" or _attr(node, "axis", 0) != 1 or _attr(node, "select_last_index", 0):
        return None
    chain.append(node)
    resize = producer.get(node.input[0])
    if resize is None or resize.op_type != "Resize" or not _is_bilinear_half_pixel(resize):
        return None
    chain.append(resize)
    logits = resize.input[0]
    if any(len(users.get(n.output[0], [])) > 1 for n in chain[1:]):
        return None  # something else reads the upsampled logits or the argmax
    for n in chain:
        graph.node.remove(n)
    _rename(graph, logits, LOGITS)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT, None))
    inferred = onnx.shape_inference.infer_shapes(model)
    out = next(o for o in inferred.graph.output if o.name == LOGITS)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
    graph.output[0].CopyFrom(out)
    prune_initializers(model)
    return TailCut(LOGITS, dims)


def _is_bilinear_half_pixel(node: onnx.NodeProto) -> bool:
    return (_attr(node, "mode", "nearest") == "linear" and _attr(node, "antialias", 0) == 0
            and _attr(node, "coordinate_transformation_mode", "half_pixel") in ("half_pixel", "pytorch_half_pixel"))


@dataclass(frozen=True)
class FoldedInput:
    zero_point: int
    centred: str  # the float tensor (frame - zero_point) the first convolution reads: quantize it at scale 1
    conv: str  # the first convolution's name


def fold_preprocess(model: onnx.ModelProto, zero_point: int = GREY) -> FoldedInput | None:
    """Transpose -> flip -> Cast -> Mul(scale) -> Sub(shift) -> Conv becomes Transpose -> Cast -> Sub(zp) -> Conv'.

    Returns None, leaving the model unchanged, when the graph does not start with the fused
    preprocessing of `edgeseg.models.preprocess.Preprocess`.
    """
    graph = model.graph
    users = _consumers(graph)
    init = {t.name: t for t in graph.initializer}
    chain = single_chain(users, graph.input[0].name, ("Transpose", "Slice", "Cast", "Mul", "Sub", "Conv"))
    if chain is None:
        return None
    transpose, flip, cast, mul, sub, conv = chain
    consts = [_constant(init, mul.input[1]), _constant(init, sub.input[1]), _constant(init, conv.input[1])]
    if any(c is None for c in consts) or _attr(conv, "group", 1) != 1 or not _is_channel_flip(flip, init):
        return None
    scale, shift, weight = (c.astype(np.float32) for c in consts)
    if weight.shape[1] != 3 or scale.size != 3 or shift.size != 3:
        return None
    scale, shift = scale.reshape(3), shift.reshape(3)
    bias = _constant(init, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0], np.float32)
    # conv input channel c (RGB) is frame channel 2 - c (BGR): n_c = (x_{2-c} - zp) * s_c + (zp * s_c - t_c)
    new_weight = (weight * scale[None, :, None, None])[:, ::-1]
    new_bias = bias + (weight.sum(axis=(2, 3)) * (zero_point * scale - shift)[None, :]).sum(1)
    names = {"w": conv.name + "_folded_weight", "b": conv.name + "_folded_bias", "zp": "frame_zero_point"}
    graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(new_weight, np.float32), names["w"]),
                              numpy_helper.from_array(new_bias.astype(np.float32), names["b"]),
                              numpy_helper.from_array(np.array(zero_point, np.float32), names["zp"])])
    centred = sub.output[0]
    cast.input[0] = transpose.output[0]
    sub.input[:] = [cast.output[0], names["zp"]]
    conv.input[:] = [centred, names["w"], names["b"]]
    graph.node.remove(flip)
    graph.node.remove(mul)
    prune_initializers(model)
    return FoldedInput(zero_point, centred, conv.name)


def _constant(init: dict, name: str) -> np.ndarray | None:
    return numpy_helper.to_array(init[name]) if name in init else None


def _is_channel_flip(node: onnx.NodeProto, init: dict) -> bool:
    values = [_constant(init, name) for name in node.input[1:]]
    if len(values) < 4 or any(v is None for v in values):
        return False
    starts, ends, axes, steps = (int(v.ravel()[0]) for v in values[:4])
    return axes == 1 and steps == -1 and starts == -1 and ends <= -4


def elide_input_quantize(model: onnx.ModelProto, folded: FoldedInput) -> bool:
    """In the U8 Q/DQ graph, Cast -> Sub(zp) -> QuantizeLinear(scale 1, zp) gives back the uint8 frame
    itself: feed the frame to the DequantizeLinear and drop the three. True when it was done."""
    graph = model.graph
    producer, users = _producer(graph), _consumers(graph)
    init = {t.name: t for t in graph.initializer}
    quantizers = [n for n in users.get(folded.centred, []) if n.op_type == "QuantizeLinear"]
    if len(quantizers) != 1 or len(users[folded.centred]) != 1:
        return False
    q = quantizers[0]
    scale, zp = _constant(init, q.input[1]), _constant(init, q.input[2]) if len(q.input) > 2 else None
    if scale is None or zp is None or zp.dtype != np.uint8 or float(scale) != 1.0 or int(zp) != folded.zero_point:
        return False
    sub = producer[folded.centred]
    cast = producer[sub.input[0]]
    frames = cast.input[0]
    _rename_input(graph, q.output[0], frames)
    for node in (q, sub, cast):
        graph.node.remove(node)
    prune_initializers(model)
    return True


def prune_initializers(model: onnx.ModelProto) -> None:
    """Drop the initializers no node reads any more (ORT warns about each one at load)."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _rename_input(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
