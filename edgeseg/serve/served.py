"""The model a server loads, made from an engine: its file(s) copied, or a graph variant where the server
cannot do what the edgeseg session does (the host tail; DeepStream's float frames and score parser).

A served model records what it returns (`kind`) and what a client still has to do (`client_tail`), so
that each configuration writer says it in its own format and no server returns something unexplained.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgeseg.backends import serve_side
from onnx import TensorProto

from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.manifest import Manifest
from edgeseg.runtime.tail import KIND as LOWRES
from edgeseg.serve import onnx_graph
from edgeseg.serve.tensors import Signature

TAILS = ("auto", "server", "client")
DEEPSTREAM_LABEL_TYPES = ("int32", "int8")  # the integer types nvinfer binds (NvDsInferDataType: FLOAT, HALF, INT8, INT32)


@dataclass
class ServedModel:
    folder: Path
    graph: str  # the file the server opens, inside `folder`
    source: str  # the engine file it came from
    kind: str  # what it returns: labels, logits, lowres-logits, probs (softmax scores), instances
    client_tail: str = ""  # what the client must still do with the output, "" when nothing
    variant: str = ""  # how the graph differs from the engine's file, "" for a byte copy
    notes: list[str] = field(default_factory=list)
    signature: Signature | None = None

    @property
    def path(self) -> Path:
        return self.folder / self.graph


def client_tail_text(manifest: Manifest) -> str:
    h, w = manifest.input.size
    size = f"{h}x{w}" if h and w else "the input's height and width"
    return (f"upsample the (N, C, h, w) logits bilinearly (half-pixel centres, no antialiasing: OpenCV's "
            f"INTER_LINEAR, ONNX Resize linear/half_pixel) to {size}, then argmax over C; "
            "edgeseg.runtime.tail.upsample_argmax does both (numpy, boundary cells only)")


def wants_tail(manifest: Manifest, tail: str, target: str) -> bool:
    """Whether the served graph gets the host tail appended. auto: yes for Triton and OVMS (they return
    what the session returns, label maps); no for DeepStream, whose own parser takes the argmax of scores."""
    if tail not in TAILS:
        raise BadInputError(f"unknown --tail {tail!r}", f"choose one of {', '.join(TAILS)}")
    if manifest.output.kind != LOWRES:
        return False
    return tail == "server" or (tail == "auto" and target != "deepstream")


def write_served(manifest: Manifest, root: Path, folder: Path, graph: str, target: str, tail: bool) -> ServedModel:
    """Write the engine's served graph as `folder/graph` (a copy, or with the host tail appended)."""
    half = serve_side(manifest.backend["name"])
    source, note = half.served_graph(manifest, target)
    src, dst = root / source, folder / graph
    folder.mkdir(parents=True, exist_ok=True)
    served = ServedModel(folder, graph, source, manifest.output.kind, notes=[note] if note else [])
    fmt = graph_format(src)
    frames = manifest.input.name
    if tail:
        if not hasattr(fmt, "append_tail"):
            raise EdgesegError(f"{src.name} is a compiled {manifest.backend['name']} engine: its low-resolution "
                               "output cannot get the upsampling and argmax appended after the build",
                               "rebuild with `edgeseg build ... --tail engine`, or export with --tail client "
                               "(the client upsamples and takes the argmax)")
        fmt.append_tail(src, dst, frames, manifest.input.layout, len(manifest.classes))
        served.kind, served.variant = "labels", "the host tail appended: bilinear upsampling (half-pixel) + argmax"
    else:
        fmt.copy_graph(src, dst)
        if served.kind == LOWRES:
            served.client_tail = client_tail_text(manifest)
    served.signature = read_signature(served.path, manifest, root)
    return served


def write_deepstream_graph(manifest: Manifest, root: Path, folder: Path, graph: str, tail: bool,
                           scratch: Path, std_in_graph: bool = True) -> tuple[ServedModel, int]:
    """DeepStream's ONNX: float32 frames (or, for normalized float input, the per-channel 1/std inside when
    `std_in_graph`); the tail appended (label maps) or a softmax (scores for its segmentation parser).
    Returns the served model and nvinfer's network-mode."""
    half = serve_side(manifest.backend["name"])
    source, mode, note = half.deepstream_graph(manifest)
    served = ServedModel(folder, graph, source, manifest.output.kind, notes=[note] if note else [])
    folder.mkdir(parents=True, exist_ok=True)
    current = root / source
    steps = []
    if manifest.input.dtype == "uint8":
        how = onnx_graph.float_frames(current, scratch / "float.onnx", manifest.input.name)
        current, steps = scratch / "float.onnx", [f"float32 frames ({how})"]
    elif std_in_graph:
        onnx_graph.prepend_channel_scale(current, scratch / "std.onnx", manifest.input.name,
                                         [1.0 / s for s in manifest.input.std])
        current, steps = scratch / "std.onnx", ["the per-channel 1/std first (nvinfer scales by 1/255)"]
    if tail:
        onnx_graph.append_tail(current, scratch / "tail.onnx", manifest.input.name, manifest.input.layout,
                               len(manifest.classes))
        current, served.kind = scratch / "tail.onnx", "labels"
        steps.append("the host tail appended")
    elif manifest.output.kind in ("logits", LOWRES):
        onnx_graph.append_softmax(current, scratch / "probs.onnx")
        current, served.kind = scratch / "probs.onnx", "probs"
        steps.append("softmax over the classes")
    if served.kind == "labels" and onnx_graph.signature(current).outputs[0].dtype not in DEEPSTREAM_LABEL_TYPES:
        onnx_graph.cast_output(current, scratch / "int32.onnx", TensorProto.INT32)
        current = scratch / "int32.onnx"
        steps.append("int32 labels (nvinfer binds no uint8 or int64 tensor)")
    shutil.copyfile(current, folder / graph)
    served.variant = ", ".join(steps)
    served.signature = onnx_graph.signature(folder / graph)
    return served, mode


class _Onnx:
    signature = staticmethod(onnx_graph.signature)

    @staticmethod
    def append_tail(src: Path, dst: Path, frames: str, layout: str, classes: int) -> None:
        onnx_graph.append_tail(src, dst, frames, layout, classes)

    @staticmethod
    def copy_graph(src: Path, dst: Path) -> None:
        shutil.copyfile(src, dst)


def graph_format(path: Path):
    """The module that reads, copies and extends a graph file of this kind."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _Onnx
    if suffix == ".xml":
        return serve_side("openvino")
    if suffix in (".engine", ".plan"):
        return serve_side("tensorrt")
    raise EdgesegError(f"{path.name}: edgeseg cannot serve a graph of this kind", "export an ONNX, OpenVINO or TensorRT engine")


def read_signature(path: Path, manifest: Manifest | None = None, root: Path | None = None) -> Signature | None:
    """The graph's I/O; a TensorRT plan where TensorRT cannot run: the ONNX it was built from (or None)."""
    fmt = graph_format(path)
    if fmt is serve_side("tensorrt"):
        found = fmt.plan_signature(path)
        if found is None and manifest is not None and root is not None:
            found = onnx_graph.signature(root / manifest.onnx["file"])
        return found
    return fmt.signature(path)
