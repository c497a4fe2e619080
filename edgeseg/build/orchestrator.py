"""The build orchestrator: checkpoint -> ONNX -> backend engine -> manifest, published in one rename."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgeseg import __version__, backends
from edgeseg.build.export import ExportOptions, ExportResult, export_onnx
from edgeseg.build.request import HOST_TAIL_BACKENDS, PRECISIONS, TAILS, BuildRequest, Destination, Graph, Int8, Source
from edgeseg.build.spec import BackendOptions, BuildSpec, Built
from edgeseg.errors import BadInputError, CheckpointError, EdgesegError
from edgeseg.io import staged_dir
from edgeseg.manifest import MANIFEST_NAME, InputSpec, Manifest, OutputSpec, hash_files

# the request's pieces come from here too: one import for the build API
__all__ = ["HOST_TAIL_BACKENDS", "PRECISIONS", "TAILS", "BackendOptions", "BuildRequest", "BuildResult", "Destination",
           "Graph", "Int8", "Source", "build_engine", "hardware"]

ONNX_FILE = "model.onnx"
RANDOM_CHECKPOINT = "random.pt"  # the torch backend's copy of random weights, while it builds


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


@dataclass(frozen=True)
class SourceModel:
    """The request's source resolved: the network in eval mode, what the manifest says of it, its labels."""

    module: Any  # torch.nn.Module; None for a foreign ONNX
    name: str  # zoo name, or the foreign ONNX file's stem
    options: dict[str, Any]  # zoo options it was built with
    dataset: dict[str, Any]  # classes, palette, ignore_index, mean, std
    recorded_size: tuple[int, int] | None = None  # the checkpoint's eval size or training crop
    checkpoint: str | None = None  # the file the weights came from (a user's, or a shipped one)
    shipped: Any = None  # an edgeseg.weights.ShippedWeights when no --checkpoint was given
    foreign: Any = None  # an edgeseg.build.onnx_import.ForeignNetwork for --onnx
    torchvision: str | None = None  # the torchvision builder whose state dict the checkpoint is

    @property
    def num_classes(self) -> int:
        return self.foreign.num_classes if self.foreign is not None else self.module.num_classes


@dataclass(frozen=True)
class ChosenBackend:
    name: str
    why: str  # recorded as the manifest's backend.chosen
    build_side: ModuleType  # build(onnx_path, out_dir, spec) -> Built, FLOAT_PRECISIONS


@dataclass(frozen=True)
class _Plan:
    """The request resolved before anything is staged, so that a bad request fails before a file is written."""

    request: BuildRequest
    source: SourceModel
    backend: ChosenBackend
    size: tuple[int, int]  # (H, W) of the export
    out: Path
    export: ExportOptions
    calibration: Any = None  # an edgeseg.build.calibration.CalibrationSet for int8 builds
    budget: Any = None  # an edgeseg.build.budget.BudgetRequest when an mIoU drop is set
    parity_frames: Any = None  # (frames, where from): real frames a foreign graph's engine is held to


def _source_model(source: Source, graph: Graph, backend: str) -> SourceModel:
    """The checkpoint's network and dataset, the shipped weights of `model`, random weights of a zoo
    model (speed only, said so), or a foreign ONNX read and checked."""
    if source.onnx:
        return _foreign_model(source, graph, backend)
    if source.model:
        from edgeseg.models import require_task

        require_task(source.model, "semantic", f"--model {source.model}")
    if source.checkpoint:
        return _checkpoint_model(source.checkpoint, source.model, source)
    if source.model and not source.random_weights:
        from edgeseg.weights import require_for_model

        shipped = require_for_model(source.model, source.model_options)
        path = shipped.verified_path()
        print(f"weights: the ones shipped with edgeseg, {shipped.describe()} ({path.name}; pass "
              "--checkpoint for your own)")
        return dataclasses.replace(_checkpoint_model(str(path), source.model), shipped=shipped)
    if not source.random_weights:
        raise EdgesegError("neither --checkpoint nor --model given: there are no weights to build",
                           "pass --model NAME for the weights shipped with edgeseg (`edgeseg models` lists them, "
                           "e.g. --model deeplabv3plus), --checkpoint runs/x/best.pt for your own, or "
                           "--random-weights --model NAME for a speed-only experiment")
    if not source.model:
        raise BadInputError("--random-weights needs --model", "pass --model NAME (see `edgeseg models`)")
    import torch

    from edgeseg.models import build

    torch.manual_seed(0)
    model = build(source.model, source.num_classes, **source.model_options).eval()
    return SourceModel(model, source.model, dict(source.model_options), _random_dataset(source.num_classes))


def _foreign_model(source: Source, graph: Graph, backend: str) -> SourceModel:
    from edgeseg.build.onnx_import.steps import open_requested

    foreign = open_requested(source, graph, backend)
    return SourceModel(None, foreign.name, {}, foreign.dataset(), foreign.size, foreign=foreign)


def _checkpoint_model(path: str, model: str | None, source: Source | None = None) -> SourceModel:
    """An edgeseg checkpoint; with `source` (a user's --checkpoint) also torchvision's state dicts."""
    from edgeseg.train.checkpoint import NotEdgesegCheckpoint, build_from_checkpoint

    try:
        network, payload = build_from_checkpoint(path)
    except NotEdgesegCheckpoint as exc:
        if source is None or not model:
            raise CheckpointError(exc.problem, "for a torchvision segmentation state dict pass --model and --backbone "
                                  "(e.g. --model deeplabv3 --backbone resnet50); else train one with `edgeseg train`")
        from edgeseg.build.torchvision_source import torchvision_model

        network, record, dataset = torchvision_model(path, source)
        return SourceModel(network, model, record["options"], dataset, checkpoint=path,
                           torchvision=record["torchvision"])
    if model and model != payload["model"]:
        raise CheckpointError(f"{path} holds a '{payload['model']}', not a '{model}'",
                              f"pass --model {payload['model']}, or the checkpoint of a {model}")
    if source is not None:
        _refuse_what_the_checkpoint_fixes(path, payload, source)
    meta = payload.get("metadata", {})
    size = meta.get("eval_input_size") or meta.get("train_crop")
    return SourceModel(network, payload["model"], payload["options"], meta.get("dataset", {}),
                       tuple(int(v) for v in size) if size else None, checkpoint=path)


def _refuse_what_the_checkpoint_fixes(path: str, payload: dict[str, Any], source: Source) -> None:
    backbone, held = source.model_options.get("backbone"), payload["options"].get("backbone")
    if backbone and backbone != held:
        holds = f"a {payload['model']} with backbone '{held}'" if held else f"a {payload['model']}"
        raise CheckpointError(f"{path} holds {holds}: --backbone {backbone} does not apply",
                              "drop --backbone (an edgeseg checkpoint fixes its backbone)")
    said = source.declared.said() if source.declared is not None else {}
    if said:
        flags = ", ".join("--" + name.replace("_", "-") for name in said)
        raise BadInputError(f"{path} is an edgeseg checkpoint: it carries its own classes and preprocessing, and "
                            f"{flags} cannot change them", f"drop {flags}")


def _random_dataset(num_classes: int) -> dict[str, Any]:
    """Labels for random weights: the synthetic scenes' classes and colours, padded to `num_classes`."""
    from edgeseg.data.synthetic import SYNTHETIC_INFO as info

    classes = list(info.classes)[:num_classes] + [f"class{i}" for i in range(len(info.classes), num_classes)]
    palette = [list(c) for c in info.palette][:num_classes] + [
        [i % 256, (37 * i) % 256, (91 * i) % 256] for i in range(len(info.palette), num_classes)]
    return {"name": "random", "classes": classes, "palette": palette, "ignore_index": 255,
            "mean": list(info.mean), "std": list(info.std)}


def _input_size(graph: Graph, source: SourceModel) -> tuple[int, int]:
    if graph.input_size:
        return tuple(graph.input_size)
    if not source.recorded_size:
        raise BadInputError("no input size: the checkpoint does not record one", "pass --input-size HxW, e.g. 360x480")
    return source.recorded_size


def _plan(request: BuildRequest) -> _Plan:
    """Resolve the backend, the weights, the size and the INT8 inputs, in the order their errors are told."""
    request.check_precision()
    request.graph.refuse_instance_options()
    name, why = backends.resolve(request.backend)
    backend = ChosenBackend(name, why, backends.build_side(name))
    source = _source_model(request.source, request.graph, name)
    request.graph.check_crf(request.precision, name, source.foreign is not None)
    size = _input_size(request.graph, source)
    graph = request.graph
    export = ExportOptions(size, graph.batch, graph.dynamic, graph.fuse_preprocess, graph.fuse_argmax,
                           exporter=graph.exporter, host_tail=graph.host_tail(name))
    calibration = None
    if request.precision == "int8":
        from edgeseg.build.calibration import open_calibration

        int8 = request.int8
        calibration = open_calibration(int8.calib or _shipped_calibration(source), size, int8.calib_size,
                                       graph.batch, int8.val)
    return _Plan(request=request, source=source, backend=backend, size=size,
                 out=request.destination.directory(source.name, request.precision, name,
                                                  "crf" if request.graph.crf is not None else ""), export=export,
                 calibration=calibration, budget=_budget(request, size, source.num_classes, source.dataset.get("classes")),
                 parity_frames=_parity_frames(source, calibration, size))


def _parity_frames(source: SourceModel, calibration, size: tuple[int, int]):
    if source.foreign is None:
        return None
    from edgeseg.build.onnx_import.steps import parity_frames

    return parity_frames(calibration, size)


def _shipped_calibration(source: SourceModel) -> str | None:
    """Shipped weights calibrate on the real train frames shipped with them; a user's own checkpoint has
    no default (its domain is unknown) and open_calibration refuses with the fix."""
    folder = source.shipped.calibration_dir() if source.shipped else None
    if folder is None:
        return None
    print(f"calibration: the {source.shipped.dataset} train frames shipped with edgeseg ({folder}; pass --calib "
          "for your own)")
    return f"folder:{folder}"


def build_engine(request: BuildRequest) -> BuildResult:
    """Build one engine directory; nothing appears under its path unless every step succeeded."""
    from edgeseg.build.instances import build_instance_engine, is_instance_source

    if is_instance_source(request.source):  # Mask R-CNN: its own graph, INT8 scope, parity and AP budget
        return build_instance_engine(request)
    start = time.perf_counter()
    plan = _plan(request)
    with staged_dir(plan.out, overwrite=request.destination.force) as stage:
        exported = _graph(plan, stage / ONNX_FILE)
        spec = _spec(plan, exported, stage)
        built = plan.backend.build_side.build(stage / ONNX_FILE, stage, spec)
        (stage / RANDOM_CHECKPOINT).unlink(missing_ok=True)
        manifest = _manifest(plan, exported, built, stage, time.perf_counter() - start)
        if plan.source.foreign is not None:
            _engine_parity(plan, manifest, stage)
        if request.precision == "int8" and request.int8.speed_guard:
            _speed_guard(plan.backend.build_side, stage, manifest, spec, plan.calibration,
                         request.int8.guard_iterations)
        (stage / MANIFEST_NAME).write_text(manifest.to_json())
    return BuildResult(plan.out, manifest, time.perf_counter() - start)


def _graph(plan: _Plan, path: Path) -> ExportResult:
    """The deployment graph: a zoo network exported, or a foreign one wrapped and held to its original."""
    foreign, options = plan.source.foreign, plan.export
    if foreign is None:
        dataset, module, crf = plan.source.dataset, plan.source.module, plan.request.graph.crf
        if crf is not None:  # ConvCRF behind the network, in the same graph (edgeseg.models.convcrf)
            from edgeseg.models.convcrf import CrfNet

            module = CrfNet(module, dataset["mean"], dataset["std"], crf)
        return export_onnx(module, path, plan.source.num_classes, dataset["mean"], dataset["std"], options,
                           labels=dataset)

    from edgeseg.build.onnx_import.steps import write_checked

    return write_checked(foreign, path, options, plan.parity_frames)


def _engine_parity(plan: _Plan, manifest: Manifest, stage: Path) -> None:
    from edgeseg.build.onnx_import.steps import engine_parity

    if plan.export.fuse_argmax:
        engine_parity(plan.source.foreign, backends.session_side(plan.backend.name), manifest, stage,
                      plan.parity_frames)


def _spec(plan: _Plan, exported: ExportResult, stage: Path) -> BuildSpec:
    """What the backend builds: the staged graph, the request's INT8 inputs and backend options."""
    request = plan.request
    return BuildSpec(precision=request.precision, input_shape=tuple(exported.input_shape),
                     input_name=exported.input_name,
                     options=dataclasses.replace(request.backend_options, input_size=plan.size),
                     checkpoint=_checkpoint_file(plan, stage), calibration=plan.calibration,
                     calib_method=request.int8.calib_method, keep_float=tuple(request.int8.keep_float),
                     budget=plan.budget)


def _checkpoint_file(plan: _Plan, stage: Path) -> str | None:
    """The torch backend's artifact is an edgeseg checkpoint: random weights, and a torchvision state dict
    (which carries no classes or preprocessing), are saved into the stage as one for it."""
    source = plan.request.source
    if plan.source.checkpoint and not plan.source.torchvision:
        return plan.source.checkpoint
    if not source.random_weights and not plan.source.torchvision:
        return None
    if plan.backend.name == "torch":
        from edgeseg.train.checkpoint import save

        save(stage / RANDOM_CHECKPOINT, plan.source.module,
             {"dataset": plan.source.dataset, **({"random_weights": True} if source.random_weights else {})})
    return str(stage / RANDOM_CHECKPOINT)


def _budget(request: BuildRequest, size: tuple[int, int], num_classes: int, classes=None):
    """The held-out split the mIoU budget is measured on, opened before the build (None: no budget);
    with a class map, a network trained on other classes is scored in the split's."""
    drop = request.int8.budget_drop(request.precision)
    if drop is None and request.int8.class_map:
        raise BadInputError("--class-map applies to the mIoU budget", "add --max-miou-drop and --val, or drop --class-map")
    if drop is None:
        return None
    from edgeseg.build.budget import BudgetRequest, open_validation

    int8 = request.int8
    return BudgetRequest(drop, open_validation(int8.val, size, num_classes, int8.val_size, class_map=int8.class_map,
                                               model_classes=classes if int8.class_map else None),
                         int8.max_float_layers)


def _speed_guard(backend: ModuleType, stage: Path, manifest: Manifest, spec: BuildSpec, calibration,
                 iterations: int) -> None:
    """Record in the manifest whether INT8 beat the backend's float builds, and what to deploy."""
    from edgeseg.build.speed_guard import guard

    diagnose = (lambda: backend.int8_diagnosis(stage, manifest)) if hasattr(backend, "int8_diagnosis") else None
    verdict = guard(backend, backends.session_side(manifest.backend["name"]), stage / ONNX_FILE, stage, manifest,
                    spec, calibration.frames[:8], getattr(backend, "FLOAT_PRECISIONS", ("fp32",)), iterations,
                    diagnose)
    print(verdict.summary())
    manifest.extra["speed_guard"] = verdict.to_dict()
    manifest.extra["recommended"] = {
        "precision": verdict.recommended,
        "artifact": "this engine" if verdict.int8_fastest else
        f"an {verdict.recommended} build: edgeseg build ... --backend {manifest.backend['name']} "
        f"--precision {verdict.recommended}"}


def _manifest(plan: _Plan, exported: ExportResult, built: Built, stage: Path, seconds: float) -> Manifest:
    """The engine directory's manifest (edgeseg.manifest, read at run time) from what was exported and built."""
    request, dataset = plan.request, plan.source.dataset
    return Manifest(
        name=plan.out.name, model=_model_section(plan), classes=tuple(dataset["classes"]),
        palette=tuple(tuple(c) for c in dataset["palette"]), ignore_index=int(dataset.get("ignore_index", 255)),
        input=_input_section(exported, request.graph, dataset), output=_output_section(exported),
        precision={"requested": request.precision, "as_run": built.precision_as_run, "note": built.note},
        backend=_backend_section(plan.backend, built), onnx=_onnx_section(exported), hardware=hardware(),
        files=hash_files(stage, [ONNX_FILE] + [f for f in built.files if f != ONNX_FILE]),
        build_seconds=round(seconds, 2), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=request.command or " ".join(shlex.quote(a) for a in sys.argv), edgeseg_version=__version__,
        random_weights=request.source.random_weights,
        extra={**_int8_extra(plan, built), **({"crf": {"kind": "conv", **request.graph.crf.to_dict()}}
                                              if request.graph.crf is not None else {})})


def _model_section(plan: _Plan) -> dict[str, Any]:
    """The network, and the checkpoint it came from by path and hash (a torch baseline re-checks it)."""
    info = {"name": plan.source.name, "options": plan.source.options, "num_classes": plan.source.num_classes}
    checkpoint = plan.source.checkpoint
    if checkpoint:
        from edgeseg.io import sha256_file

        info["checkpoint"] = {"path": os.path.abspath(checkpoint), "sha256": sha256_file(checkpoint)}
    if plan.source.shipped is not None:
        info["weights"] = plan.source.shipped.manifest_record()
    if plan.source.foreign is not None:
        info["onnx_import"] = plan.source.foreign.record()
    if plan.source.torchvision:
        info["torchvision"] = plan.source.torchvision
    return info


def _input_section(exported: ExportResult, graph: Graph, dataset: dict[str, Any]) -> InputSpec:
    fused = graph.fuse_preprocess
    return InputSpec(exported.input_name, tuple(exported.input_shape), exported.input_dtype,
                     "NHWC" if fused else "NCHW", preprocess="fused" if fused else "host",
                     mean=tuple(dataset["mean"]), std=tuple(dataset["std"]))


def _output_section(exported: ExportResult) -> OutputSpec:
    return OutputSpec(exported.output_name, exported.output_kind, exported.output_dtype, tuple(exported.output_shape))


def _onnx_section(exported: ExportResult) -> dict[str, Any]:
    return {"file": ONNX_FILE, "exporter": exported.exporter, "opset": exported.opset,
            "nodes_exported": exported.nodes_exported, "nodes_simplified": exported.nodes_simplified,
            "simplified": exported.simplified, "notes": exported.warnings}


def _backend_section(backend: ChosenBackend, built: Built) -> dict[str, Any]:
    """What the backend recorded; an INT8 budget report goes to the manifest's extra, not its options."""
    options = {k: v for k, v in built.options.items() if k != "budget"}
    return {"name": backend.name, "version": built.version, "device": built.device, "engine": built.files[0],
            "chosen": backend.why, "options": options}


def _int8_extra(plan: _Plan, built: Built) -> dict[str, Any]:
    if plan.calibration is None:
        return {}
    int8 = plan.request.int8
    extra: dict[str, Any] = {"calibration": {**plan.calibration.describe(), "method": int8.calib_method,
                                             "keep_float": list(int8.keep_float)},
                             "layers_not_int8": built.not_int8}
    if "budget" in built.options:
        extra["miou_budget"] = built.options["budget"]
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
