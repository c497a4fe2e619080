"""Subcommands from checkpoint to engine and back: export, build, doctor, bench."""

from __future__ import annotations

import argparse
import json
import sys

from edgeseg.errors import BadInputError

SPIN_HELP = ("ONNX Runtime: let idle workers spin between runs (off by default: spinning starves the "
             "host tail, the stream's threads and other engines; alone it can save a fraction of a ms)")


def _add_graph_options(p: argparse.ArgumentParser, size_arg) -> None:
    p.add_argument("--input-size", type=size_arg, metavar="HxW", help="engine input size (default: the training crop)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    p.add_argument("--no-fuse-preprocess", dest="fuse_preprocess", action="store_false",
                   help="take normalized float NCHW instead of uint8 BGR frames")
    p.add_argument("--no-fuse-argmax", dest="fuse_argmax", action="store_false",
                   help="return (N, C, H, W) logits instead of (N, H, W) class ids")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="dynamo: torch.export, opset 18 (default); torchscript: opset 17")


def run_export(args: argparse.Namespace) -> int:
    from edgeseg.build.export import ExportOptions, export_onnx
    from edgeseg.train.checkpoint import build_from_checkpoint

    model, payload = build_from_checkpoint(args.checkpoint)
    dataset = payload.get("metadata", {}).get("dataset") or {}
    size = args.input_size or tuple(payload.get("metadata", {}).get("train_crop") or ())
    if not size:
        raise BadInputError(f"{args.checkpoint} records no input size", "pass --input-size HxW")
    options = ExportOptions(tuple(size), args.batch, args.dynamic, args.fuse_preprocess, args.fuse_argmax,
                            simplify=not args.no_simplify, exporter=args.exporter)
    mean, std = dataset.get("mean", (0.485, 0.456, 0.406)), dataset.get("std", (0.229, 0.224, 0.225))
    result = export_onnx(model, args.out, model.num_classes, mean, std, options, overwrite=args.force)
    print(result.summary())
    for note in result.warnings:
        print(f"  warning: {note}")
    if args.parity:
        print("  parity vs PyTorch: " + _parity(model, model.num_classes, mean, std, options, args).line())
    return 0


def _parity(model, num_classes, mean, std, options, args):
    import numpy as np

    from edgeseg.build.export import DeployModel, parity
    from edgeseg.data import parse_spec
    from edgeseg.runtime.frames import resize_to_input

    dataset = parse_spec(args.parity, "val")
    frames = np.stack([resize_to_input(dataset[i].image, options.input_size) for i in range(min(len(dataset), 8))])
    deploy = DeployModel(model, num_classes, mean, std, options.fuse_preprocess, options.fuse_argmax)
    if not options.fuse_preprocess:
        from edgeseg.runtime.session import normalize

        frames = normalize(frames, mean, std)
    return parity(deploy, args.out, frames, batch=options.batch if not options.dynamic else 1)


def run_build(args: argparse.Namespace) -> int:
    from edgeseg.build.orchestrator import BuildRequest, build_engine

    backend_options = {}
    if args.dla_core is not None:
        backend_options["dla_core"] = args.dla_core
    if args.workspace:
        backend_options["workspace"] = int(args.workspace * 2**20)
    if args.device:
        backend_options["device"] = args.device
    if args.timing_cache:
        backend_options["timing_cache"] = args.timing_cache
    if args.precision == "int8" and args.trt_int8 != "explicit":
        backend_options["int8_mode"] = args.trt_int8
    request = BuildRequest(
        checkpoint=args.checkpoint, model=args.model, random_weights=args.random_weights,
        model_options={"backbone": args.backbone} if args.backbone else {}, num_classes=args.num_classes,
        precision=args.precision, backend=args.backend, input_size=args.input_size, batch=args.batch,
        dynamic=args.dynamic, fuse_preprocess=args.fuse_preprocess, fuse_argmax=args.fuse_argmax,
        tail=args.tail, exporter=args.exporter, out=args.out, force=args.force, backend_options=backend_options,
        calib=args.calib, calib_size=args.calib_size, calib_method=args.calib_method, val=args.val,
        keep_float=tuple(args.keep_float or ()), max_miou_drop=args.max_miou_drop, val_size=args.val_size,
        max_float_layers=args.max_float_layers, speed_guard=not args.no_speed_guard)
    result = build_engine(request)
    print(result.summary())
    if result.manifest.precision.get("note"):
        print(f"  note: {result.manifest.precision['note']}")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    from edgeseg import backends

    rows = []
    for name in backends.names():
        status = backends.availability(name)
        rows.append({"backend": name, "usable": status.ok, "version": status.version,
                     "devices": list(status.devices), "reason": status.reason})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "yes" if r["usable"] else "no "
        detail = ", ".join(r["devices"]) if r["usable"] else r["reason"]
        print(f"{r['backend']:12s} {state} {r['version'] or '-':14s} {detail}")
    chosen, why = backends.resolve("auto")
    print(f"\n--backend auto picks {chosen} ({why})")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import time

    from edgeseg.cli.report import gate_after_bench, timed_baselines
    from edgeseg.data import parse_spec
    from edgeseg.measure.bench import (
        BenchConfig,
        bench_engines,
        encoded_frames,
        format_table,
        read_json,
        specs_for,
        to_json,
    )
    from edgeseg.measure.envinfo import short
    from edgeseg.runtime.session import LoadOptions

    engines = list(args.engines or []) + list(args.engine or [])
    if not engines:
        raise BadInputError("no engine to bench", "pass engine directories: edgeseg bench --engine engines/X")
    base = read_json(args.baseline) if args.baseline else None  # read first: a bad file fails before any load
    frames = encoded_frames(parse_spec(args.data, "val"), 16)
    options = LoadOptions(threads=args.threads or 0, performance_hint=args.hint, spin=args.spin)
    config = BenchConfig(args.iterations, args.duration or 0.0, args.warmup, args.rounds, args.throughput_seconds,
                         not args.no_stages, not args.no_progress)
    context = {"data": args.data, "command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    specs = timed_baselines(args, base, options) + specs_for(engines, options)
    run = bench_engines(specs, frames, options, config, args.baseline_torch, context)
    print(format_table(run.results))
    print(f"{short(run.environment)}; peak RSS {run.peak_rss_mb:.0f} MB (whole process)")
    if args.json:
        from edgeseg.io import atomic_path

        with atomic_path(args.json, overwrite=True) as tmp:
            tmp.write_text(to_json(run))
    return gate_after_bench(run, args, base)


def run_eval_engine(args: argparse.Namespace) -> int:
    import os

    from edgeseg.data import parse_spec
    from edgeseg.measure.evaluate import evaluate_predictors, format_comparison, session_predictor
    from edgeseg.runtime import load

    session = load(args.engine)
    m = session.manifest
    reference = None
    if args.reference and os.path.isdir(args.reference):
        reference = session_predictor(load(args.reference))
    elif args.reference:
        from edgeseg.train.checkpoint import build_from_checkpoint
        from edgeseg.train.predictor import Predictor

        model, _ = build_from_checkpoint(args.reference)
        predictor = Predictor(model, m.input.mean, m.input.std)
        reference = lambda image: predictor.predict(image, m.input.size)  # noqa: E731
    dataset = parse_spec(args.data, "val")
    result = evaluate_predictors(session_predictor(session), dataset, m.classes, m.ignore_index, reference,
                                 args.limit, progress=not args.no_progress)
    if m.random_weights:
        print("NOTE: this engine has RANDOM WEIGHTS (built for speed only); its accuracy means nothing")
    print(f"{args.engine}: {m.backend['name']} {m.precision['requested']} (runs as {m.precision['as_run']})")
    print(format_comparison(result))
    if args.json:
        from edgeseg.io import atomic_path

        with atomic_path(args.json, overwrite=True) as tmp:
            tmp.write_text(json.dumps(result.to_dict(), indent=2))
    return 0


def add_engine_commands(sub, size_arg) -> None:
    p = sub.add_parser("export", help="checkpoint -> simplified, checked ONNX")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    _add_graph_options(p, size_arg)
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--parity", metavar="DATA", help="compare with PyTorch in ONNX Runtime on images of DATA")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=run_export)

    p = sub.add_parser("build", help="checkpoint -> engine directory with manifest.json")
    p.add_argument("--checkpoint", help="trained weights (edgeseg train); required unless --random-weights")
    p.add_argument("--model", help="zoo name; checked against the checkpoint")
    p.add_argument("--backbone", help="with --random-weights")
    p.add_argument("--num-classes", type=int, default=11, help="with --random-weights (default 11)")
    p.add_argument("--random-weights", action="store_true", help="untrained weights, for speed-only experiments")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--calib", help="int8: calibration images, a dataset spec (camvid:PATH:train) or calibration/LIST.txt")
    p.add_argument("--calib-size", type=int, help="int8: number of calibration images (default 300 or all)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="entropy")
    p.add_argument("--val", help="the held-out split accuracy is measured on (--max-miou-drop) and reported on; "
                                 "calibration images found in it are warned about")
    p.add_argument("--max-miou-drop", type=float, metavar="POINTS",
                   help="int8: keep the most sensitive layers in float until the mIoU drop on --val fits")
    p.add_argument("--val-size", type=int, help="int8 budget: images of --val to measure on (default all)")
    p.add_argument("--max-float-layers", type=int, help="int8 budget: most layers it may keep in float")
    p.add_argument("--keep-float", nargs="+", metavar="NODE", help="int8: ONNX nodes to keep in float")
    p.add_argument("--no-speed-guard", action="store_true",
                   help="int8: skip timing against the backend's float builds after the build")
    p.add_argument("--trt-int8", choices=("explicit", "implicit"), default="explicit",
                   help="TensorRT int8: Q/DQ ONNX (explicit, TensorRT 10/11) or calibrator (implicit, TensorRT <= 10)")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "openvino", "tensorrt", "torch"), default="auto")
    p.add_argument("--out", help="engine directory (default engines/MODEL-PRECISION-BACKEND)")
    _add_graph_options(p, size_arg)
    p.add_argument("--tail", choices=("auto", "host", "engine"), default="auto",
                   help="where the logits' upsampling and the argmax run: host (the session, boundary cells "
                        "only; auto's choice for onnxruntime and openvino) or engine (in the graph)")
    p.add_argument("--device", help="OpenVINO device (CPU, GPU, NPU)")
    p.add_argument("--dla-core", type=int, help="TensorRT: run on this DLA core with GPU fallback (Jetson)")
    p.add_argument("--workspace", type=float, help="TensorRT workspace limit in MiB (default 1024)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file (default engines/tensorrt-timing.cache)")
    p.add_argument("--force", action="store_true", help="replace an existing engine directory")
    p.set_defaults(func=run_build)

    p = sub.add_parser("doctor", help="which backends can run here, with versions, and why not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_doctor)

    p = sub.add_parser("bench", help="latency, FPS and stages of engines, side by side; the CI latency gate")
    p.add_argument("engines", nargs="*", help="engine directories written by `edgeseg build`")
    p.add_argument("--engine", action="append", metavar="DIR", help="an engine directory (repeatable)")
    p.add_argument("--data", default="synthetic:16", help="frames to time on (default synthetic:16)")
    p.add_argument("--iterations", type=int, default=50, help="timed calls per engine (default 50)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="time each engine this long instead of --iterations")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5, help="engines take turns this many times (the gate's trials)")
    p.add_argument("--threads", type=int)
    p.add_argument("--hint", choices=("latency", "throughput"), default="latency")
    p.add_argument("--spin", action="store_true", help=SPIN_HELP)
    p.add_argument("--throughput-seconds", type=float, default=2.0,
                   help="seconds of throughput mode per engine after the rounds (0 skips it)")
    p.add_argument("--no-stages", action="store_true", help="skip colorize and the per-stage table")
    p.add_argument("--baseline-torch", action="store_true",
                   help="also time PyTorch eager FP32 of the engine's checkpoint (the only path that imports torch)")
    p.add_argument("--baseline", metavar="BENCH.json", help="gate against this earlier bench JSON")
    p.add_argument("--no-rerun-baseline", action="store_true",
                   help="with --baseline: compare with the file's numbers only, even where its engine is still here")
    p.add_argument("--baseline-engine", action="append", metavar="DIR",
                   help="gate against this engine, timed in the same interleaved run (paired rounds; repeatable)")
    from edgeseg.cli.report import add_gate_options

    add_gate_options(p)
    p.add_argument("--json", metavar="FILE", help="write the results (schema version 2)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_bench)
