"""A Triton model directory checked offline: the schema by Triton's own protobuf definition, then what a
schema cannot say, by the rules Triton and its backends apply when they load a model.

The schema: `model_config_pb2` from the `tritonclient` wheel (generated from Triton's
common/protobuf/model_config.proto). It is loaded from its file: importing it through `tritonclient.grpc`
would require grpcio, which a configuration check does not need. An unknown field, a wrong type or an
unknown enum value fails the parse.

The rules (from triton-inference-server core's model_config_utils.cc and the onnxruntime, openvino and
tensorrt backends): the name is the folder's; numbered version folders hold the backend's model file;
every graph input is configured and every configured tensor exists, with the graph's data type; dims are
>= 1 or -1, and with max_batch_size > 0 they leave out the batch dimension, which the graph must leave
open; a fixed graph dimension must be configured as itself (ONNX Runtime compares -1 too; TensorRT and
OpenVINO skip a configured -1); FORMAT_NHWC/NCHW need exactly three dims; preferred batch sizes lie in
1..max_batch_size; TensorRT runs on KIND_GPU (or KIND_AUTO) instances, OpenVINO on KIND_CPU ones only;
a label file named by an output exists.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.serve.tensors import TRITON_TYPES, Signature

SERVE_EXTRA = "pip install 'edgeseg[serve]' (it brings tritonclient, whose wheel carries Triton's ModelConfig schema)"
BACKEND_FILES = {"onnxruntime": "model.onnx", "openvino": "model.xml", "tensorrt": "model.plan"}
PLATFORMS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}
# KIND_AUTO becomes KIND_GPU where the server has GPUs: fine for TensorRT, refused by the openvino backend
INSTANCE_KINDS = {"tensorrt": ("KIND_GPU", "KIND_AUTO"), "openvino": ("KIND_CPU",)}
_SCHEMA = None


def model_config_schema():
    """Triton's ModelConfig protobuf module, from the tritonclient wheel's file."""
    global _SCHEMA
    if _SCHEMA is None:
        spec = importlib.util.find_spec("tritonclient")
        path = Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py" if spec else None
        if path is None or not path.is_file():
            raise EdgesegError("Triton's ModelConfig schema is not installed here", SERVE_EXTRA)
        loader_spec = importlib.util.spec_from_file_location("edgeseg_triton_model_config_pb2", path)
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # protobuf's runtime older than the generated code: VersionError
            raise EdgesegError(f"Triton's ModelConfig schema ({path}) does not load: {exc}",
                               "pip install -U protobuf (the schema needs the protobuf runtime it was generated "
                               "with or newer)") from exc
        _SCHEMA = module
    return _SCHEMA


def parse_config(text: str):
    """config.pbtxt text -> ModelConfig message; EdgesegError naming the line where it breaks."""
    from google.protobuf import text_format

    schema = model_config_schema()
    try:
        return text_format.Parse(text, schema.ModelConfig())
    except text_format.ParseError as exc:
        raise EdgesegError(f"config.pbtxt is not a valid Triton ModelConfig: {exc}",
                           "fix that line (field names and enum values as in Triton's model_config.proto)") from exc


def check_model_dir(model_dir: Path, recorded: Signature | None = None, expected_name: str | None = None,
                    exporting: bool = False) -> list[str]:
    """Every problem Triton would have loading `model_dir` (empty: none found). `recorded`: the signature
    to compare with where the graph cannot be read here (a TensorRT plan without TensorRT); `expected_name`:
    the folder name it will be published under (default its own); `exporting`: `recorded` is what the export
    just read from the graph the plan was built from (no record to verify it against yet)."""
    path = model_dir / "config.pbtxt"
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        config = parse_config(path.read_text())
    except EdgesegError as exc:
        return [exc.problem]
    problems: list[str] = []
    folder = expected_name or model_dir.name
    if config.name and config.name != folder:
        problems.append(f"name {config.name!r} is not the folder's name {folder!r} (Triton refuses it)")
    backend = config.backend or PLATFORMS.get(config.platform, "")
    if backend not in BACKEND_FILES:
        return problems + [f"backend {config.backend!r} / platform {config.platform!r}: expected onnxruntime, "
                           "openvino or tensorrt"]
    filename = config.default_model_filename or BACKEND_FILES[backend]
    versions = sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))
    if not versions:
        return problems + [f"{model_dir} has no version folder (1/, 2/, ...)"]
    signature = None
    for version in versions:
        graph = version / filename
        if not graph.is_file():
            problems.append(f"{graph} is missing: the {backend} backend loads {filename}")
        elif graph.suffix == ".xml" and not graph.with_suffix(".bin").is_file():
            problems.append(f"{graph.with_suffix('.bin')} is missing beside {graph.name}")
        elif signature is None:
            signature, problem = _graph_signature(graph, recorded, model_dir, exporting)
            problems += [problem] if problem else []
    if signature is None:
        return problems
    problems += _check_io(config, signature, backend)
    problems += _check_batching(config, signature)
    problems += _check_instances(config, backend)
    for out in config.output:
        if out.label_filename and not (model_dir / out.label_filename).is_file():
            problems.append(f"output {out.name!r}: label_filename {out.label_filename!r} is not in {model_dir}")
    problems += _check_parameters(config, signature)
    return problems


def _graph_signature(graph: Path, recorded: Signature | None, model_dir: Path,
                     exporting: bool) -> tuple[Signature | None, str]:
    """The graph's I/O, or (a plan TensorRT cannot read here) the one recorded at export, if the plan is still
    the file that was exported; else (None, why nothing about the tensors was checked)."""
    from edgeseg.io import sha256_file
    from edgeseg.serve.served import read_signature

    found = read_signature(graph)
    if found is not None or (exporting and recorded is not None):
        return found or recorded, ""
    exported = _recorded_hash(model_dir, graph)
    if recorded is None or exported is None:
        return None, (f"{graph.name} cannot be read here (no TensorRT) and no edgeseg-export.json records its inputs "
                      "and outputs: names, data types and dims were not checked")
    if sha256_file(graph) != exported:
        return None, (f"{graph.name} is not the file edgeseg exported (sha256 differs from edgeseg-export.json): "
                      "its inputs and outputs were not checked")
    return recorded, ""


def _recorded_hash(model_dir: Path, graph: Path) -> str | None:
    record = model_dir / "edgeseg-export.json"
    if not record.is_file():
        return None
    files = json.loads(record.read_text()).get("files", {})
    return files.get(graph.relative_to(model_dir).as_posix())


def _check_io(config, signature: Signature, backend: str) -> list[str]:
    schema = model_config_schema()
    names = {v: k for k, v in TRITON_TYPES.items()}
    problems = []
    configured = {t.name for t in config.input}
    for t in signature.inputs:
        if t.name not in configured:
            problems.append(f"graph input {t.name!r} is not configured (Triton needs every input)")
    for kind, entries, tensors in (("input", config.input, signature.inputs), ("output", config.output, signature.outputs)):
        for entry in entries:
            tensor = next((t for t in tensors if t.name == entry.name), None)
            if tensor is None:
                problems.append(f"{kind} {entry.name!r} is not in the graph (its {kind}s: "
                                f"{', '.join(t.name for t in tensors)})")
                continue
            dtype = schema.DataType.Name(entry.data_type)
            if names.get(dtype) != tensor.dtype:
                problems.append(f"{kind} {entry.name!r}: data_type {dtype} but the graph's is {tensor.dtype} "
                                f"({TRITON_TYPES.get(tensor.dtype, '?')})")
            problems += _check_dims(kind, entry, tensor, config.max_batch_size, backend)
            if kind == "input" and entry.format:
                fmt = schema.ModelInput.Format.Name(entry.format)
                if len(entry.dims) != 3:
                    problems.append(f"input {entry.name!r}: {fmt} needs exactly 3 dims, has {len(entry.dims)}")
                elif entry.dims[2 if fmt == "FORMAT_NHWC" else 0] not in (3, -1):
                    problems.append(f"input {entry.name!r}: {fmt} with dims {list(entry.dims)} puts "
                                    f"{entry.dims[2 if fmt == 'FORMAT_NHWC' else 0]} channels where 3 are")
    return problems


def _check_dims(kind: str, entry, tensor, max_batch: int, backend: str) -> list[str]:
    dims = list(entry.dims)
    where = f"{kind} {entry.name!r}"
    if not dims:
        return [f"{where}: dims are empty"]
    if any(d == 0 or d < -1 for d in dims):
        return [f"{where}: dims {dims}: each must be >= 1 or -1"]
    full = ([-1] + dims) if max_batch > 0 else dims
    graph = [-1 if d is None else d for d in tensor.shape]
    if len(full) != len(graph):
        batch = " plus the batch dimension max_batch_size adds" if max_batch > 0 else ""
        return [f"{where}: dims {dims}{batch} have {len(full)} dimensions; the graph's {tensor.describe()} has {len(graph)}"]
    problems = []
    for axis, (cfg, model) in enumerate(zip(full, graph)):
        if max_batch > 0 and axis == 0:
            if model != -1:
                problems.append(f"{where}: max_batch_size {max_batch} needs an open batch dimension, but the graph's "
                                f"is fixed at {model} (export with --dynamic, or set max_batch_size: 0 and full dims)")
            continue
        if model == -1 or cfg == model or (backend in ("tensorrt", "openvino") and cfg == -1):
            continue  # TensorRT and OpenVINO skip a -1 in the configuration; ONNX Runtime compares it
        problems.append(f"{where}: dimension {axis} is {cfg} but the graph's is {model} ({tensor.describe()})")
    return problems


def _check_batching(config, signature: Signature) -> list[str]:
    if config.max_batch_size < 0:
        return [f"max_batch_size {config.max_batch_size} is negative"]
    if not config.HasField("dynamic_batching"):
        return []
    return [f"dynamic_batching preferred_batch_size {size} is not in 1..max_batch_size ({config.max_batch_size})"
            for size in config.dynamic_batching.preferred_batch_size if size <= 0 or size > config.max_batch_size]


def _check_instances(config, backend: str) -> list[str]:
    schema = model_config_schema()
    problems = []
    for group in config.instance_group:
        kind = schema.ModelInstanceGroup.Kind.Name(group.kind)
        if group.count < 0:
            problems.append(f"instance_group count {group.count} is negative")
        allowed = INSTANCE_KINDS.get(backend)
        if allowed and kind not in allowed:
            problems.append(f"instance_group kind {kind}: the {backend} backend runs on {' or '.join(allowed)}")
    return problems


def _check_parameters(config, signature: Signature) -> list[str]:
    """edgeseg's own parameters against the graph: as many classes as the logits have channels."""
    value = config.parameters.get("edgeseg.classes")
    if value is None:
        return []
    try:
        classes = json.loads(value.string_value)
    except json.JSONDecodeError:
        return ["parameter edgeseg.classes is not a JSON list"]
    kind = config.parameters["edgeseg.output"].string_value if "edgeseg.output" in config.parameters else ""
    if kind in ("logits", "lowres-logits", "probs") and signature.outputs:
        channels = signature.outputs[0].shape[1] if len(signature.outputs[0].shape) == 4 else None
        if channels is not None and channels != len(classes):
            return [f"parameter edgeseg.classes names {len(classes)} classes; the output has {channels} channels"]
    return []
