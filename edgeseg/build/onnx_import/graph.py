"""What a foreign segmentation ONNX says about itself: its one image input (layout, dtype, static or
dynamic size), the output that carries the segmentation, and the metadata written into the file.

Only what the graph states is read here; what its output *is* (class axis, resolution, logits or
labels) is settled by running it once at the declared size (`edgeseg.build.onnx_import.probe`),
because exporters leave output shapes symbolic more often than not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from edgeseg.errors import BadInputError, reraise_interrupt

MIN_OPSET = 11  # Pad and Resize with tensor inputs, Slice with steps: the ops the wrapper adds
FLOAT_TYPES = ("float32", "float16")
LABEL_TYPES = ("int64", "int32", "uint8", "int8", "int16", "uint16")


@dataclass(frozen=True)
class GraphInput:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str | None, ...]  # int where static, the symbol (or None) where dynamic
    layout: str  # "NCHW" or "NHWC": where the axis of length 3 is

    @property
    def spatial(self) -> tuple[int | str | None, int | str | None]:
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else (self.shape[1], self.shape[2])

    @property
    def static_size(self) -> tuple[int, int] | None:
        h, w = self.spatial
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    @property
    def static_batch(self) -> int | None:
        return self.shape[0] if isinstance(self.shape[0], int) else None


@dataclass(frozen=True)
class GraphFacts:
    """The file as given: the model, its sha256-able path, its input, the chosen output, its metadata."""

    path: Path
    model: onnx.ModelProto
    input: GraphInput
    output: str  # the segmentation output's name
    output_dtype: str
    output_rank: int | None
    opset: int
    metadata: dict[str, str] = field(default_factory=dict)  # ONNX metadata_props
    last_op: str = ""  # the op that produces the output (Softmax marks probabilities)
    other_outputs: tuple[str, ...] = ()  # outputs left out of the engine (e.g. torchvision's "aux")


def read_graph(path: str | Path, output: str | None = None, layout: str | None = None) -> GraphFacts:
    """Parse and check `path`, and find its image input and segmentation output (or refuse, saying why)."""
    path = Path(path)
    model = _load(path)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise BadInputError(f"{path} uses ONNX opset {opset}; edgeseg wraps graphs of opset {MIN_OPSET} or newer",
                            "re-export with a newer opset (e.g. torch.onnx.export(..., opset_version=17))")
    image = _image_input(path, graph, layout)
    name, others = _segmentation_output(path, graph, output)
    value = next(v for v in graph.output if v.name == name)
    tensor = value.type.tensor_type
    rank = len(tensor.shape.dim) if tensor.HasField("shape") else None
    producer = next((n.op_type for n in graph.node if name in n.output), "")
    metadata = {p.key: p.value for p in model.metadata_props}
    return GraphFacts(path, model, image, name, _dtype_name(tensor.elem_type), rank, opset, metadata, producer,
                      tuple(others))


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a file"
        raise BadInputError(f"--onnx {path} is {what if path.exists() else 'missing'}",
                            "pass the .onnx file your exporter wrote")
    try:
        model = onnx.load(str(path))  # external data beside the file is loaded too
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, checker ValidationError, OSError for missing external data
        reraise_interrupt(exc)
        raise BadInputError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})",
                            "export it again; a truncated copy or missing external-data file gives this") from exc
    return model


def _dtype_name(elem_type: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:  # undefined or exotic element types
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _dims(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    out = []
    for d in value.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return tuple(out)


def _image_input(path: Path, graph: onnx.GraphProto, layout: str | None) -> GraphInput:
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]  # IR < 4 lists weights as inputs
    if len(inputs) != 1:
        names = ", ".join(f"{v.name} {list(_dims(v))}" for v in inputs) or "none"
        raise BadInputError(f"{path} has {len(inputs)} inputs ({names}); edgeseg builds graphs with one image input",
                            "export the network with the image as its only input (fold other inputs into "
                            "constants)")
    value = inputs[0]
    dims = _dims(value)
    dtype = _dtype_name(value.type.tensor_type.elem_type)
    if len(dims) != 4:
        raise BadInputError(f"{path}'s input '{value.name}' has shape {list(dims)}; an image batch is 4-D "
                            "(N, 3, H, W) or (N, H, W, 3)", "export with a batch axis and 3 colour channels")
    if dtype not in FLOAT_TYPES + ("uint8",):
        raise BadInputError(f"{path}'s input '{value.name}' is {dtype}; edgeseg feeds float32, float16 or uint8 "
                            "images", "export the network with a float or uint8 image input")
    return GraphInput(value.name, dtype, dims, layout or _input_layout(path, value.name, dims))


def _input_layout(path: Path, name: str, dims: tuple) -> str:
    nchw, nhwc = dims[1] == 3, dims[3] == 3
    if nchw != nhwc:
        return "NCHW" if nchw else "NHWC"
    shown = list(dims)
    if not nchw:
        raise BadInputError(f"{path}'s input '{name}' {shown} has no axis of 3 colour channels at 1 or 3",
                            "pass --input-layout NCHW or NHWC if its channel axis is dynamic; edgeseg feeds "
                            "3-channel images")
    raise BadInputError(f"{path}'s input '{name}' {shown} could be NCHW or NHWC",
                        "pass --input-layout NCHW or NHWC")


def _segmentation_output(path: Path, graph: onnx.GraphProto, wanted: str | None) -> tuple[str, list[str]]:
    names = [v.name for v in graph.output]
    if wanted:
        if wanted not in names:
            raise BadInputError(f"{path} has no output '{wanted}'", f"choose one of: {', '.join(names)}")
        return wanted, [n for n in names if n != wanted]
    if len(names) == 1:
        return names[0], []
    # torchvision's {"out", "aux"} and similar: the main head is named, the auxiliary one says so
    main = [n for n in names if n.lower() in ("out", "output", "logits", "labels", "seg", "segmentation")]
    if len(main) == 1 and all("aux" in n.lower() for n in names if n != main[0]):
        return main[0], [n for n in names if n != main[0]]
    shapes = ", ".join(f"{v.name} {list(_dims(v))}" for v in graph.output)
    raise BadInputError(f"{path} has {len(names)} outputs ({shapes}); a segmentation network has one (a detector "
                        "or a multi-task network has several)",
                        "pass --output NAME for the segmentation output, or export that output alone")


def metadata_json(value: str) -> object:
    """A metadata_props value: JSON, or the Python literal Ultralytics writes (`{0: 'road', ...}`)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        import ast

        try:
            return ast.literal_eval(value)  # literals only: no code runs
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
