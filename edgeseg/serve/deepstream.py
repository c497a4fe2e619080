"""A DeepStream Gst-nvinfer configuration: `<out>/<name>/config_infer_primary.txt`, the ONNX DeepStream
builds its TensorRT engine from, `labels.txt`.

What nvinfer does decides the graph (DeepStream 6.2 sources, gst-nvinfer and nvdsinfer):
- It converts and normalizes frames itself, y = net-scale-factor * (x - offsets[c]), and writes float32
  into the engine's input. Engines with fused preprocessing get float32 frames in the same 0..255 BGR
  NHWC form (`network-input-order=1`), with scale 1 and offsets 0: exact. Engines that take normalized
  float NCHW get offsets = 255 * mean and one scale for three channels: 1 / (255 * s) with s chosen so
  that the worst channel is off by the least; the export says by how much and measures the labels it
  changes on real frames.
- `network-type=2` (semantic segmentation) takes the first output as float scores (N, C, h, w), keeps a
  class where its score beats -1 and `segmentation-threshold`, and gives a class map at the output's
  resolution; a softmax is appended so every winning score is above 1/C. A label-map graph (the host tail
  appended) is `network-type=100` with `output-tensor-meta=1`: the app reads the uint8 map from the
  tensor meta.
- It resizes frames to the network size with `scaling-filter`; 1 (bilinear) is what edgeseg measured with.
The keys checked are gst-nvinfer's documented [property] keys (gstnvinfer_property_parser.h).
"""

from __future__ import annotations

import configparser
import difflib
from pathlib import Path

import numpy as np

from edgeseg.manifest import Manifest
from edgeseg.serve import onnx_graph
from edgeseg.serve.served import ServedModel

CONFIG = "config_infer_primary.txt"
LABELS = "labels.txt"
GRAPH = "model.onnx"

INT, FLOAT, TEXT, INTS, FLOATS, TEXTS = "int", "float", "text", "ints", "floats", "texts"
# gst-nvinfer's [property] keys and their value types
KEYS = {
    "gie-unique-id": INT, "process-mode": INT, "interval": INT, "labelfile-path": TEXT, "gpu-id": INT,
    "secondary-reinfer-interval": INT, "output-tensor-meta": INT, "disable-output-host-copy": INT,
    "enable-dla": INT, "use-dla-core": INT, "batch-size": INT, "tensor-meta-pool-size": INT, "network-mode": INT,
    "model-engine-file": TEXT, "int8-calib-file": TEXT, "workspace-size": INT, "output-blob-names": TEXTS,
    "is-classifier": INT, "network-type": INT, "force-implicit-batch-dim": INT, "infer-dims": INTS,
    "output-io-formats": TEXTS, "layer-device-precision": TEXTS, "model-color-format": INT,
    "net-scale-factor": FLOAT, "offsets": FLOATS, "mean-file": TEXT, "maintain-aspect-ratio": INT,
    "symmetric-padding": INT, "scaling-filter": INT, "scaling-compute-hw": INT, "network-input-order": INT,
    "input-tensor-from-meta": INT, "custom-lib-path": TEXT, "parse-bbox-func-name": TEXT,
    "parse-bbox-instance-mask-func-name": TEXT, "engine-create-func-name": TEXT, "parse-classifier-func-name": TEXT,
    "custom-network-config": TEXT, "model-file": TEXT, "proto-file": TEXT, "uff-file": TEXT, "uff-input-order": INT,
    "input-dims": INTS, "uff-input-dims": INTS, "uff-input-blob-name": TEXT, "tlt-encoded-model": TEXT,
    "tlt-model-key": TEXT, "onnx-file": TEXT, "num-detected-classes": INT, "enable-dbscan": INT, "cluster-mode": INT,
    "crop-objects-to-roi-boundary": INT, "classifier-type": TEXT, "classifier-threshold": FLOAT,
    "classifier-async-mode": INT, "segmentation-threshold": FLOAT, "segmentation-output-order": INT,
    "output-instance-mask": INT, "input-object-min-width": INT, "input-object-min-height": INT,
    "input-object-max-width": INT, "input-object-max-height": INT, "operate-on-gie-id": INT,
    "operate-on-class-ids": INTS, "filter-out-class-ids": INTS,
}
CHOICES = {"network-type": (0, 1, 2, 3, 100), "network-mode": (0, 1, 2), "model-color-format": (0, 1, 2),
           "network-input-order": (0, 1), "segmentation-output-order": (0, 1), "process-mode": (1, 2),
           "scaling-filter": tuple(range(7)), "cluster-mode": (0, 1, 2, 3, 4)}
FILE_KEYS = ("onnx-file", "labelfile-path", "model-engine-file", "int8-calib-file", "custom-lib-path", "mean-file")


def one_scale(std: tuple[float, ...]) -> tuple[float, float]:
    """(s, worst relative error): one std for three, whose reciprocal is the midpoint of the channels'
    reciprocals (the largest absolute error of the scale as small as one number makes it), and how far the
    scale it gives is off for the channel it misses most, relative to that channel's own."""
    inv = 1.0 / np.asarray(std, np.float64)
    mid = (inv.max() + inv.min()) / 2
    return float(1.0 / mid), float(np.max(np.abs(mid - inv) / inv))


def config_lines(manifest: Manifest, served: ServedModel, mode: int, batch: int,
                 size: tuple[int, int], std_in_graph: bool = True) -> dict[str, str]:
    spec = manifest.input
    h, w = size
    fused = spec.preprocess == "fused"
    out = served.signature.outputs[0]
    keys = {"gpu-id": "0", "gie-unique-id": "1", "process-mode": "1", "onnx-file": served.graph,
            "labelfile-path": LABELS, "batch-size": str(batch), "network-mode": str(mode)}
    if fused:
        keys.update({"model-color-format": "1", "net-scale-factor": "1.0", "offsets": "0;0;0",
                     "network-input-order": "1"})
    else:
        s = 1.0 if std_in_graph else one_scale(spec.std)[0]
        keys.update({"model-color-format": "0", "net-scale-factor": repr(1.0 / (255.0 * s)),
                     "offsets": ";".join(repr(255.0 * m) for m in spec.mean), "network-input-order": "0"})
    keys.update({"infer-dims": f"3;{h};{w}", "maintain-aspect-ratio": "0", "scaling-filter": "1",
                 "output-blob-names": out.name, "num-detected-classes": str(len(manifest.classes)),
                 "cluster-mode": "4"})
    if served.kind == "probs":
        keys.update({"network-type": "2", "segmentation-threshold": "0.0", "segmentation-output-order": "0"})
    else:
        keys.update({"network-type": "100", "output-tensor-meta": "1"})
    return keys


def write_config(model_dir: Path, manifest: Manifest, served: ServedModel, mode: int, batch: int,
                 size: tuple[int, int], comments: list[str], std_in_graph: bool = True) -> dict[str, str]:
    keys = config_lines(manifest, served, mode, batch, size, std_in_graph)
    head = "".join(f"# {line}\n" for line in comments)
    body = "".join(f"{k}={v}\n" for k, v in keys.items())
    (model_dir / CONFIG).write_text(f"{head}[property]\n{body}")
    (model_dir / LABELS).write_text("".join(f"{c}\n" for c in manifest.classes))
    return keys


def read_config(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",),
                                       inline_comment_prefixes=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive in GKeyFile
    try:
        parser.read_string(path.read_text())
    except configparser.Error as exc:
        raise ValueError(f"{path} is not a key file DeepStream can read: {exc}") from exc
    if "property" not in parser:
        raise ValueError(f"{path} has no [property] group")
    return dict(parser["property"])


def check_model_dir(model_dir: Path) -> list[str]:
    """Every problem nvinfer would have with `model_dir/config_infer_primary.txt` and its graph."""
    path = model_dir / CONFIG
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        keys = read_config(path)
    except ValueError as exc:
        return [str(exc)]
    problems, values = _check_keys(keys)
    for key in FILE_KEYS:
        if key in keys and not (model_dir / keys[key]).is_file():
            problems.append(f"{key}={keys[key]}: no such file in {model_dir}")
    if problems or "onnx-file" not in keys:
        return problems or ["onnx-file is missing: DeepStream has no graph to build"]
    return _check_against_graph(model_dir, values, onnx_graph.signature(model_dir / keys["onnx-file"]))


def _check_keys(keys: dict[str, str]) -> tuple[list[str], dict]:
    problems, values = [], {}
    for key, text in keys.items():
        kind = KEYS.get(key)
        if kind is None and not key.startswith("class-attrs"):
            close = difflib.get_close_matches(key, KEYS, n=1)
            problems.append(f"{key} is not a gst-nvinfer key" + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        try:
            values[key] = _parse(text, kind)
        except ValueError:
            problems.append(f"{key}={text}: expected {kind}")
            continue
        if key in CHOICES and values[key] not in CHOICES[key]:
            problems.append(f"{key}={text}: expected one of {', '.join(map(str, CHOICES[key]))}")
    return problems, values


def _parse(text: str, kind: str | None):
    parts = [p for p in text.strip().split(";") if p != ""]
    if kind == INT:
        return int(text)
    if kind == FLOAT:
        return float(text)
    if kind == INTS:
        return [int(p) for p in parts]
    if kind == FLOATS:
        return [float(p) for p in parts]
    if kind == TEXTS:
        return parts
    return text.strip()


def _check_against_graph(model_dir: Path, v: dict, sig) -> list[str]:
    problems: list[str] = []
    if len(sig.inputs) != 1:
        return [f"the graph has {len(sig.inputs)} inputs; nvinfer feeds one"]
    problems += _check_recorded(model_dir, v)
    frames = sig.inputs[0]
    if frames.dtype != "float32":
        problems.append(f"the graph's input {frames.describe()} is not float32: nvinfer writes float32 frames into it")
    nhwc = v.get("network-input-order", 0) == 1
    dims = v.get("infer-dims")
    shape = frames.shape
    graph_chw = (shape[3], shape[1], shape[2]) if nhwc else tuple(shape[1:4])
    if dims is None or len(dims) != 3:
        problems.append(f"infer-dims={dims}: expected c;h;w")
    elif any(g is not None and g != d for g, d in zip(graph_chw, dims)):
        problems.append(f"infer-dims={';'.join(map(str, dims))} (c;h;w) but the graph's input {frames.describe()} is "
                        f"{'NHWC' if nhwc else 'NCHW'} with c;h;w = {';'.join('?' if g is None else str(g) for g in graph_chw)}")
    batch = v.get("batch-size", 1)
    if shape and shape[0] is not None and shape[0] != batch:
        problems.append(f"batch-size={batch} but the graph's batch is fixed at {shape[0]}")
    if shape and shape[0] is not None and shape[0] > 1:
        problems.append(f"the graph's batch is fixed at {shape[0]}: nvinfer builds batches 1..batch-size from one graph")
    if len(v.get("offsets", [0, 0, 0])) != 3:
        problems.append(f"offsets has {len(v['offsets'])} values for 3 channels")
    names = [o.name for o in sig.outputs]
    for name in v.get("output-blob-names", []):
        if name not in names:
            problems.append(f"output-blob-names: {name!r} is not a graph output ({', '.join(names)})")
    problems += _check_output(model_dir, v, sig.outputs[0])
    if v.get("network-mode") == 1 and "int8-calib-file" not in v and not onnx_graph.has_qdq(model_dir / v["onnx-file"]):
        problems.append("network-mode=1 (INT8) without int8-calib-file, and the graph has no Q/DQ nodes: TensorRT "
                        "would have no INT8 ranges")
    return problems


PREPROCESS_KEYS = ("model-color-format", "net-scale-factor", "offsets", "network-input-order")


def _check_recorded(model_dir: Path, v: dict) -> list[str]:
    """The preprocessing keys against the ones the export wrote (edgeseg-export.json): nothing in the graph
    says which colour order or normalization it expects."""
    import json

    record = model_dir / "edgeseg-export.json"
    if not record.is_file():
        return []
    written = json.loads(record.read_text()).get("config", {})
    problems = []
    for key in PREPROCESS_KEYS:
        if key in written and _parse(written[key], KEYS[key]) != v.get(key):
            problems.append(f"{key}={v.get(key)}, but the engine takes {key}={written[key]} (edgeseg-export.json)")
    return problems


def _check_output(model_dir: Path, v: dict, out) -> list[str]:
    kind = v.get("network-type", 0)
    problems = []
    if out.dtype not in ("float32", "float16", "int8", "int32"):
        problems.append(f"the output {out.describe()}: nvinfer binds float32, float16, int8 or int32 tensors only")
    classes = _labels(model_dir, v)
    if kind == 2:
        if out.dtype != "float32" or len(out.shape) != 4:
            problems.append(f"network-type=2 reads float scores (N, C, h, w); the first output is {out.describe()}")
        else:
            channels = out.shape[3] if v.get("segmentation-output-order", 0) == 1 else out.shape[1]
            if channels is not None and classes is not None and channels != len(classes):
                problems.append(f"the output has {channels} classes; {v.get('labelfile-path')} names {len(classes)}")
            if v.get("num-detected-classes", channels) != channels:
                problems.append(f"num-detected-classes={v['num-detected-classes']} but the output has {channels}")
    elif kind == 100 and v.get("output-tensor-meta", 0) != 1:
        problems.append("network-type=100 without output-tensor-meta=1: nothing would reach the application")
    elif kind not in (2, 100):
        problems.append(f"network-type={kind} is not a segmentation type edgeseg exports (2, or 100 with tensor meta)")
    return problems


def _labels(model_dir: Path, v: dict) -> list[str] | None:
    name = v.get("labelfile-path")
    path = model_dir / name if name else None
    return path.read_text().splitlines() if path and path.is_file() else None
