"""`edgeseg eval`: a checkpoint, or an engine and its drop against a reference, through the one
evaluation loop (edgeseg.measure.evaluate)."""

from __future__ import annotations

import argparse
import json

from edgeseg.cli.common import add_force, check_outputs, write_output
from edgeseg.cli.common import size_arg as _size_arg
from edgeseg.errors import BadInputError


def run_eval(args: argparse.Namespace) -> int:
    check_outputs(args.force, args.json)
    if args.save_predictions:  # before any weights are read: a read-only or misnamed folder fails now
        from edgeseg.measure.evaluate import check_prediction_folder

        check_prediction_folder(args.save_predictions)
    if args.limit is not None and args.limit < 1:
        raise BadInputError(f"--limit {args.limit} evaluates nothing", "pass a positive number of images, or drop --limit")
    if args.class_map:  # read before any weights: a missing or malformed map fails now
        from edgeseg.data.class_map import read_class_map

        args.class_map = read_class_map(args.class_map)
    if not args.engine and not args.checkpoint:
        args.engine = default_eval_engine(args)
    if args.crf:
        return run_eval_crf(args)
    if args.engine:
        return run_eval_engine(args)

    if args.samples is not None or args.strip:
        raise BadInputError("--samples and --strip apply to --engine", "evaluate an engine for the strip of frames")
    from edgeseg.data import parse_spec
    from edgeseg.data.base import DatasetInfo
    from edgeseg.data.metrics import format_table
    from edgeseg.measure.evaluate import evaluate, label_writer
    from edgeseg.train.checkpoint import build_from_checkpoint
    from edgeseg.train.predictor import TorchPredictor

    from edgeseg.weights import checkpoint_path

    model, payload = build_from_checkpoint(checkpoint_path(args.checkpoint), task=None)
    if getattr(model, "task", "semantic") == "instance":
        return run_eval_instances(args, model)
    if args.output_stride:
        if not hasattr(model, "set_output_stride"):
            raise BadInputError(f"{payload['model']} has no output stride to change", "drop --output-stride")
        model.set_output_stride(args.output_stride)
    info_dict = payload["metadata"].get("dataset")
    if not info_dict:
        raise BadInputError(f"{args.checkpoint} carries no dataset description (classes, mean/std)",
                            "evaluate checkpoints written by `edgeseg train`")
    info = DatasetInfo.from_dict(info_dict)
    dataset = parse_spec(args.data, "val")
    class_map = _class_map(args, info.classes, dataset)
    predictor = TorchPredictor(model, info.mean, info.std, size=args.input_size, tta=args.tta)
    metrics = evaluate(predictor, dataset, info.classes, dataset.info.ignore_index, progress=not args.no_progress,
                       on_prediction=label_writer(args.save_predictions) if args.save_predictions else None,
                       class_map=class_map).metrics
    print(format_table(metrics))
    if args.json:
        data = {**metrics.to_dict(), **({"class_map": class_map.to_dict()} if class_map else {})}
        write_output(args.json, json.dumps(data, indent=2), args.force)
    return 0


def run_eval_crf(args: argparse.Namespace) -> int:
    """mIoU with and without the dense CRF (edgeseg.measure.crf), per class, and its time per frame."""
    from edgeseg.data import parse_spec
    from edgeseg.measure.crf import CrfParams
    from edgeseg.measure.crf_eval import checkpoint_scores, crf_report, engine_scores, evaluate_crf, format_crf

    said = [f for f, v in (("--reference", args.reference), ("--tta", args.tta), ("--class-map", args.class_map),
                           ("--strip", args.strip), ("--save-predictions", args.save_predictions)) if v]
    if said:
        raise BadInputError(f"--crf compares the network with itself without the CRF; it takes no {', '.join(said)}",
                            f"drop {', '.join(said)}")
    params = CrfParams(args.crf_w1, args.crf_theta_alpha, args.crf_theta_beta, args.crf_w2, args.crf_theta_gamma,
                       args.crf_iterations)
    if args.engine:
        from edgeseg.runtime import load

        session = load(args.engine)
        scores, size, classes, ignore = engine_scores(session), session.manifest.input.size, \
            session.manifest.classes, session.manifest.ignore_index
        size = None if None in size else tuple(size)
    else:
        from edgeseg.data.base import DatasetInfo
        from edgeseg.train.checkpoint import build_from_checkpoint
        from edgeseg.train.predictor import TorchPredictor
        from edgeseg.weights import checkpoint_path

        model, payload = build_from_checkpoint(checkpoint_path(args.checkpoint), task="semantic")
        info = DatasetInfo.from_dict(payload["metadata"]["dataset"])
        predictor = TorchPredictor(model, info.mean, info.std, size=args.input_size)
        scores, size, classes, ignore = checkpoint_scores(predictor), args.input_size, info.classes, info.ignore_index
    dataset = parse_spec(args.data, "val")
    search = None
    if args.crf_search:
        params, search, used = _crf_search(args, scores, size, classes, ignore, params, dataset)
    result, timing = evaluate_crf(scores, size, dataset, classes, ignore, params, args.limit,
                                  progress=not args.no_progress)
    print(format_crf(result, timing))
    if args.json:
        data = {**result.reference.to_dict(), "crf": crf_report(result, timing, params)}  # the network's own, then the CRF's
        if search is not None:
            data["crf"]["search"] = {"data": args.crf_search, "images": used, "grid": search}
        write_output(args.json, json.dumps(data, indent=2), args.force)
    return 0


def _crf_search(args: argparse.Namespace, scores, size, classes, ignore, params, reported):
    """DeepLab's cross-validation of the CRF's appearance kernel on a held-out split, never the one reported."""
    from edgeseg.data import parse_spec
    from edgeseg.measure.crf_eval import search_params

    if args.crf_search_size < 1:
        raise BadInputError(f"--crf-search-size {args.crf_search_size} searches on nothing", "pass 1 or more images")
    held_out = parse_spec(args.crf_search, "train")
    used = min(args.crf_search_size, len(held_out))
    shared = sorted(set(held_out.image_names()[:used]) & set(reported.image_names()))
    if shared:
        raise BadInputError(f"--crf-search {args.crf_search} holds {len(shared)} of the images the results are "
                            f"reported on ({args.data}; e.g. {shared[0]})",
                            "search on a held-out split (e.g. part of train, or a split of your own), never --data's")
    best, rows = search_params(scores, size, held_out, classes, ignore, params, used, progress=not args.no_progress)
    print(f"CRF search on {used} images of {args.crf_search}: "
          + ", ".join(f"w1 {r['w1']:g} theta_alpha {r['theta_alpha']:g} theta_beta {r['theta_beta']:g}: "
                      f"{100 * r['miou']:.2f}" for r in sorted(rows, key=lambda r: -r["miou"])[:3]))
    print(f"best: w1 {best.w1:g}, theta_alpha {best.theta_alpha:g}, theta_beta {best.theta_beta:g}")
    return best, rows, used


def run_eval_instances(args: argparse.Namespace, model) -> int:
    """COCO box and mask AP of an instance checkpoint (Mask R-CNN) in PyTorch, through pycocotools."""
    from edgeseg.data.instances import parse_instance_spec
    from edgeseg.measure.instance_metrics import evaluate_instances, format_instance_table
    from edgeseg.train.instances import predict

    semantic_only = [flag for flag, value in (("--output-stride", args.output_stride), ("--tta", args.tta),
                                              ("--class-map", args.class_map), ("--input-size", args.input_size),
                                              ("--save-predictions", args.save_predictions)) if value]
    if semantic_only:
        raise BadInputError(f"{', '.join(semantic_only)} apply to semantic networks, not to {model.edgeseg_name}",
                            "drop them")
    dataset = parse_instance_spec(args.data, "val")
    if args.limit is not None:
        from edgeseg.data.instances import first

        dataset = first(dataset, args.limit)
    metrics = evaluate_instances(dataset.coco_ground_truth(), predict(model, dataset, not args.no_progress))
    print(format_instance_table(metrics))
    if args.json:
        write_output(args.json, json.dumps(metrics.to_dict(), indent=2), args.force)
    return 0


def _class_map(args: argparse.Namespace, model_classes, dataset):
    """The --class-map resolved against the model's and the dataset's classes (printed), or None after
    checking that the two have the same classes: refused before any reference is loaded or image run."""
    from edgeseg.data.class_map import require_same_classes

    info = dataset.info
    if not args.class_map:
        require_same_classes(model_classes, info.classes, info.name)
        return None
    bound = args.class_map.bind(model_classes, info.classes, info.ignore_index)
    print(bound.summary())
    return bound


def default_eval_engine(args: argparse.Namespace) -> str:
    """Neither --checkpoint nor --engine: the newest engine under engines/, named on the first line (an
    engine carries its classes and preprocessing; checkpoints have no folder to look in). Not when a
    checkpoint-only option says a checkpoint was meant."""
    from edgeseg.errors import EdgesegError
    from edgeseg.runtime.engines import BUILD_COMMAND, default_engine

    meant = [flag for flag, value in (("--tta", args.tta), ("--input-size", args.input_size),
                                      ("--output-stride", args.output_stride)) if value]
    if meant:
        verb = "applies" if len(meant) == 1 else "apply"
        raise BadInputError(f"nothing to evaluate: {', '.join(meant)} {verb} to --checkpoint, and none was given",
                            "pass --checkpoint runs/NAME/best.pt")
    try:
        return str(default_engine())
    except EdgesegError as exc:
        raise BadInputError(f"nothing to evaluate: {exc.problem}",
                            f"pass --checkpoint runs/NAME/best.pt or --engine DIR, or build an engine: "
                            f"`{BUILD_COMMAND}`") from None


def run_eval_engine(args: argparse.Namespace) -> int:
    import os

    from edgeseg.data import parse_spec
    from edgeseg.measure.evaluate import evaluate, format_comparison, label_writer, session_predictor
    from edgeseg.runtime import load

    strip_path, samples = _strip_output(args)  # before the engine loads: a bad path fails now
    session = load(args.engine)
    if session.detects_instances:
        return run_eval_engine_instances(args, session)
    m, engine = session.manifest, session_predictor(session)
    _refuse_instance_data(args.data, args.engine)
    dataset = parse_spec(args.data, "val")
    class_map = _class_map(args, m.classes, dataset)
    reference = None
    if args.reference and os.path.isdir(args.reference):
        reference = session_predictor(load(args.reference))
    elif args.reference:
        from edgeseg.train.checkpoint import build_from_checkpoint
        from edgeseg.train.predictor import TorchPredictor

        from edgeseg.weights import checkpoint_path

        model, payload = build_from_checkpoint(checkpoint_path(args.reference))
        # the checkpoint's own normalization: an engine wrapped around a foreign graph records the one
        # in front of that graph (raw 0-255 pixels for a graph that normalizes its uint8 input itself)
        own = payload.get("metadata", {}).get("dataset") or {}
        reference = TorchPredictor(model, own.get("mean", m.input.mean), own.get("std", m.input.std), size=engine.size)
    result = evaluate(engine, dataset, m.classes, m.ignore_index, reference, args.limit,
                      progress=not args.no_progress, keep=samples if strip_path else 0,
                      on_prediction=label_writer(args.save_predictions) if args.save_predictions else None,
                      class_map=class_map)
    if m.random_weights:
        print("NOTE: this engine has RANDOM WEIGHTS (built for speed only); its accuracy means nothing")
    print(f"{args.engine}: {m.backend['name']} {m.precision['requested']} (runs as {m.precision['as_run']})")
    print(format_comparison(result))
    data = result.to_dict()
    if class_map is not None:
        data["class_map"] = class_map.to_dict()
    if strip_path and result.frames:  # with a class map the frames are in the dataset's classes
        data["samples"] = _write_strip(args, result, m, strip_path, dataset.info if class_map else None)
    if args.json:
        write_output(args.json, json.dumps(data, indent=2), args.force)
    return 0


def run_eval_engine_instances(args: argparse.Namespace, session) -> int:
    """COCO box and mask AP of an instance engine on an instance dataset, and with --reference (an instance
    engine, or the checkpoint it was built from, run at the engine's size) the AP drop."""
    import os

    from edgeseg.data.instances import first, parse_instance_spec
    from edgeseg.measure.instance_eval import InstanceComparison, score, torch_detector
    from edgeseg.runtime import load

    m = session.manifest
    semantic_only = [flag for flag, value in (("--class-map", args.class_map), ("--save-predictions", args.save_predictions),
                                              ("--samples", args.samples), ("--strip", args.strip)) if value]
    if semantic_only:
        raise BadInputError(f"{', '.join(semantic_only)} apply to semantic engines, not to instance engine "
                            f"{args.engine}", "drop them; `edgeseg stream` draws an instance engine's overlays")
    dataset = parse_instance_spec(args.data, "val")
    if list(dataset.info.classes) != list(m.classes):
        raise BadInputError(f"engine {args.engine} finds {', '.join(m.classes)}; {args.data} annotates "
                            f"{', '.join(dataset.info.classes)}", "evaluate on a dataset with the engine's classes, "
                            "in the same order")
    dataset = first(dataset, args.limit) if args.limit else dataset
    size = m.input.size
    reference = None
    if args.reference and os.path.isdir(args.reference):
        with load(args.reference) as other:
            if not other.detects_instances:
                raise BadInputError(f"--reference {args.reference} is a {other.manifest.output.kind} engine",
                                    "pass an instance engine or the checkpoint the engine was built from")
            reference = score(other.detect, dataset, size, not args.no_progress, "reference")
    elif args.reference:
        from edgeseg.train.checkpoint import build_from_checkpoint

        model, _ = build_from_checkpoint(args.reference, task="instance")
        reference = score(torch_detector(model, size), dataset, size, not args.no_progress, "reference (PyTorch)")
    result = InstanceComparison(score(session.detect, dataset, size, not args.no_progress, "engine"), reference)
    if m.random_weights:
        print("NOTE: this engine has RANDOM WEIGHTS (built for speed only); its accuracy means nothing")
    print(f"{args.engine}: {m.backend['name']} {m.precision['requested']} (runs as {m.precision['as_run']}), "
          f"{size[0]}x{size[1]}")
    print(result.summary())
    if args.json:
        write_output(args.json, json.dumps(result.to_dict(), indent=2), args.force)
    return 0


def _refuse_instance_data(spec: str, engine: str) -> None:
    from edgeseg.data.instances import INSTANCE_KINDS

    if spec.partition(":")[0] in INSTANCE_KINDS:
        raise BadInputError(f"{spec} is an instance dataset and engine {engine} labels pixels (semantic)",
                            "evaluate a semantic engine on a semantic dataset (camvid:..., synthetic, ...), or "
                            "pass an instance engine")


def _strip_output(args: argparse.Namespace):
    """(where the strip of frames goes, how many frames), checked before the work: --strip FILE, else
    FILE.frames.jpg beside --json FILE.json; (None, 0) with --samples 0 or neither file."""
    from pathlib import Path

    from edgeseg.inputs import count
    from edgeseg.measure.strip import DEFAULT_SAMPLES, check_strip_path, strip_path_for

    samples = count(args.samples, "--samples", "pass a number of frames for the strip, or 0 for none", zero=True)
    samples = DEFAULT_SAMPLES if samples is None else samples
    if samples == 0:
        if args.strip:
            raise BadInputError("--strip with --samples 0 draws nothing", "drop --samples 0, or drop --strip")
        return None, 0
    path = args.strip or (str(strip_path_for(args.json)) if args.json else None)
    if path is None:
        return None, 0
    check_strip_path(path)
    if args.json and Path(path).absolute() == Path(args.json).absolute():
        raise BadInputError(f"--strip {path} is the --json file", "name the strip FILE.jpg or FILE.png")
    check_outputs(args.force, path)
    return path, samples


def _write_strip(args: argparse.Namespace, result, manifest, path: str, classes_of=None) -> dict:
    """Draw the kept frames, write them to `path`, and return the eval JSON's `samples` section.
    `classes_of`: the DatasetInfo whose classes and colours the frames are in (default: the engine's)."""
    import os
    from pathlib import Path

    from edgeseg.measure import strip

    def name(p: str) -> str:
        p = Path(p)
        return p.name if p.is_dir() or p.parent.name in ("", ".") else f"{p.parent.name}/{p.name}"

    engine = f"{name(args.engine)} ({manifest.precision['as_run']})"
    legend = classes_of or manifest
    drawn = strip.render(result.frames, legend.palette, legend.classes, legend.ignore_index, engine,
                         name(args.reference) if args.reference else "reference")
    strip.write(drawn, path, overwrite=args.force)
    print(f"wrote {path} ({len(result.frames)} frames, {os.path.getsize(path) / 1024:.0f} KiB)")
    return strip.section(drawn, result.frames, path, args.json)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mIoU, mAcc and per-class IoU of a checkpoint or an engine")
    p.add_argument("--checkpoint", help="a checkpoint written by `edgeseg train`, or a model with shipped weights "
                   "(e.g. deeplabv3plus)")
    p.add_argument("--engine", help="an engine directory written by `edgeseg build` (with neither --checkpoint "
                                    "nor --engine: the newest under engines/)")
    p.add_argument("--reference", help="with --engine: an engine directory, a checkpoint or a model with shipped weights "
                   "(e.g. deeplabv3plus) to measure the drop against")
    p.add_argument("--limit", type=int, help="with --engine: only the first N images")
    p.add_argument("--data", required=True, help="dataset spec, e.g. camvid:PATH:val")
    p.add_argument("--class-map", metavar="FILE", help="score a network whose classes are not the dataset's: a JSON "
                   "map of model class -> dataset class, or a shipped one (cityscapes-to-camvid, voc-to-camvid); "
                   "see docs/int8.md")
    p.add_argument("--json", metavar="FILE", help="write miou, macc, pixel_acc, per_class_iou (fractions)")
    p.add_argument("--save-predictions", metavar="DIR", help="one label PNG per image, class ids as values")
    p.add_argument("--samples", type=int, metavar="N",
                   help="with --engine: draw N frames spread over the split (default 4; 0: none) as a strip: "
                        "image | ground truth | reference | engine | disagreement, written beside --json "
                        "as FILE.frames.jpg and named in it (edgeseg report shows it)")
    p.add_argument("--strip", metavar="FILE.jpg", help="with --engine: write the strip of frames here instead "
                                                     "(.jpg or .png)")
    p.add_argument("--tta", action="store_true", help="multi-scale (0.5-1.75) + flip inference")
    p.add_argument("--input-size", type=_size_arg, metavar="HxW", help="resize to this size first (default full)")
    p.add_argument("--output-stride", type=int, help="switch the network's output stride (e.g. 8) for inference")
    crf = p.add_argument_group("dense CRF (DeepLab v1/v2's fully connected CRF; the crf extra)")
    crf.add_argument("--crf", action="store_true", help="also run the dense CRF over the softmax: mIoU and per-class "
                     "IoU with and without it, and its ms per frame (a checkpoint, or an engine with logits)")
    from edgeseg.measure.crf import CrfParams  # numpy only: the parser stays fast

    defaults = CrfParams()
    for flag, attr, kind, text in (("--crf-w1", "w1", float, "appearance kernel weight"),
                                   ("--crf-theta-alpha", "theta_alpha", float, "appearance kernel's position std, px"),
                                   ("--crf-theta-beta", "theta_beta", float, "appearance kernel's colour std, 0-255"),
                                   ("--crf-w2", "w2", float, "smoothness kernel weight"),
                                   ("--crf-theta-gamma", "theta_gamma", float, "smoothness kernel's position std, px"),
                                   ("--crf-iterations", "iterations", int, "mean-field iterations")):
        crf.add_argument(flag, type=kind, default=getattr(defaults, attr),
                         help=f"{text} (default {getattr(defaults, attr)}, DeepLab's VOC value)")
    crf.add_argument("--crf-search", metavar="SPEC", help="first pick w1, theta_alpha and theta_beta from a grid by "
                     "mIoU on this held-out split (never --data's), as DeepLab cross-validated them")
    crf.add_argument("--crf-search-size", type=int, default=20, help="images of --crf-search (default 20)")
    p.add_argument("--no-progress", action="store_true")
    add_force(p, "existing --json and strip files")
    p.set_defaults(func=run_eval)


def add_commands(sub) -> None:
    _add_eval(sub)
