"""A Triton Inference Server model: `<repo>/<name>/config.pbtxt`, `1/<model file>`, `labels.txt`.

The configuration is written from the served graph's own inputs and outputs (`Signature`) and the manifest:
- batch: a graph with an open batch dimension gets `max_batch_size` (dims without the batch) and dynamic
  batching; a fixed batch gets `max_batch_size: 0` and the full shape. Triton's ONNX Runtime backend refuses
  `max_batch_size > 0` unless the graph's first dimension is open, and a fixed batch-1 graph gains nothing
  from server-side batching, so this is right for all three backends.
- `format: FORMAT_NHWC` only with exactly three dims (Triton refuses it otherwise): the uint8 frames of a
  batching engine.
- no `label_filename`: Triton uses it for its classification extension (top-k of a class vector), which means
  nothing for a label map; labels.txt is named in the parameters instead.
- instance group: the kind the engine was built for (CPU for ONNX Runtime and OpenVINO, GPU for TensorRT).
- `parameters`: what the manifest knows and Triton has no field for (classes, palette, precision as run,
  preprocessing, output kind, what the client must still do), as strings under `edgeseg.`; the backends
  read only their own keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeseg.backends import serve_side
from edgeseg.manifest import Manifest
from edgeseg.serve.served import ServedModel
from edgeseg.serve.tensors import TRITON_TYPES, Tensor

CONFIG = "config.pbtxt"
LABELS = "labels.txt"
VERSION = "1"


@dataclass(frozen=True)
class TritonOptions:
    max_batch: int = 8  # for graphs with an open batch dimension
    queue_delay_us: int = 1000  # how long the dynamic batcher waits to fill a batch (frames from many cameras)
    instances: int = 1


class Enum(str):
    """A protobuf enum value: written without quotes."""


def model_config(name: str, manifest: Manifest, served: ServedModel, options: TritonOptions,
                 profile_max: int | None = None) -> dict:
    half = serve_side(manifest.backend["name"])
    sig = served.signature
    batched = manifest.output.kind != "instances" and all(t.shape and t.shape[0] is None for t in sig.inputs)
    max_batch = min(options.max_batch, profile_max) if batched and profile_max else options.max_batch
    max_batch = max_batch if batched else 0
    config: dict = {"name": name, "backend": half.TRITON_BACKEND, "max_batch_size": max_batch}
    if served.graph != half.TRITON_MODEL_FILE:
        config["default_model_filename"] = served.graph
    config["input"] = [_io(t, max_batch, frames=t.name == manifest.input.name and manifest.input.layout == "NHWC")
                       for t in sig.inputs]
    config["output"] = [_io(t, max_batch) for t in sig.outputs]
    if max_batch:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": options.queue_delay_us}
    config["instance_group"] = [{"count": options.instances, "kind": Enum(half.INSTANCE_KIND)}]
    params = {**half.triton_parameters(manifest, bool(max_batch)), **edgeseg_parameters(manifest, served)}
    config["parameters"] = params
    return config


def _io(t: Tensor, max_batch: int, frames: bool = False) -> dict:
    dims = [-1 if d is None else d for d in (t.shape[1:] if max_batch else t.shape)]
    entry: dict = {"name": t.name, "data_type": Enum(TRITON_TYPES[t.dtype])}
    if frames and len(dims) == 3:
        entry["format"] = Enum("FORMAT_NHWC")
    entry["dims"] = dims
    return entry


def edgeseg_parameters(manifest: Manifest, served: ServedModel) -> dict[str, str]:
    """The manifest's facts a client needs, as Triton model parameters (strings; lists as JSON)."""
    spec = manifest.input
    params = {
        "edgeseg.engine": manifest.name,
        "edgeseg.classes": json.dumps(list(manifest.classes)),
        "edgeseg.labels_file": LABELS,  # one class a line; not `label_filename`, which is for classification outputs
        "edgeseg.palette_bgr": json.dumps([list(c) for c in manifest.palette]),
        "edgeseg.ignore_index": str(manifest.ignore_index),
        "edgeseg.precision": manifest.precision["as_run"],
        "edgeseg.input": f"{spec.dtype} {spec.layout} {spec.color}, preprocessing {spec.preprocess}",
        "edgeseg.mean_rgb": json.dumps(list(spec.mean)),
        "edgeseg.std_rgb": json.dumps(list(spec.std)),
        "edgeseg.resize": spec.resize,
        "edgeseg.output": served.kind,
        "edgeseg.built_with": f"{manifest.backend['name']} {manifest.backend.get('version', '')}".strip(),
    }
    if spec.preprocess != "fused":
        params["edgeseg.client_preprocess"] = ("BGR frames -> RGB, /255, minus mean_rgb, divided by std_rgb, NCHW "
                                               "float32 (edgeseg.runtime.session.normalize)")
    if served.client_tail:
        params["edgeseg.client_tail"] = served.client_tail
    if served.variant:
        params["edgeseg.graph"] = served.variant
    return params


def dumps(config: dict) -> str:
    """protobuf text format in the layout Triton's documentation uses (lists in brackets, one field a line)."""
    return "".join(_field(key, value, 0) for key, value in config.items())


def _field(key: str, value, depth: int) -> str:
    pad = "  " * depth
    if key == "parameters":
        return "".join(f'{pad}parameters {{\n{pad}  key: {_scalar(k)}\n{pad}  value {{ string_value: {_scalar(v)} }}\n'
                       f'{pad}}}\n' for k, v in value.items())
    if isinstance(value, dict):
        return f"{pad}{key} {{\n" + "".join(_field(k, v, depth + 1) for k, v in value.items()) + f"{pad}}}\n"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        items = [f"{pad}  {{\n" + "".join(_field(k, v, depth + 2) for k, v in item.items()) + f"{pad}  }}"
                 for item in value]
        return f"{pad}{key} [\n" + ",\n".join(items) + f"\n{pad}]\n"
    if isinstance(value, list):
        return f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]\n"
    return f"{pad}{key}: {_scalar(value)}\n"


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # JSON escapes (backslash, quote, \n) read the same in protobuf text


def write_model(model_dir: Path, name: str, manifest: Manifest, served: ServedModel, options: TritonOptions,
                profile_max: int | None = None) -> dict:
    """config.pbtxt and labels.txt beside the version folder `served` was written into."""
    config = model_config(name, manifest, served, options, profile_max)
    (model_dir / CONFIG).write_text(dumps(config))
    (model_dir / LABELS).write_text("".join(f"{c}\n" for c in manifest.classes))
    return config
