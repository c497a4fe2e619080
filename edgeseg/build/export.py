"""torch -> ONNX: the deployment graph, simplification, the checker, and parity against PyTorch.

Exporter: torch.export + the ONNX translator (`torch.onnx.export(dynamo=True)`, opset 18). It is the
exporter PyTorch maintains (the TorchScript tracer is deprecated), it records dynamic H/W/batch as
symbolic dimensions instead of baking traced sizes, and its graphs are about a third smaller before
onnxsim. The TorchScript exporter (opset 17) remains as `exporter="torchscript"` for targets whose
parsers want opset 17; a failed dynamo export falls back to it with a warning, recorded in the result.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import onnx
import torch
from torch import nn

from edgeseg.errors import BadInputError, EdgesegError, reraise_interrupt
from edgeseg.io import atomic_path
from edgeseg.models.preprocess import Preprocess

OPSETS = {"dynamo": 18, "torchscript": 17}


class ExportError(EdgesegError):
    """The network could not be turned into a valid ONNX graph."""


@dataclass(frozen=True)
class ExportOptions:
    """What the graph looks like. Both fusions are on by default: that is the graph engines are built from."""

    input_size: tuple[int, int]  # (H, W)
    batch: int = 1
    dynamic: bool = False  # symbolic batch, H and W
    fuse_preprocess: bool = True  # input (N, H, W, 3) uint8 BGR instead of (N, 3, H, W) normalized float
    fuse_argmax: bool = True  # output (N, H, W) class ids instead of (N, C, H, W) logits
    simplify: bool = True
    exporter: Literal["dynamo", "torchscript"] = "dynamo"
    # end at the low-resolution logits; the session upsamples and takes the argmax (edgeseg.runtime.tail)
    host_tail: bool = False


@dataclass
class ExportResult:
    path: str
    exporter: str
    opset: int
    input_name: str
    input_shape: list
    input_dtype: str
    output_name: str
    output_kind: str  # "labels", "logits" or "lowres-logits" (upsampled and argmaxed by the session)
    output_shape: list
    output_dtype: str
    nodes_exported: int
    nodes_simplified: int
    simplified: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        simp = f"{self.nodes_exported} -> {self.nodes_simplified} nodes" if self.simplified else \
            f"{self.nodes_exported} nodes (not simplified)"
        size = os.path.getsize(self.path) / 2**20
        return f"exported {self.path} ({size:.1f} MiB, {self.exporter} opset {self.opset}, {simp}) in {self.seconds:.1f}s"


class DeployModel(nn.Module):
    """The network as an engine runs it: optional fused preprocessing in front, optional argmax behind."""

    def __init__(self, model: nn.Module, num_classes: int, mean: Sequence[float], std: Sequence[float],
                 fuse_preprocess: bool = True, fuse_argmax: bool = True) -> None:
        super().__init__()
        self.model = model.eval()
        self.preprocess = Preprocess(mean, std) if fuse_preprocess else None
        self.fuse_argmax = fuse_argmax
        # ONNX ArgMax yields int64; a uint8 map is 8x less to copy out, and CamVid/Cityscapes/VOC all fit
        self.label_dtype = torch.uint8 if num_classes <= 256 else torch.int32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        out = self.model(x)
        if isinstance(out, dict):  # torchvision-style models return {"out": ..., "aux": ...}
            out = out["out"]
        return out.argmax(1).to(self.label_dtype) if self.fuse_argmax else out


def example_input(options: ExportOptions) -> torch.Tensor:
    h, w = options.input_size
    if options.fuse_preprocess:
        return torch.randint(0, 256, (options.batch, h, w, 3), dtype=torch.uint8)
    return torch.randn(options.batch, 3, h, w)


def io_names(options: ExportOptions) -> tuple[str, str]:
    return ("frames" if options.fuse_preprocess else "images"), ("labels" if options.fuse_argmax else "logits")


def _export_dynamo(deploy: DeployModel, x: torch.Tensor, options: ExportOptions) -> onnx.ModelProto:
    in_name, out_name = io_names(options)
    dynamic_shapes = None
    if options.dynamic:
        spatial = (1, 2) if options.fuse_preprocess else (2, 3)
        dim = torch.export.Dim.DYNAMIC
        dynamic_shapes = ({0: dim, spatial[0]: dim, spatial[1]: dim},)
    # the exporter logs one warning per torchvision op it cannot register; torchvision is not used here
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(deploy, (x,), None, dynamo=True, opset_version=OPSETS["dynamo"],
                                    input_names=[in_name], output_names=[out_name], external_data=False,
                                    dynamic_shapes=dynamic_shapes, verbose=False)
    return program.model_proto


def _export_torchscript(deploy: DeployModel, x: torch.Tensor, options: ExportOptions) -> onnx.ModelProto:
    in_name, out_name = io_names(options)
    axes = None
    if options.dynamic:
        spatial = (1, 2) if options.fuse_preprocess else (2, 3)
        axes = {in_name: {0: "batch", spatial[0]: "height", spatial[1]: "width"},
                out_name: {0: "batch", -2 % 4: "height", -1 % 4: "width"}}
        if options.fuse_argmax:
            axes[out_name] = {0: "batch", 1: "height", 2: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(deploy, (x,), buffer, dynamo=False, opset_version=OPSETS["torchscript"],
                          input_names=[in_name], output_names=[out_name], dynamic_axes=axes)
    return onnx.load_from_string(buffer.getvalue())


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """onnxsim, or the model unchanged and the reason when it cannot (a warning, never a failed export)."""
    try:
        import onnxsim
    except ImportError:
        return model, "onnxsim is not installed (pip install 'edgeseg[export]')"
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # onnxsim raises plain RuntimeError/ValueError from its C++ core
        reraise_interrupt(exc)  # a Ctrl+C inside onnxsim is not "keep the unsimplified graph"
        return model, f"onnxsim failed: {str(exc).splitlines()[0][:200]}"
    if not ok:
        return model, "onnxsim's own check of the simplified graph failed"
    return simplified, None


def _shape(value: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _dtype(value: onnx.ValueInfoProto) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name


def export_onnx(model: nn.Module, path: str | os.PathLike, num_classes: int, mean: Sequence[float],
                std: Sequence[float], options: ExportOptions, overwrite: bool = False,
                labels: dict | None = None) -> ExportResult:
    """Export `model` (eval mode) to `path`: export, simplify, check, then publish atomically.

    `labels` (a dataset record: classes, palette, ignore_index) goes into the file's metadata_props
    with the input's preprocessing, so that `edgeseg build --onnx` of the file needs no flags."""
    _check_options(options)
    start = time.perf_counter()
    deploy = DeployModel(model, num_classes, mean, std, options.fuse_preprocess, options.fuse_argmax).eval()
    x = example_input(options)
    exporter, notes = options.exporter, []
    with torch.no_grad():
        try:
            proto = (_export_dynamo if exporter == "dynamo" else _export_torchscript)(deploy, x, options)
        except Exception as exc:
            reraise_interrupt(exc)  # torch's exporter wraps a Ctrl+C: stop, never fall back and publish
            if exporter != "dynamo":
                raise ExportError(f"the TorchScript exporter failed: {exc}", "report this model and input size") from exc
            notes.append(f"dynamo export failed ({str(exc).splitlines()[0][:160]}); used the TorchScript exporter")
            warnings.warn(notes[-1])
            exporter = "torchscript"
            proto = _export_torchscript(deploy, x, options)
    nodes_exported = len(proto.graph.node)
    problem = None
    if options.simplify:
        proto, problem = simplify(proto)
        if problem:
            notes.append(problem)
            warnings.warn(f"{problem}; keeping the unsimplified graph")
    output_kind = "labels" if options.fuse_argmax else "logits"
    if options.host_tail and options.fuse_argmax:
        output_kind, note = _cut_tail(proto)
        if note:
            notes.append(note)
    describe_graph(proto, options, mean, std, labels)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph fails the ONNX checker: {str(exc)[:300]}", "report this model") from exc
    with atomic_path(path, overwrite=overwrite) as tmp:
        onnx.save(proto, str(tmp))
    graph = proto.graph
    return ExportResult(str(path), exporter, OPSETS[exporter], graph.input[0].name, _shape(graph.input[0]),
                        _dtype(graph.input[0]), graph.output[0].name, output_kind, _shape(graph.output[0]),
                        _dtype(graph.output[0]), nodes_exported, len(graph.node),
                        options.simplify and problem is None, time.perf_counter() - start, notes)


def describe_graph(proto: onnx.ModelProto, options: ExportOptions, mean: Sequence[float], std: Sequence[float],
                   labels: dict | None) -> None:
    """metadata_props as `edgeseg.build.onnx_import` reads them: the input's colour order and
    normalization, and the classes when known."""
    import json

    props: dict[str, object] = {"channel_order": "bgr" if options.fuse_preprocess else "rgb"}
    if not options.fuse_preprocess:  # normalized float input: say how
        props.update(value_range=1, mean=[float(v) for v in mean], std=[float(v) for v in std])
    if labels and labels.get("classes"):
        props.update(classes=list(labels["classes"]), palette=[list(c) for c in labels.get("palette", [])] or None,
                     ignore_index=labels.get("ignore_index"))
    for key, value in props.items():
        if value is not None:
            entry = proto.metadata_props.add()
            entry.key, entry.value = f"edgeseg.{key}", value if isinstance(value, str) else json.dumps(value)


def _cut_tail(proto: onnx.ModelProto) -> tuple[str, str | None]:
    """(output kind, note): the graph ends at its low-resolution logits when its tail is bilinear."""
    from edgeseg.build.graph_rewrite import cut_upsample_tail
    from edgeseg.runtime.tail import KIND

    if cut_upsample_tail(proto) is None:
        return "labels", "the graph does not end in a bilinear upsampling: its argmax stays in the graph"
    return KIND, None


def _check_options(options: ExportOptions) -> None:
    h, w = options.input_size
    if h < 32 or w < 32:
        raise BadInputError(f"input size {h}x{w} is too small to export", "use at least 32x32, e.g. --input-size 360x480")
    if options.batch < 1:
        raise BadInputError(f"batch {options.batch} must be at least 1", "pass --batch 1 or more")
    if options.exporter not in OPSETS:
        raise BadInputError(f"unknown exporter '{options.exporter}'", f"choose one of {', '.join(OPSETS)}")


@dataclass
class Parity:
    """ONNX Runtime against eager PyTorch on the same frames."""

    label_agreement: float  # fraction of pixels whose class agrees
    max_abs_logit_diff: float | None  # None when the graph outputs labels
    pixels: int

    def line(self) -> str:
        diff = "n/a (labels graph)" if self.max_abs_logit_diff is None else f"{self.max_abs_logit_diff:.2e}"
        return f"argmax agreement {100 * self.label_agreement:.3f}% over {self.pixels} pixels, max |logit diff| {diff}"


Runner = Callable[[np.ndarray], np.ndarray]  # graph inputs -> labels (N, H, W) or logits (N, C, H, W)


def parity(deploy: DeployModel, onnx_path: str | os.PathLike, inputs: np.ndarray, batch: int = 1) -> Parity:
    """ONNX Runtime against eager PyTorch on `inputs` (in the graph's input layout), `batch` at a time."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return compare(torch_runner(deploy), lambda x: session.run(None, {name: x})[0], inputs, batch)


def torch_runner(deploy: DeployModel) -> Runner:
    """The deployment graph in eager PyTorch, on the inputs the exported graph takes."""
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return deploy(torch.from_numpy(x)).numpy()

    return run


def compare(reference: Runner, candidate: Runner, inputs: np.ndarray, batch: int = 1) -> Parity:
    """Feed the same inputs to two runners through the shared evaluation loop, `batch` at a time.

    `inputs` are in the graph's layout: uint8 (N, H, W, 3) frames, or normalized float (N, 3, H, W)
    for a graph without fused preprocessing (walked channels-last, handed over channels-first).
    """
    from edgeseg.measure.evaluate import EvalSample, as_predictor, evaluate

    frames = inputs if inputs.dtype == np.uint8 else inputs.transpose(0, 2, 3, 1)
    to_graph = (lambda x: x) if inputs.dtype == np.uint8 else (lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    samples = [EvalSample(frame, None, str(i)) for i, frame in enumerate(frames)]
    try:
        result = evaluate(as_predictor(lambda x: candidate(to_graph(x))), samples, batch=batch, same_outputs=True,
                          reference=as_predictor(lambda x: reference(to_graph(x))))
    except BadInputError as exc:  # the two disagree on what the graph returns
        raise ExportError(exc.problem, exc.fix) from exc
    return Parity(result.agreement, result.max_abs_logit_diff, result.pixels_compared)


def fp16_onnx(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> None:
    """An FP16 copy of an FP32 graph with FP32 inputs/outputs kept (TensorRT 11's strongly typed path).

    ArgMax, Cast and the uint8 preprocessing stay in their types; only float tensors and weights change.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=["ArgMax", "Resize"])
    with atomic_path(dst, overwrite=overwrite) as tmp:
        onnx.save(half, str(tmp))


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse and check an ONNX file, naming the file when it is corrupt or truncated."""
    path = Path(path)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, checker ValidationError, OSError
        reraise_interrupt(exc)
        raise BadInputError(f"{path} is not a valid ONNX model ({type(exc).__name__}: {str(exc)[:160]})",
                            "export it again with `edgeseg export`") from exc
    return model
