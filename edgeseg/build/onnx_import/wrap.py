"""The user's graph wrapped into edgeseg's deployment graph, its own nodes untouched: uint8 BGR frames
(N, H, W, 3) in, with the declared preprocessing in front (layout, colour order, scale, mean/std,
padding to the size divisor), and class ids or the low-resolution scores for the host tail behind.

The preprocessing nodes follow `edgeseg.models.preprocess.Preprocess`'s export (Transpose, channel
flip, Cast, Mul, Sub), so the INT8 rewrites that fold it into the first convolution apply to foreign
graphs as to zoo ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeseg.build.onnx_import.graph import GraphFacts
from edgeseg.build.onnx_import.probe import OutputFacts

FRAMES, LABELS, LOGITS = "frames", "labels", "logits"


@dataclass(frozen=True)
class Preprocessing:
    """The declared preprocessing of a float-input graph, or only the colour order of a uint8 one."""

    channel_order: str  # "rgb" or "bgr": what the graph expects
    value_range: int | None = None  # 1 or 255; None for uint8-input graphs
    mean: tuple[float, float, float] | None = None  # in the graph's channel order and value range
    std: tuple[float, float, float] | None = None
    size_divisor: int = 1

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """graph input = frame value (0-255) * scale - shift, per channel in the graph's order."""
        k = 255.0 / self.value_range
        std, mean = np.asarray(self.std, np.float64), np.asarray(self.mean, np.float64)
        return (1.0 / (k * std)).astype(np.float32), (mean / std).astype(np.float32)

    def canonical(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) as the manifest states them: RGB order, 0-1 scale (what a zoo engine records)."""
        if self.mean is None:
            return (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # the graph normalizes uint8 frames itself
        order = slice(None) if self.channel_order == "rgb" else slice(None, None, -1)
        mean = tuple(round(float(v) / self.value_range, 6) for v in self.mean[order])
        std = tuple(round(float(v) / self.value_range, 6) for v in self.std[order])
        return mean, std

    def padded(self, size: tuple[int, int]) -> tuple[int, int]:
        d = self.size_divisor
        return (-(-size[0] // d) * d, -(-size[1] // d) * d)


@dataclass(frozen=True)
class Wrapped:
    model: onnx.ModelProto
    output_kind: str  # "labels", "logits" or "lowres-logits"
    added: list[str] = field(default_factory=list)  # what was put around the graph, for the manifest


class _Names:
    """Fresh tensor and node names that cannot collide with the user's."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.taken = {t.name for t in graph.initializer} | {v.name for v in graph.input} | \
            {name for n in graph.node for name in list(n.input) + list(n.output) + [n.name]}

    def __call__(self, base: str) -> str:
        name, i = f"edgeseg/{base}", 1
        while name in self.taken:
            i += 1
            name = f"edgeseg/{base}_{i}"
        self.taken.add(name)
        return name


@dataclass
class _Builder:
    """Nodes and constants added around the user's graph, and what they do (for the manifest)."""

    names: _Names
    opset: int
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def const(self, base: str, value) -> str:
        name = self.names(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.names(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.names(base + "_node"), **attrs))
        return out

    def slice(self, tensor: str, starts, ends, axes, base: str, steps=None) -> str:
        args = [self.const(base + "_starts", np.array(starts, np.int64)), self.const(base + "_ends", np.array(ends, np.int64)),
                self.const(base + "_axes", np.array(axes, np.int64))]
        if steps is not None:
            args.append(self.const(base + "_steps", np.array(steps, np.int64)))
        return self.node("Slice", [tensor, *args], base)

    def rename_last(self, name: str) -> None:
        self.nodes[-1].output[0] = name


def wrap(facts: GraphFacts, out: OutputFacts, pre: Preprocessing, size: tuple[int, int], batch: int | None,
         dynamic: bool, host_tail: bool, fuse_argmax: bool = True) -> Wrapped:
    """The deployment graph around a copy of the user's, for frames of `size` (symbolic H and W with
    `dynamic`; a symbolic batch where `batch` is None)."""
    model = onnx.ModelProto()
    model.CopyFrom(facts.model)
    graph = model.graph
    user_in, user_out = _free_engine_names(graph, facts.input.name, facts.output)
    pre_b = _Builder(_Names(graph), facts.opset)
    _preprocess(pre_b, facts, pre, None if dynamic else size)
    pre_b.rename_last(user_in)  # the user's input becomes the tensor the preprocessing writes
    post_b = _Builder(pre_b.names, facts.opset)
    kind, result, shape, dtype = _postprocess(post_b, user_out, facts.output_dtype, out, pre, size, batch, dynamic,
                                              host_tail, fuse_argmax)
    del graph.input[:]
    hw = ("height", "width") if dynamic else size
    graph.input.append(helper.make_tensor_value_info(FRAMES, TensorProto.UINT8, [batch or "batch", *hw, 3]))
    user_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(pre_b.nodes + user_nodes + post_b.nodes)
    graph.initializer.extend(pre_b.inits + post_b.inits)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(result, dtype, shape))
    _drop_value_info(graph, {user_in, result})
    _prune_dead(graph)
    return Wrapped(model, kind, pre_b.added + post_b.added)


def _free_engine_names(graph: onnx.GraphProto, user_in: str, user_out: str) -> tuple[str, str]:
    """Rename the user's tensors that carry the names the engine's input and outputs take ("frames",
    "labels", "logits": a SegFormer's output is called "logits"); returns the user's input and output names."""
    taken = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {v.name for v in graph.output} | \
        {name for n in graph.node for name in list(n.input) + list(n.output)}
    renames = {}
    for name in (FRAMES, LABELS, LOGITS):
        if name in taken:
            new, i = f"user/{name}", 1
            while new in taken:
                i += 1
                new = f"user/{name}_{i}"
            renames[name] = new
    if not renames:
        return user_in, user_out
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for collection in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in collection:
            item.name = renames.get(item.name, item.name)
    return renames.get(user_in, user_in), renames.get(user_out, user_out)


def _preprocess(b: _Builder, facts: GraphFacts, pre: Preprocessing, size: tuple[int, int] | None) -> None:
    """Nodes from FRAMES to the user's input (the last node's output is then renamed to it)."""
    nchw = facts.input.layout == "NCHW"
    channel_axis = 1 if nchw else 3
    tensor = FRAMES
    if nchw:
        tensor = b.node("Transpose", [tensor], "to_nchw", perm=[0, 3, 1, 2])
        b.added.append("NHWC->NCHW transpose")
    if pre.channel_order == "rgb":
        tensor = b.slice(tensor, [-1], [-(2**62)], [channel_axis], "bgr_to_rgb", steps=[-1])
        b.added.append("BGR->RGB channel flip")
    if facts.input.dtype != "uint8":
        tensor = b.node("Cast", [tensor], "to_float", to=TensorProto.FLOAT)
        scale, shift = pre.scale_shift()
        shape = (1, 3, 1, 1) if nchw else (1, 1, 1, 3)
        tensor = b.node("Mul", [tensor, b.const("scale", scale.reshape(shape))], "scale")
        tensor = b.node("Sub", [tensor, b.const("shift", shift.reshape(shape))], "normalize")
        b.added.append(f"normalization (x/{255 // pre.value_range} - mean)/std of the uint8 frame")
        if facts.input.dtype == "float16":
            tensor = b.node("Cast", [tensor], "to_float16", to=TensorProto.FLOAT16)
    if pre.size_divisor > 1 and size:
        ph, pw = (p - s for p, s in zip(pre.padded(size), size))
        if ph or pw:
            pads = [0, 0, 0, 0, 0, 0, ph, pw] if nchw else [0, 0, 0, 0, 0, ph, pw, 0]
            tensor = b.node("Pad", [tensor, b.const("pads", np.array(pads, np.int64))], "pad_to_divisor",
                            mode="constant")
            b.added.append(f"zero padding (the mean colour) to multiples of {pre.size_divisor}: "
                           f"{size[0]}x{size[1]} -> {size[0] + ph}x{size[1] + pw}")
    if not b.nodes:  # a uint8 NHWC BGR graph takes the frames as they are
        b.node("Identity", [FRAMES], "frames_in")


def _postprocess(b: _Builder, tensor: str, dtype_name: str, out: OutputFacts, pre: Preprocessing, size, batch,
                 dynamic: bool, host_tail: bool, fuse_argmax: bool):
    """Nodes from the user's output to the engine's: (kind, output name, output shape, ONNX dtype)."""
    n = batch or "batch"
    h, w = ("height", "width") if dynamic else size
    padded = size if dynamic else pre.padded(size)
    cropped = tuple(padded) != tuple(size)
    if out.kind == "labels":
        if out.layout != "NHW":
            axis = 1 if out.layout == "N1HW" else 3
            tensor = b.node("Squeeze", [tensor], "squeeze", axes=[axis]) if b.opset < 13 else \
                b.node("Squeeze", [tensor, b.const("class_axis", np.array([axis], np.int64))], "squeeze")
        if cropped:
            tensor = b.slice(tensor, [0, 0], list(size), [1, 2], "crop")
            b.added.append("crop of the padding")
        b.node("Cast", [tensor], LABELS, to=TensorProto.UINT8)
        b.rename_last(LABELS)
        b.added.append(f"{dtype_name} labels -> uint8")
        return "labels", LABELS, [n, h, w], TensorProto.UINT8
    if dtype_name != "float32":
        tensor = b.node("Cast", [tensor], "scores_f32", to=TensorProto.FLOAT)
    if out.layout == "NHWC":
        tensor = b.node("Transpose", [tensor], "scores_nchw", perm=[0, 3, 1, 2])
        b.added.append("NHWC->NCHW scores")
    c = out.num_classes
    full = tuple(out.size) == tuple(padded)
    if host_tail and not cropped and not full:
        low = ("out_height", "out_width") if dynamic else out.size
        b.added.append(f"host tail: the session upsamples the 1/{padded[0] / out.size[0]:g} scores (bilinear, "
                       "half-pixel) and takes the argmax")
        return "lowres-logits", _named(b, tensor, LOGITS), [n, c, *low], TensorProto.FLOAT
    if not full:
        tensor = _upsample(b, tensor, None if dynamic else padded)
        b.added.append("bilinear upsampling (half-pixel) of the scores to the input size")
    if cropped:
        tensor = b.slice(tensor, [0, 0], list(size), [2, 3], "crop")
        b.added.append("crop of the padding")
    if not fuse_argmax:
        return "logits", _named(b, tensor, LOGITS), [n, c, h, w], TensorProto.FLOAT
    tensor = b.node("ArgMax", [tensor], "argmax", axis=1, keepdims=0)
    label_type = TensorProto.UINT8 if c <= 256 else TensorProto.INT32
    b.node("Cast", [tensor], LABELS, to=label_type)
    b.rename_last(LABELS)
    b.added.append("argmax -> labels")
    return "labels", LABELS, [n, h, w], label_type


def _named(b: _Builder, tensor: str, name: str) -> str:
    """The engine output named `name`: the last added node's output, or an Identity of the user's output."""
    if not (b.nodes and b.nodes[-1].output[0] == tensor):
        b.node("Identity", [tensor], name)
    b.rename_last(name)
    return name


def _upsample(b: _Builder, tensor: str, padded: tuple[int, int] | None) -> str:
    """Resize (linear, half-pixel) to `padded`, or to the frames' own size when dynamic."""
    nc = b.slice(b.node("Shape", [tensor], "scores_shape"), [0], [2], [0], "scores_nc")
    if padded is None:
        hw = b.slice(b.node("Shape", [FRAMES], "frame_shape"), [1], [3], [0], "frame_hw")
    else:
        hw = b.const("target_hw", np.array(padded, np.int64))
    sizes = b.node("Concat", [nc, hw], "target_sizes", axis=0)
    if b.opset < 13:  # roi and scales are required inputs before opset 13: empty tensors say "not given"
        roi, scales = b.const("roi", np.zeros(0, np.float32)), b.const("scales", np.zeros(0, np.float32))
    else:
        roi = scales = ""
    return b.node("Resize", [tensor, roi, scales, sizes], "upsample", mode="linear",
                  coordinate_transformation_mode="half_pixel")


def _drop_value_info(graph: onnx.GraphProto, names: set[str]) -> None:
    keep = [v for v in graph.value_info if v.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def _prune_dead(graph: onnx.GraphProto) -> None:
    """Drop the nodes no engine output needs (an auxiliary head left out, say)."""
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
            needed.update(_subgraph_inputs(node))
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    keep = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names an If/Loop/Scan body reads from the outer graph (kept alive with the node)."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for inner in g.node:
                names.update(inner.input)
                names.update(_subgraph_inputs(inner))
    return names
