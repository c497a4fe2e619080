"""What the graph's output is, found by running it once at the engine's input size in ONNX Runtime:
its class axis, resolution against the (padded) input, and whether it holds scores or labels.

Shapes in the file are often symbolic, and a SegFormer's 1/4-resolution logits or a Keras graph's
channels-last scores look alike until a real shape comes out; a class axis the shapes cannot settle
is a refusal naming `--output-layout`, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseg.build.onnx_import.graph import FLOAT_TYPES, LABEL_TYPES, GraphFacts
from edgeseg.errors import BadInputError, reraise_interrupt

KINDS = ("logits", "probabilities", "labels")


@dataclass(frozen=True)
class OutputFacts:
    kind: str  # one of KINDS
    layout: str  # "NCHW" / "NHWC" for scores; "NHW", "N1HW" or "NHW1" for labels
    num_classes: int | None  # None for labels (the class names say how many)
    size: tuple[int, int]  # (h, w) of the output at the probed input size
    shape: tuple[int, ...]  # as probed

    def record(self, padded: tuple[int, int]) -> dict:
        return {"kind": self.kind, "layout": self.layout, "num_classes": self.num_classes,
                "resolution": f"1/{padded[0] / self.size[0]:g}" if self.size != padded else "full",
                "probed_shape": list(self.shape)}


def graph_input_array(facts: GraphFacts, batch: int, size: tuple[int, int], rng=None) -> np.ndarray:
    """A random input in the graph's own layout and dtype (the probe's, and the reference run's shape)."""
    rng = rng or np.random.default_rng(0)
    h, w = size
    shape = (batch, 3, h, w) if facts.input.layout == "NCHW" else (batch, h, w, 3)
    if facts.input.dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(facts.input.dtype)


def ort_session(facts: GraphFacts):
    """The user's graph as given, in ONNX Runtime (the reference every wrapped engine is held to)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(facts.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        reraise_interrupt(exc)
        raise BadInputError(f"ONNX Runtime cannot load {facts.path} ({str(exc).splitlines()[0][:200]})",
                            "check that the graph runs as exported (python -c \"import onnxruntime as ort; "
                            f"ort.InferenceSession('{facts.path}')\")") from exc


def run_graph(session, facts: GraphFacts, x: np.ndarray) -> np.ndarray:
    try:
        return session.run([facts.output], {facts.input.name: x})[0]
    except Exception as exc:
        reraise_interrupt(exc)
        raise BadInputError(f"{facts.path} does not run on a {list(x.shape)} {x.dtype} input "
                            f"({str(exc).splitlines()[0][:200]})",
                            "pass an --input-size the graph takes (multiples of its stride: --size-divisor N "
                            "pads to them), or check --input-layout") from exc


def probe_output(facts: GraphFacts, session, padded: tuple[int, int], layout: str | None = None) -> OutputFacts:
    """Run the graph once at `padded` (H, W) and read what its output is."""
    out = run_graph(session, facts, graph_input_array(facts, 1, padded))
    dtype = out.dtype.name
    where = f"{facts.path}'s output '{facts.output}' ({list(out.shape)} {dtype})"
    if dtype in LABEL_TYPES:
        return _labels(out, padded, where)
    if dtype not in FLOAT_TYPES + ("float64",):
        raise BadInputError(f"{where} is neither scores nor class ids", "export float logits or integer labels")
    if out.ndim != 4:
        kind = "a classifier's (N, classes)" if out.ndim == 2 else f"a {out.ndim}-D"
        raise BadInputError(f"{where} is {kind} output, not per-pixel class scores (N, C, h, w) or (N, h, w, C)",
                            "export a segmentation network; for a multi-output graph pass --output NAME")
    axis = _class_axis(out.shape, padded, where, layout)
    classes = out.shape[axis]
    if classes < 2:
        raise BadInputError(f"{where} has one channel: a binary mask, not one score per class",
                            "export two classes (background, object) or integer labels")
    size = (out.shape[2], out.shape[3]) if axis == 1 else (out.shape[1], out.shape[2])
    scores = np.moveaxis(out.astype(np.float32), axis, 1)
    probabilities = facts.last_op == "Softmax" or (scores.min() >= 0 and scores.max() <= 1 and
                                                   np.allclose(scores.sum(1), 1, atol=1e-3))
    return OutputFacts("probabilities" if probabilities else "logits", "NCHW" if axis == 1 else "NHWC", classes,
                       size, tuple(out.shape))


def _labels(out: np.ndarray, padded: tuple[int, int], where: str) -> OutputFacts:
    shape = tuple(out.shape)
    if out.ndim == 3:
        layout, size = "NHW", shape[1:3]
    elif out.ndim == 4 and shape[1] == 1:
        layout, size = "N1HW", shape[2:4]
    elif out.ndim == 4 and shape[3] == 1:
        layout, size = "NHW1", shape[1:3]
    else:
        raise BadInputError(f"{where}: integer output that is not a label map (N, H, W)",
                            "export class ids as (N, H, W), or the logits")
    if tuple(size) != tuple(padded):
        raise BadInputError(f"{where}: a label map at {size[0]}x{size[1]} for a {padded[0]}x{padded[1]} input",
                            "export the logits (edgeseg upsamples them before the argmax) or full-size labels")
    return OutputFacts("labels", layout, None, tuple(size), shape)


def _fits(spatial: tuple[int, int], padded: tuple[int, int]) -> bool:
    """Whether (h, w) is the input scaled down by one factor (within a pixel of rounding per axis)."""
    (h, w), (ph, pw) = spatial, padded
    if not (1 <= h <= ph and 1 <= w <= pw):
        return False
    factor = ph / h
    return abs(pw / factor - w) <= 1 and abs(ph / (pw / w) - h) <= 1


def _class_axis(shape: tuple[int, ...], padded: tuple[int, int], where: str, layout: str | None) -> int:
    if layout:
        if layout not in ("NCHW", "NHWC"):
            raise BadInputError(f"--output-layout {layout}", "choose NCHW or NHWC")
        return 1 if layout == "NCHW" else 3
    nchw, nhwc = _fits(shape[2:4], padded), _fits(shape[1:3], padded)
    if nchw and not nhwc:
        return 1
    if nhwc and not nchw:
        return 3
    if nchw:
        raise BadInputError(f"{where}: its class axis could be 1 (NCHW) or 3 (NHWC)", "pass --output-layout NCHW or NHWC")
    raise BadInputError(f"{where}: no two axes match the {padded[0]}x{padded[1]} input scaled down by one factor",
                        "pass --output-layout NCHW or NHWC, and check --input-size")
