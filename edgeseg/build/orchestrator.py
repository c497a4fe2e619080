"""The build orchestrator: checkpoint -> ONNX -> backend engine -> manifest, published in one rename."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg import __version__, backends
from edgeseg.errors import BadInputError, CheckpointError, EdgesegError
from edgeseg.build.spec import BuildSpec
from edgeseg.build.export import ExportOptions, export_onnx
from edgeseg.io import staged_dir
from edgeseg.manifest import MANIFEST_NAME, InputSpec, Manifest, OutputSpec, hash_files

ONNX_FILE = "model.onnx"
PRECISIONS = ("fp32", "fp16", "int8")
TAILS = ("auto", "host", "engine")
# CPU backends run the full-resolution upsampling + argmax slower than the host's boundary-only tail
# (Fast-SCNN 360x480: 7-10 ms in the graph); GPUs and the torch reference keep it in the graph
HOST_TAIL_BACKENDS = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class BuildRequest:
    checkpoint: str | None = None
    model: str | None = None  # checked against the checkpoint; required with random_weights
    model_options: dict[str, Any] = field(default_factory=dict)
    random_weights: bool = False  # speed-only experiments; stamped in the manifest
    num_classes: int = 11
    precision: str = "fp32"
    backend: str = "auto"
    input_size: tuple[int, int] | None = None  # default: the checkpoint's training crop
    batch: int = 1
    dynamic: bool = False
    fuse_preprocess: bool = True
    fuse_argmax: bool = True
    tail: str = "auto"  # "host": upsampling + argmax in the session; "engine": in the graph; auto: host on CPUs
    exporter: str = "dynamo"
    out: str | None = None  # default engines/<model>-<precision>-<backend>
    engines_dir: str = "engines"
    force: bool = False
    backend_options: dict[str, Any] = field(default_factory=dict)
    calib: str | None = None  # INT8: dataset spec or calibration/LIST.txt; required, never random
    calib_size: int | None = None
    calib_method: str = "entropy"
    val: str | None = None  # the split accuracy is reported on: calibration overlapping it is warned about
    keep_float: tuple[str, ...] = ()
    max_miou_drop: float | None = None  # INT8: keep sensitive layers in float until the drop on --val fits
    val_size: int | None = None  # images of --val the budget measures on (default: all)
    max_float_layers: int | None = None  # most layers the budget may keep in float
    speed_guard: bool = True  # INT8: time against the backend's float builds and record the recommendation
    guard_iterations: int = 30
    command: str = ""


@dataclass
class BuildResult:
    path: Path
    manifest: Manifest
    seconds: float

    def summary(self) -> str:
        m = self.manifest
        size = sum((self.path / f).stat().st_size for f in m.files) / 2**20
        ran = m.precision["as_run"]
        precision = m.precision["requested"] + (f" (runs as {ran})" if ran != m.precision["requested"] else "")
        stamp = "  [RANDOM WEIGHTS: speed only]" if m.random_weights else ""
        return (f"built {self.path} ({m.backend['name']} {m.backend['version']}, {precision}, "
                f"{len(m.files)} files, {size:.1f} MiB) in {self.seconds:.1f}s{stamp}")


def _source_model(request: BuildRequest):
    """(model, checkpoint payload or None, dataset info dict) for the request."""
    from edgeseg.train.checkpoint import build_from_checkpoint

    if request.checkpoint:
        model, payload = build_from_checkpoint(request.checkpoint)
        if request.model and request.model != payload["model"]:
            raise CheckpointError(f"{request.checkpoint} holds a '{payload['model']}', not a '{request.model}'",
                                  f"pass --model {payload['model']}, or the checkpoint of a {request.model}")
        return model, payload, payload.get("metadata", {}).get("dataset", {})
    if not request.random_weights:
        raise EdgesegError("no --checkpoint given: an engine without trained weights segments nothing",
                           "train one (`edgeseg train --model NAME --data camvid:PATH --out runs/x`) and pass "
                           "--checkpoint runs/x/best.pt, or pass --random-weights for a speed-only experiment")
    if not request.model:
        raise BadInputError("--random-weights needs --model", "pass --model NAME (see `edgeseg models`)")
    import torch

    from edgeseg.data.synthetic import SYNTHETIC_INFO
    from edgeseg.models import build

    torch.manual_seed(0)
    info = SYNTHETIC_INFO
    num_classes = request.num_classes
    dataset = {"name": "random", "classes": list(info.classes)[:num_classes] + [f"class{i}" for i in range(len(info.classes), num_classes)],
               "palette": [list(c) for c in info.palette][:num_classes] + [[i % 256, (37 * i) % 256, (91 * i) % 256] for i in range(len(info.palette), num_classes)],
               "ignore_index": 255, "mean": list(info.mean), "std": list(info.std)}
    return build(request.model, num_classes, **request.model_options).eval(), None, dataset


def _input_size(request: BuildRequest, payload: dict | None) -> tuple[int, int]:
    if request.input_size:
        return tuple(request.input_size)
    meta = (payload or {}).get("metadata", {})
    size = meta.get("eval_input_size") or meta.get("train_crop")
    if not size:
        raise BadInputError("no input size: the checkpoint does not record one", "pass --input-size HxW, e.g. 360x480")
    return tuple(int(v) for v in size)


def build_engine(request: BuildRequest) -> BuildResult:
    """Build one engine directory; nothing appears under its path unless every step succeeded."""
    if request.precision not in PRECISIONS:
        raise BadInputError(f"precision '{request.precision}' is not built by `edgeseg build`",
                            f"choose one of {', '.join(PRECISIONS)}")
    start = time.perf_counter()
    backend_name, why = backends.resolve(request.backend)
    backend = backends.build_side(backend_name)
    model, payload, dataset = _source_model(request)
    model_name = payload["model"] if payload else request.model
    size = _input_size(request, payload)
    out = Path(request.out or Path(request.engines_dir) / f"{model_name}-{request.precision}-{backend_name}")
    options = ExportOptions(size, request.batch, request.dynamic, request.fuse_preprocess, request.fuse_argmax,
                            exporter=request.exporter, host_tail=_host_tail(request, backend_name))
    calibration = None
    if request.precision == "int8":
        from edgeseg.build.calibration import open_calibration

        calibration = open_calibration(request.calib, size, request.calib_size, request.batch, request.val)
    budget = _budget(request, size, model.num_classes)
    with staged_dir(out, overwrite=request.force) as stage:
        exported = export_onnx(model, stage / ONNX_FILE, model.num_classes, dataset["mean"], dataset["std"], options)
        if request.random_weights and backend_name == "torch":
            from edgeseg.train.checkpoint import save

            save(stage / "random.pt", model, {"dataset": dataset, "random_weights": True})
        checkpoint = request.checkpoint or (str(stage / "random.pt") if request.random_weights else None)
        spec = BuildSpec(request.precision, tuple(exported.input_shape), exported.input_name,
                                  {"input_size": size, **request.backend_options}, checkpoint,
                                  calibration, request.calib_method, tuple(request.keep_float), budget)
        built = backend.build(stage / ONNX_FILE, stage, spec)
        (stage / "random.pt").unlink(missing_ok=True)
        manifest = _manifest(request, out.name, model_name, model, payload, dataset, exported, built,
                             backend_name, why, stage, time.perf_counter() - start, calibration)
        if request.precision == "int8" and request.speed_guard:
            _speed_guard(backend, stage, manifest, spec, calibration, request.guard_iterations)
        (stage / MANIFEST_NAME).write_text(manifest.to_json())
    return BuildResult(out, manifest, time.perf_counter() - start)


def _host_tail(request: BuildRequest, backend_name: str) -> bool:
    if request.tail not in TAILS:
        raise BadInputError(f"unknown tail '{request.tail}'", f"choose one of {', '.join(TAILS)}")
    if request.tail == "host" and backend_name == "torch":
        raise BadInputError("the torch backend runs the checkpoint itself; its tail cannot move",
                            "drop --tail host, or build for onnxruntime or openvino")
    if request.tail == "auto":
        return backend_name in HOST_TAIL_BACKENDS
    return request.tail == "host"


def _budget(request: BuildRequest, size: tuple[int, int], num_classes: int):
    if request.max_miou_drop is None:
        return None
    if request.precision != "int8":
        raise BadInputError("--max-miou-drop applies to int8 builds", "add --precision int8, or drop --max-miou-drop")
    if request.max_miou_drop < 0:
        raise BadInputError(f"--max-miou-drop {request.max_miou_drop} is negative", "pass the points you can lose, e.g. 0.5")
    from edgeseg.build.budget import BudgetRequest, open_validation

    return BudgetRequest(request.max_miou_drop, open_validation(request.val, size, num_classes, request.val_size),
                         request.max_float_layers)


def _speed_guard(backend, stage: Path, manifest: Manifest, spec, calibration, iterations: int) -> None:
    """Record in the manifest whether INT8 beat the backend's float builds, and what to deploy."""
    from edgeseg.build.speed_guard import guard

    diagnose = (lambda: backend.int8_diagnosis(stage, manifest)) if hasattr(backend, "int8_diagnosis") else None
    verdict = guard(backend, backends.session_side(manifest.backend["name"]), stage / ONNX_FILE, stage, manifest, spec, calibration.frames[:8],
                    getattr(backend, "FLOAT_PRECISIONS", ("fp32",)), iterations, diagnose)
    print(verdict.summary())
    manifest.extra["speed_guard"] = verdict.to_dict()
    manifest.extra["recommended"] = {
        "precision": verdict.recommended,
        "artifact": "this engine" if verdict.int8_fastest else
        f"an {verdict.recommended} build: edgeseg build ... --backend {manifest.backend['name']} --precision {verdict.recommended}"}


def _manifest(request, name, model_name, model, payload, dataset, exported, built, backend_name, why, stage,
              seconds, calibration=None) -> Manifest:
    fused = request.fuse_preprocess
    input_spec = InputSpec(exported.input_name, tuple(exported.input_shape), exported.input_dtype,
                           "NHWC" if fused else "NCHW", preprocess="fused" if fused else "host",
                           mean=tuple(dataset["mean"]), std=tuple(dataset["std"]))
    output_spec = OutputSpec(exported.output_name, exported.output_kind, exported.output_dtype,
                             tuple(exported.output_shape))
    model_info = {"name": model_name, "options": payload["options"] if payload else dict(request.model_options),
                  "num_classes": model.num_classes}
    if request.checkpoint:
        from edgeseg.io import sha256_file

        model_info["checkpoint"] = {"path": os.path.abspath(request.checkpoint), "sha256": sha256_file(request.checkpoint)}
    onnx_info = {"file": ONNX_FILE, "exporter": exported.exporter, "opset": exported.opset,
                 "nodes_exported": exported.nodes_exported, "nodes_simplified": exported.nodes_simplified,
                 "simplified": exported.simplified, "notes": exported.warnings}
    files = [ONNX_FILE] + [f for f in built.files if f != ONNX_FILE]
    return Manifest(
        name=name, model=model_info, classes=tuple(dataset["classes"]),
        palette=tuple(tuple(c) for c in dataset["palette"]), ignore_index=int(dataset.get("ignore_index", 255)),
        input=input_spec, output=output_spec,
        precision={"requested": request.precision, "as_run": built.precision_as_run, "note": built.note},
        backend={"name": backend_name, "version": built.version, "device": built.device, "engine": built.files[0],
                 "chosen": why, "options": built.options},
        onnx=onnx_info, hardware=hardware(), files=hash_files(stage, files), build_seconds=round(seconds, 2),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=request.command or " ".join(shlex.quote(a) for a in sys.argv), edgeseg_version=__version__,
        random_weights=request.random_weights, extra=_int8_extra(request, built, calibration))


def _int8_extra(request: BuildRequest, built, calibration) -> dict[str, Any]:
    if calibration is None:
        return {}
    extra: dict[str, Any] = {"calibration": {**calibration.describe(), "method": request.calib_method,
                                             "keep_float": list(request.keep_float)},
                             "layers_not_int8": built.not_int8}
    if "budget" in built.options:
        extra["miou_budget"] = built.options.pop("budget")
    return extra


def hardware() -> dict[str, Any]:
    """What the build ran on: the manifest's record of where its precision and speed were established."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(), "os": platform.platform()}
