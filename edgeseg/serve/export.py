"""engines/NAME -> a model for Triton, DeepStream or OpenVINO Model Server, checked and published whole.

Each export writes one model folder `<out>/<name>/` (staged beside it, renamed into place when every check
passed; replaced only with --force, and only if it is an edgeseg export) plus, for OVMS, its entry in
`<out>/config.json` (rewritten atomically, other models' entries kept). The folder holds
`edgeseg-export.json`: the engine and manifest it came from, every file's sha256, the graph's inputs and
outputs, what the client must do, the checks that ran and the parity measured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgeseg import __version__
from edgeseg.errors import BadInputError, EdgesegError, UnknownNameError
from edgeseg.io import MANIFEST_NAME, check_replaceable, sha256_file, staged_dir
from edgeseg.manifest import Manifest, load_manifest
from edgeseg.serve import deepstream, ovms, parity, triton
from edgeseg.serve.served import ServedModel, wants_tail, write_deepstream_graph, write_served

TARGETS = ("triton", "deepstream", "ovms")
RECORD = "edgeseg-export.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ServeRequest:
    engine: Path
    target: str
    out: Path
    name: str | None = None
    tail: str = "auto"  # auto | server (label maps from the server) | client (the client upsamples, argmaxes)
    force: bool = False
    check_frames: str | None = None  # images the served model is compared with the engine on
    check_count: int = parity.DEFAULT_FRAMES
    triton: triton.TritonOptions = triton.TritonOptions()
    batch: int | None = None  # DeepStream batch-size for an engine with an open batch (default triton.max_batch)
    input_size: tuple[int, int] | None = None  # DeepStream network size for an engine with open height/width
    ds_std: str = "graph"  # normalized-input engines on DeepStream: per-channel 1/std in the graph, or one "scale"
    command: str = ""


@dataclass
class ServeExport:
    target: str
    name: str
    out: Path
    model_dir: Path
    files: dict[str, str]  # path under model_dir -> sha256
    kind: str
    client_tail: str
    source: str  # the engine file the served graph came from
    variant: str
    notes: list[str]
    checks: list[str]
    parity: dict
    config: dict = field(default_factory=dict)
    signature: dict = field(default_factory=dict)  # the served graph's inputs and outputs


def export(request: ServeRequest) -> ServeExport:
    if request.target not in TARGETS:
        raise UnknownNameError("serve target", request.target, TARGETS)
    root = Path(request.engine)
    manifest = load_manifest(root)
    if manifest.backend["name"] == "torch":
        raise BadInputError(f"{root} is a torch engine: it runs the checkpoint in PyTorch, which these servers do not",
                            "build an onnxruntime, openvino or tensorrt engine (edgeseg build --backend ...) and "
                            "export that")
    name = request.name or manifest.name
    if not _NAME.match(name):
        raise BadInputError(f"model name {name!r} is not a plain name", "use letters, digits, '.', '_' and '-' (--name)")
    model_dir = Path(request.out) / name
    check_replaceable(model_dir, request.force, RECORD)
    tail = wants_tail(manifest, request.tail, request.target)
    _PRECHECKS[request.target](request, manifest, name)  # what can be refused is refused before anything is written
    existed = model_dir.exists()
    with staged_dir(model_dir, overwrite=request.force, marker=RECORD, scratch=_scratch(Path(request.out))) as stage:
        result = _WRITERS[request.target](request, manifest, root, stage, name, tail)
        result.files = {p.relative_to(stage).as_posix(): sha256_file(p) for p in sorted(stage.rglob("*")) if p.is_file()}
        result.model_dir = model_dir
        (stage / RECORD).write_text(_record(request, manifest, root, result))
    if request.target == "ovms":  # listed only once its folder is in place
        try:
            ovms.publish_entry(Path(request.out), result.config, request.force)
        except BaseException:
            if not existed:
                shutil.rmtree(model_dir, ignore_errors=True)
            raise
    return result


def _scratch(out: Path) -> Path | None:
    """Where to stage: beside the repository, not in it (Triton polling a repository would try to load a staging
    folder as a model), if that folder is on the same file system (a rename cannot cross one); else None."""
    parent = out.resolve().parent
    try:
        same = os.stat(parent).st_dev == os.stat(out if out.exists() else parent).st_dev
    except OSError:
        return None
    return parent if same and os.access(parent, os.W_OK) else None


def _precheck_triton(request: ServeRequest, manifest: Manifest, name: str) -> None:
    from edgeseg.serve import triton_check

    triton_check.model_config_schema()  # the schema must be here: fail before the work, naming the extra


def _precheck_ovms(request: ServeRequest, manifest: Manifest, name: str) -> None:
    ovms.merged_config(Path(request.out) / ovms.CONFIG, {"config": {"name": name, "base_path": name}}, request.force)


def _precheck_deepstream(request: ServeRequest, manifest: Manifest, name: str) -> None:
    if manifest.output.kind == "instances":
        raise BadInputError(f"{manifest.name} is an instance engine: nvinfer needs a custom box and mask parser library "
                            "(parse-bbox-instance-mask-func-name) for it, which edgeseg does not ship",
                            "serve instance engines from Triton or OVMS (--to triton|ovms)")
    batch = manifest.input.shape[0]
    if batch is not None and batch > 1:
        raise BadInputError(f"{manifest.name}'s graph has its batch fixed at {batch}: nvinfer builds every batch from 1 "
                            "to batch-size from one graph", "build the engine with --dynamic (or --batch 1) for DeepStream")
    if batch is not None and request.batch not in (None, batch):
        raise BadInputError(f"--batch {request.batch}, but {manifest.name}'s graph takes batches of {batch}",
                            "drop --batch, or build the engine with --dynamic")
    _deepstream_size(manifest, request.input_size)


def _triton(request: ServeRequest, manifest: Manifest, root: Path, stage: Path, name: str, tail: bool) -> ServeExport:
    from edgeseg.backends import serve_side
    from edgeseg.serve import triton_check

    triton_check.model_config_schema()  # the schema must be here: fail before the work, naming the extra
    half = serve_side(manifest.backend["name"])
    served = write_served(manifest, root, stage / triton.VERSION, half.TRITON_MODEL_FILE, "triton", tail)
    profile = half.profile_max_batch(root / manifest.backend["engine"], manifest) \
        if hasattr(half, "profile_max_batch") else None
    config = triton.write_model(stage, name, manifest, served, request.triton, profile)
    problems = triton_check.check_model_dir(stage, served.signature, expected_name=name, exporting=True)
    _refuse(problems, "Triton", stage)
    checks = ["parsed by Triton's ModelConfig protobuf (tritonclient's model_config_pb2)",
              "names, data types and dims against the graph; batch rule; file names; instance kind; label file"]
    runtime = half.RUNTIME
    result = _result(request, name, served, checks, config,
                     parity.measure(root, manifest, served, runtime, request.check_frames, request.check_count,
                                    same_library=True))
    return result


def _ovms(request: ServeRequest, manifest: Manifest, root: Path, stage: Path, name: str, tail: bool) -> ServeExport:
    from edgeseg.backends import serve_side

    source, _ = serve_side(manifest.backend["name"]).served_graph(manifest, "ovms")
    graph = "model.xml" if source.endswith(".xml") else "model.onnx"
    served = write_served(manifest, root, stage / ovms.VERSION, graph, "ovms", tail)
    entry = ovms.model_entry(name, manifest, served)
    problems = ovms.schema_problems({"model_config_list": [entry]})
    problems += ovms.check_model(stage.parent, {**entry["config"], "base_path": stage.name})
    _refuse(problems, "OpenVINO Model Server", stage)
    checks = ["config.json against OVMS's JSON schema (model_server src/schema.cpp)",
              "version folder with one model; layout names and ranks against the graph; target device"]
    same = manifest.backend["name"] == "openvino"
    return _result(request, name, served, checks, entry,
                   parity.measure(root, manifest, served, "openvino", request.check_frames, request.check_count,
                                  same_library=same))


def _deepstream(request: ServeRequest, manifest: Manifest, root: Path, stage: Path, name: str,
                tail: bool) -> ServeExport:
    size = _deepstream_size(manifest, request.input_size)
    batch = manifest.input.shape[0] or request.batch or request.triton.max_batch
    if request.ds_std not in ("graph", "scale"):
        raise BadInputError(f"unknown --ds-std {request.ds_std!r}", "choose graph (exact) or scale")
    std_in_graph = request.ds_std == "graph"
    with tempfile.TemporaryDirectory() as scratch:
        served, mode = write_deepstream_graph(manifest, root, stage, deepstream.GRAPH, tail, Path(scratch), std_in_graph)
    comments = _deepstream_comments(manifest, served)
    keys = deepstream.write_config(stage, manifest, served, mode, batch, size, comments, std_in_graph)
    _refuse(deepstream.check_model_dir(stage), "DeepStream", stage)
    checks = ["every key a documented gst-nvinfer [property] key, values typed and in range",
              "onnx-file float32 input; infer-dims, batch-size, output-blob-names against the graph; "
              "network-type against the output; label file against the classes"]
    spec, frames = parity.check_frames(manifest, request.check_frames, request.check_count)
    agreement = parity.rewrite_agreement(root / served.source, stage / served.graph, manifest, served.kind, frames,
                                         std_in_graph)
    measured = parity.Parity(len(frames), spec, "onnxruntime (DeepStream's TensorRT cannot run here)", agreement,
                             against=f"the argmax of {served.source}")
    if agreement < parity.REWRITE_AGREEMENT:
        raise EdgesegError(f"DeepStream's graph agrees with {served.source} on only {100 * agreement:.2f}% of pixels",
                           "report this: the rewrite is not faithful")
    if manifest.input.preprocess != "fused" and not std_in_graph:
        served.notes.append(_one_scale_effect(manifest, root, served, frames))
    return _result(request, name, served, checks, keys, measured)


def _deepstream_size(manifest: Manifest, given: tuple[int, int] | None) -> tuple[int, int]:
    h, w = manifest.input.size
    if h and w:
        if given not in (None, (h, w)):
            raise BadInputError(f"--input-size {given[0]}x{given[1]}, but {manifest.name} takes {h}x{w} frames only",
                                "drop --input-size, or build the engine with --dynamic")
        return h, w
    if given:
        return given
    raise BadInputError(f"{manifest.name} takes any frame size; nvinfer needs one network size (infer-dims)",
                        "pass --input-size HxW")


def _deepstream_comments(manifest: Manifest, served: ServedModel) -> list[str]:
    lines = [f"edgeseg {__version__}: engine {manifest.name} ({manifest.backend['name']}, "
             f"{manifest.precision['as_run']}); graph: {served.source}, {served.variant or 'as built'}"]
    out = served.signature.outputs[0]
    if served.kind == "probs":
        size = "x".join(str(d) for d in out.shape[2:]) if all(out.shape[2:]) else "of the network's scores"
        lines.append(f"network-type=2: the class map is at the output's resolution {size}")
    else:
        lines.append(f"network-type=100: read the {out.dtype} label map from NvDsInferTensorMeta (output-tensor-meta=1)")
    return lines + served.notes


def _one_scale_effect(manifest: Manifest, root: Path, served: ServedModel, frames) -> str:
    """What one net-scale-factor for three stds does to the labels, measured on the check frames."""
    import numpy as np
    import onnxruntime as ort

    from edgeseg.runtime.session import normalize

    scale, error = deepstream.one_scale(manifest.input.std)
    session = ort.InferenceSession(str(root / served.source), providers=["CPUExecutionProvider"])

    def labels(std) -> np.ndarray:
        return np.concatenate([parity.labels_of(session.run(None, {manifest.input.name: normalize(
            batch, manifest.input.mean, std)})[0], manifest.output.kind, frames.shape[1:3])
            for batch in parity.batches(frames, manifest.input.shape[0])])

    agree = float(np.mean(labels(manifest.input.std) == labels((scale,) * 3)))
    text = (f"WARNING: nvinfer has one net-scale-factor for three channels: std {list(manifest.input.std)} is "
            f"approximated by {scale:.5f} (up to {100 * error:.2f}% off per channel); measured on "
            f"{len(frames)} frames: {100 * agree:.3f}% of pixels keep their class. --ds-std graph (the default) "
            "makes it exact: the graph multiplies by 1/std itself")
    print(text, file=sys.stderr)
    return text


def _refuse(problems: list[str], server: str, stage: Path) -> None:
    if problems:
        raise EdgesegError(f"the {server} configuration edgeseg wrote fails its checks: " + "; ".join(problems),
                           "report this with the engine's manifest.json; nothing was published")


def _result(request: ServeRequest, name: str, served: ServedModel, checks: list[str], config: dict,
            measured: parity.Parity) -> ServeExport:
    sig = served.signature
    tensors = {kind: [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in group]
               for kind, group in (("inputs", sig.inputs), ("outputs", sig.outputs))}
    return ServeExport(request.target, name, Path(request.out), Path(), {}, served.kind, served.client_tail,
                       served.source, served.variant, served.notes, checks + [f"parity: {measured.line()}"], measured.to_dict(),
                       config, tensors)


def _record(request: ServeRequest, manifest: Manifest, root: Path, result: ServeExport) -> str:
    record = {
        "target": request.target, "name": result.name, "engine": str(root.resolve()), "engine_name": manifest.name,
        "manifest_sha256": sha256_file(root / MANIFEST_NAME), "backend": manifest.backend["name"],
        "precision": manifest.precision["as_run"], "output": result.kind, "client_tail": result.client_tail,
        "graph": f"{result.source}: {result.variant or 'unchanged'}", "notes": result.notes, "checks": result.checks,
        "parity": result.parity, "signature": result.signature, "config": result.config, "files": result.files, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": request.command, "edgeseg_version": __version__,
    }
    return json.dumps(record, indent=2) + "\n"


_WRITERS = {"triton": _triton, "ovms": _ovms, "deepstream": _deepstream}
_PRECHECKS = {"triton": _precheck_triton, "ovms": _precheck_ovms, "deepstream": _precheck_deepstream}
