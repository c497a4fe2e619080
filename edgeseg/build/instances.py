"""Instance engines: a Mask R-CNN checkpoint -> its static ONNX graph -> a backend engine + manifest, with the
detection parity against PyTorch, an AP budget and the INT8 speed guard. The semantic orchestrator hands
an instance network here (`build_engine` dispatches), and the engine directory it publishes has the same
layout and the same guarantees: hashed files, one rename, nothing half-written.

What differs from a semantic build: the graph is exported by `edgeseg.models.maskrcnn.deploy` (one frame,
preprocessing fused, NMS and RoIAlign as ONNX operators), INT8 covers the backbone and the feature pyramid
only (`BuildSpec.int8_only`; min/max calibration, since the heads' tensors change length with the frame),
the output is `instances`, and accuracy is COCO AP, not mIoU."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg import __version__, backends
from edgeseg.build.request import BuildRequest, Source
from edgeseg.build.spec import BuildSpec, Built
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.io import staged_dir
from edgeseg.manifest import MANIFEST_NAME, InputSpec, Manifest, OutputSpec, hash_files

BACKBONE_AND_PYRAMID = "/backbone/"  # the exported node names of the backbone and the FPN: INT8
BACKBONE_ONLY = "/backbone/body/"  # the fallback when the AP budget is missed: the pyramid in float too
PARITY_FRAMES = 8
DEFAULT_PARITY_SOURCE = "synthetic-instances:8:val"  # road scenes that need no download
RANDOM_CHECKPOINT = "random.pt"


def is_instance_source(source: Source) -> bool:
    """Whether the request builds an instance network: by --model, else by what the checkpoint holds."""
    from edgeseg.models import task_of

    if source.onnx:
        return False
    if source.model:
        return task_of(source.model) == "instance"
    if source.checkpoint:
        from edgeseg.train.checkpoint import peek_model

        name = peek_model(source.checkpoint)
        return name is not None and task_of(name) == "instance"
    return False


@dataclass(frozen=True)
class _Plan:
    request: BuildRequest
    model: Any  # the network (torch), set to the export size
    name: str
    options: dict[str, Any]
    dataset: dict[str, Any]  # classes (no background), palette, mean, std
    checkpoint: str | None
    size: tuple[int, int]
    backend: Any  # orchestrator.ChosenBackend
    out: Path
    calibration: Any
    validation: Any  # the instance dataset the AP budget is measured on, or None
    parity_frames: Any  # (frames, where from)


def build_instance_engine(request: BuildRequest):
    """Build one instance engine directory (see the module docstring)."""
    from edgeseg.build.orchestrator import BuildResult

    start = time.perf_counter()
    plan = _plan(request)
    with staged_dir(plan.out, overwrite=request.destination.force) as stage:
        onnx_file = stage / "model.onnx"
        _export(plan, onnx_file)
        spec = _spec(plan, stage, BACKBONE_AND_PYRAMID)
        built = plan.backend.build_side.build(onnx_file, stage, spec)
        budget: dict[str, Any] | None = None
        if request.int8.max_ap_drop is not None:
            built, spec, budget = _within_ap_budget(plan, stage, built, spec)
        (stage / RANDOM_CHECKPOINT).unlink(missing_ok=True)
        manifest = _manifest(plan, built, stage, onnx_file, time.perf_counter() - start)
        manifest.extra["instances"]["parity"] = _parity(plan, manifest, stage)
        if budget is not None:
            manifest.extra["ap_budget"] = budget
        if request.precision == "int8" and request.int8.speed_guard:
            from edgeseg.build.orchestrator import _speed_guard

            _speed_guard(plan.backend.build_side, stage, manifest, spec, plan.calibration,
                         request.int8.guard_iterations)
        (stage / MANIFEST_NAME).write_text(manifest.to_json())
    return BuildResult(plan.out, manifest, time.perf_counter() - start)


def _refuse_semantic_options(request: BuildRequest) -> None:
    graph, int8 = request.graph, request.int8
    said = [flag for flag, value in (
        ("--batch", graph.batch != 1), ("--dynamic", graph.dynamic), ("--no-fuse-preprocess", not graph.fuse_preprocess),
        ("--no-fuse-argmax", not graph.fuse_argmax), ("--tail host", graph.tail == "host"), ("--crf", graph.crf is not None),
        ("--max-miou-drop", int8.max_miou_drop is not None), ("--class-map", bool(int8.class_map)),
        ("--max-float-layers", int8.max_float_layers is not None)) if value]
    if said:
        raise BadInputError(f"{', '.join(said)} apply to semantic engines, not to an instance network (Mask R-CNN: "
                            "one frame per call, preprocessing fused, boxes/labels/scores/masks out, accuracy in AP)",
                            "drop them; for an accuracy budget pass --max-ap-drop POINTS with --val SPEC")
    if int8.max_ap_drop is not None and (int8.max_ap_drop < 0 or not int8.val):
        raise BadInputError(f"--max-ap-drop {int8.max_ap_drop} needs a non-negative number of AP points and --val",
                            "pass e.g. --max-ap-drop 1.0 --val synthetic-instances:50:val (held-out images with "
                            "instance annotations)")


def _network(source: Source) -> tuple[Any, str, dict, dict, str | None]:
    """(network, zoo name, options, dataset record, checkpoint path) of a checkpoint or of random weights."""
    if source.checkpoint:
        from edgeseg.train.checkpoint import build_from_checkpoint

        model, payload = build_from_checkpoint(source.checkpoint, task="instance")
        if source.model and source.model != payload["model"]:
            raise BadInputError(f"{source.checkpoint} holds a '{payload['model']}', not a '{source.model}'",
                                f"pass --model {payload['model']}")
        dataset = payload.get("metadata", {}).get("instance_dataset")
        if not dataset:
            raise BadInputError(f"{source.checkpoint} carries no instance dataset record (classes, palette, mean/std)",
                                "build from a checkpoint written by `edgeseg train --model maskrcnn`")
        crop = payload.get("metadata", {}).get("train_crop")
        if crop:  # the frame size it was trained at, in its orientation (min/max sizes lose that)
            dataset = {**dataset, "train_crop": [int(v) for v in crop]}
        return model, payload["model"], payload["options"], dataset, source.checkpoint
    if not source.random_weights:
        raise EdgesegError(f"edgeseg ships no weights for {source.model}: there is nothing to build",
                           f"train one (`edgeseg train --model {source.model} --data synthetic-instances:300`) and "
                           "pass --checkpoint runs/NAME/best.pt, or --random-weights for a speed-only engine")
    import torch

    from edgeseg.data.instances.synthetic import SYNTHETIC_INSTANCE_INFO as info
    from edgeseg.models import build

    torch.manual_seed(0)
    model = build(source.model, source.num_classes, **source.model_options).eval()
    k = source.num_classes - 1
    classes = list(info.classes)[:k] + [f"class{i + 1}" for i in range(len(info.classes), k)]
    palette = [list(c) for c in info.palette][:k] + [[(53 * i) % 256, (97 * i) % 256, (151 * i) % 256]
                                                    for i in range(len(info.palette), k)]
    dataset = {"name": "random", "classes": classes, "palette": palette, "mean": list(info.mean), "std": list(info.std)}
    return model, source.model, dict(source.model_options), dataset, None


def _plan(request: BuildRequest) -> _Plan:
    from edgeseg.build.orchestrator import ChosenBackend
    from edgeseg.models.maskrcnn.deploy import at_size, set_counts

    request.check_precision()
    _refuse_semantic_options(request)
    name, why = backends.resolve(request.backend)
    backend = ChosenBackend(name, why, backends.build_side(name))
    model, zoo_name, options, dataset, checkpoint = _network(request.source)
    size = tuple(request.graph.input_size or dataset.pop("train_crop", None)
                 or (model.transform.min_size[-1], model.transform.max_size))
    graph = request.graph
    model = set_counts(at_size(model.eval(), size), graph.proposals, graph.detections, graph.min_score)
    calibration = None
    if request.precision == "int8":
        from edgeseg.build.calibration import open_calibration

        if not request.int8.calib:
            raise EdgesegError("INT8 needs calibration images and none were given (edgeseg never calibrates on random "
                               "data, and a user's network has no default domain)",
                               "pass --calib with the network's training images, e.g. --calib synthetic-instances:300 "
                               "or --calib folder:IMAGES")
        calibration = open_calibration(request.int8.calib, size, request.int8.calib_size, 1, request.int8.val)
    validation = _validation(request) if request.int8.max_ap_drop is not None else None
    return _Plan(request, model, zoo_name, options, dataset, checkpoint, size, backend,
                 request.destination.directory(zoo_name, request.precision, name), calibration, validation,
                 _parity_frames(request, calibration, size))


def _validation(request: BuildRequest):
    from edgeseg.data.instances import first, parse_instance_spec

    dataset = parse_instance_spec(request.int8.val, "val")
    return first(dataset, request.int8.val_size) if request.int8.val_size else dataset


def _parity_frames(request: BuildRequest, calibration, size: tuple[int, int]) -> tuple[list, str]:
    """Real frames the engine is held to its PyTorch network on: the calibration frames of an INT8 build,
    else --val's, else synthetic road scenes."""
    from edgeseg.runtime.frames import resize_to_input

    if calibration is not None:
        return list(calibration.frames[:PARITY_FRAMES]), f"{calibration.spec} (calibration frames)"
    from edgeseg.data.instances import parse_instance_spec

    spec = request.int8.val or DEFAULT_PARITY_SOURCE
    dataset = parse_instance_spec(spec, "val")
    picks = range(min(PARITY_FRAMES, len(dataset)))
    return [resize_to_input(dataset[i].image, size) for i in picks], spec


def _export(plan: _Plan, path: Path) -> None:
    from edgeseg.models.maskrcnn.deploy import export_maskrcnn

    started = time.perf_counter()
    export_maskrcnn(plan.model, path, plan.size)
    print(f"exported {path.name} (TorchScript exporter, opset 17, {plan.size[0]}x{plan.size[1]}) in "
          f"{time.perf_counter() - started:.1f}s")


def _spec(plan: _Plan, stage: Path, int8_only: str) -> BuildSpec:
    request = plan.request
    method = request.int8.calib_method
    if request.precision == "int8" and method != "minmax":
        print(f"calibration: minmax instead of {method} (the heads' tensors change length with the frame, which the "
              "histogram calibrators cannot stack; see docs/instances.md)")
    return BuildSpec(precision=request.precision, input_shape=(1, *plan.size, 3), input_name="frames",
                     options=dataclasses.replace(request.backend_options, input_size=plan.size),
                     checkpoint=_checkpoint_file(plan, stage), calibration=plan.calibration, calib_method="minmax",
                     keep_float=tuple(request.int8.keep_float), int8_only=int8_only)


def _checkpoint_file(plan: _Plan, stage: Path) -> str | None:
    """The torch backend runs the checkpoint; random weights are saved into the stage as one for it."""
    if plan.checkpoint or plan.backend.name != "torch":
        return plan.checkpoint
    from edgeseg.train.checkpoint import save

    save(stage / RANDOM_CHECKPOINT, plan.model, {"task": "instance", "instance_dataset": plan.dataset,
                                                 "random_weights": True})
    return str(stage / RANDOM_CHECKPOINT)


def _session(plan: _Plan, manifest: Manifest, stage: Path):
    return backends.session_side(plan.backend.name).load(manifest, stage)


def _parity(plan: _Plan, manifest: Manifest, stage: Path) -> dict[str, Any]:
    """Matched detections, box and mask IoU of the staged engine against the PyTorch network."""
    from edgeseg.measure.instance_eval import parity, torch_detector

    frames, source = plan.parity_frames
    with _session(plan, manifest, stage) as session:
        result = parity(torch_detector(plan.model, plan.size), session.detect, frames)
    print(result.summary())
    return {**result.to_dict(), "frames_from": source, "reference": "PyTorch FP32 (the network the graph was "
            "exported from)"}


def _within_ap_budget(plan: _Plan, stage: Path, built: Built, spec: BuildSpec):
    """Score the engine and the PyTorch network on --val; past the budget, an INT8 build keeps the pyramid
    in float too and is scored again; still past it, the build stops with both figures."""
    from edgeseg.measure.instance_eval import score, torch_detector

    val, limit = plan.validation, plan.request.int8.max_ap_drop
    reference = score(torch_detector(plan.model, plan.size), val, plan.size, desc="AP budget: PyTorch FP32")
    tried = []
    while True:
        manifest = _manifest(plan, built, stage, stage / "model.onnx", 0.0)
        with _session(plan, manifest, stage) as session:
            engine = score(session.detect, val, plan.size, desc=f"AP budget: {plan.backend.name} {spec.precision}")
        drop = max(reference.box_ap - engine.box_ap, reference.mask_ap - engine.mask_ap)
        tried.append({"int8_only": spec.int8_only if spec.precision == "int8" else None,
                      "box_ap": round(engine.box_ap, 3), "mask_ap": round(engine.mask_ap, 3), "drop": round(drop, 3)})
        print(f"AP budget: {spec.precision} box AP {engine.box_ap:.2f}, mask AP {engine.mask_ap:.2f}; PyTorch FP32 "
              f"{reference.box_ap:.2f} / {reference.mask_ap:.2f}; drop {drop:.2f} (budget {limit})")
        if drop <= limit:
            break
        if spec.precision != "int8" or spec.int8_only == BACKBONE_ONLY:
            raise EdgesegError(f"the {plan.backend.name} {spec.precision} engine loses {drop:.2f} AP points on "
                               f"{plan.request.int8.val} (budget {limit}): " + "; ".join(
                                   f"{t['int8_only'] or spec.precision}: drop {t['drop']}" for t in tried),
                               "raise --max-ap-drop, calibrate on more images (--calib-size), or build fp32")
        for name in built.files:
            if name != "model.onnx":
                (stage / name).unlink(missing_ok=True)
        spec = dataclasses.replace(spec, int8_only=BACKBONE_ONLY)
        print("AP budget: past the budget; the feature pyramid goes back to float and the engine is built again")
        built = plan.backend.build_side.build(stage / "model.onnx", stage, spec)
    return built, spec, {"max_drop": limit, "val": plan.request.int8.val, "images": len(val),
                         "reference_box_ap": round(reference.box_ap, 3), "reference_mask_ap": round(reference.mask_ap, 3),
                         "tried": tried, "int8_scope": spec.int8_only if spec.precision == "int8" else None}


def _manifest(plan: _Plan, built: Built, stage: Path, onnx_file: Path, seconds: float) -> Manifest:
    from edgeseg.build.orchestrator import ChosenBackend, _backend_section, hardware

    request, dataset = plan.request, plan.dataset
    backend: ChosenBackend = plan.backend
    model = {"name": plan.name, "options": plan.options, "num_classes": plan.model.num_classes, "task": "instance"}
    if plan.checkpoint:
        from edgeseg.io import sha256_file

        model["checkpoint"] = {"path": os.path.abspath(plan.checkpoint), "sha256": sha256_file(plan.checkpoint)}
    heads, rpn = plan.model.roi_heads, plan.model.rpn
    extra: dict[str, Any] = {"instances": {
        "proposals_per_level": rpn._pre_nms_top_n["testing"], "proposals": rpn._post_nms_top_n["testing"],
        "detections_per_img": heads.detections_per_img, "box_score_thresh": heads.score_thresh,
        "mask_threshold": 0.5, "mask_size": 28, "paste": "host (edgeseg.runtime.instances.paste_masks)"}}
    if plan.calibration is not None:
        extra["calibration"] = {**plan.calibration.describe(), "method": "minmax",
                                "keep_float": list(request.int8.keep_float), "int8_only": BACKBONE_AND_PYRAMID}
        extra["layers_not_int8"] = {"count": len(built.not_int8)}
    import onnx

    nodes = len(onnx.load(str(onnx_file), load_external_data=False).graph.node)
    return Manifest(
        name=plan.out.name, model=model, classes=tuple(dataset["classes"]),
        palette=tuple(tuple(c) for c in dataset["palette"]), ignore_index=255,
        input=InputSpec("frames", (1, *plan.size, 3), "uint8", "NHWC", preprocess="fused",
                        mean=tuple(dataset["mean"]), std=tuple(dataset["std"])),
        output=OutputSpec("boxes,labels,scores,masks", "instances", "float32", (None, 28, 28)),
        precision={"requested": request.precision, "as_run": built.precision_as_run, "note": built.note},
        backend=_backend_section(backend, built),
        onnx={"file": "model.onnx", "exporter": "torchscript", "opset": 17, "nodes_exported": nodes,
              "nodes_simplified": nodes, "simplified": False, "notes": []},
        hardware=hardware(), files=hash_files(stage, ["model.onnx"] + [f for f in built.files if f != "model.onnx"]),
        build_seconds=round(seconds, 2), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=request.command or " ".join(shlex.quote(a) for a in sys.argv), edgeseg_version=__version__,
        random_weights=request.source.random_weights, extra=extra)
