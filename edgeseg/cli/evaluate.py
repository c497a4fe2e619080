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
    if args.limit is not None and args.limit < 1:
        raise BadInputError(f"--limit {args.limit} evaluates nothing", "pass a positive number of images, or drop --limit")
    if args.engine:
        return run_eval_engine(args)
    if not args.checkpoint:
        raise BadInputError("nothing to evaluate", "pass --checkpoint runs/x/best.pt or --engine engines/NAME")

    from edgeseg.data import parse_spec
    from edgeseg.data.base import DatasetInfo
    from edgeseg.data.metrics import format_table
    from edgeseg.measure.evaluate import evaluate, label_writer
    from edgeseg.train.checkpoint import build_from_checkpoint
    from edgeseg.train.predictor import TorchPredictor

    model, payload = build_from_checkpoint(args.checkpoint)
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
    predictor = TorchPredictor(model, info.mean, info.std, size=args.input_size, tta=args.tta)
    metrics = evaluate(predictor, dataset, info.classes, dataset.info.ignore_index, progress=not args.no_progress,
                       on_prediction=label_writer(args.save_predictions) if args.save_predictions else None).metrics
    print(format_table(metrics))
    if args.json:
        write_output(args.json, json.dumps(metrics.to_dict(), indent=2), args.force)
    return 0


def run_eval_engine(args: argparse.Namespace) -> int:
    import os

    from edgeseg.data import parse_spec
    from edgeseg.measure.evaluate import evaluate, format_comparison, session_predictor
    from edgeseg.runtime import load

    session = load(args.engine)
    m, engine = session.manifest, session_predictor(session)
    reference = None
    if args.reference and os.path.isdir(args.reference):
        reference = session_predictor(load(args.reference))
    elif args.reference:
        from edgeseg.train.checkpoint import build_from_checkpoint
        from edgeseg.train.predictor import TorchPredictor

        model, _ = build_from_checkpoint(args.reference)
        reference = TorchPredictor(model, m.input.mean, m.input.std, size=engine.size)
    dataset = parse_spec(args.data, "val")
    result = evaluate(engine, dataset, m.classes, m.ignore_index, reference, args.limit,
                      progress=not args.no_progress)
    if m.random_weights:
        print("NOTE: this engine has RANDOM WEIGHTS (built for speed only); its accuracy means nothing")
    print(f"{args.engine}: {m.backend['name']} {m.precision['requested']} (runs as {m.precision['as_run']})")
    print(format_comparison(result))
    if args.json:
        write_output(args.json, json.dumps(result.to_dict(), indent=2), args.force)
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mIoU, mAcc and per-class IoU of a checkpoint or an engine")
    p.add_argument("--checkpoint", help="a checkpoint written by `edgeseg train`")
    p.add_argument("--engine", help="an engine directory written by `edgeseg build`")
    p.add_argument("--reference", help="with --engine: an engine directory or checkpoint to measure the drop against")
    p.add_argument("--limit", type=int, help="with --engine: only the first N images")
    p.add_argument("--data", required=True, help="dataset spec, e.g. camvid:PATH:val")
    p.add_argument("--json", metavar="FILE", help="write miou, macc, pixel_acc, per_class_iou (fractions)")
    p.add_argument("--save-predictions", metavar="DIR", help="one label PNG per image, class ids as values")
    p.add_argument("--tta", action="store_true", help="multi-scale (0.5-1.75) + flip inference")
    p.add_argument("--input-size", type=_size_arg, metavar="HxW", help="resize to this size first (default full)")
    p.add_argument("--output-stride", type=int, help="switch the network's output stride (e.g. 8) for inference")
    p.add_argument("--no-progress", action="store_true")
    add_force(p, "an existing --json file")
    p.set_defaults(func=run_eval)


def add_commands(sub) -> None:
    _add_eval(sub)
