"""Subcommands from checkpoint to engine: export, build, doctor."""

from __future__ import annotations

import argparse
import json

from edgeseg.cli.common import size_arg
from edgeseg.errors import BadInputError


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
    from edgeseg.cli.common import writable_output

    writable_output(args.out, args.force)  # before the export: a read-only or taken --out fails now, not after it
    from edgeseg.build.export import ExportOptions, export_onnx
    from edgeseg.train.checkpoint import build_from_checkpoint

    from edgeseg.weights import checkpoint_path

    model, payload = build_from_checkpoint(checkpoint_path(args.checkpoint))
    dataset = payload.get("metadata", {}).get("dataset") or {}
    size = args.input_size or tuple(payload.get("metadata", {}).get("train_crop") or ())
    if not size:
        raise BadInputError(f"{args.checkpoint} records no input size", "pass --input-size HxW")
    options = ExportOptions(tuple(size), args.batch, args.dynamic, args.fuse_preprocess, args.fuse_argmax,
                            simplify=not args.no_simplify, exporter=args.exporter)
    mean, std = dataset.get("mean", (0.485, 0.456, 0.406)), dataset.get("std", (0.229, 0.224, 0.225))
    result = export_onnx(model, args.out, model.num_classes, mean, std, options, overwrite=args.force, labels=dataset)
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
    from pathlib import Path

    from edgeseg import backends
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Int8, Source, build_engine
    from edgeseg.weights import checkpoint_path

    backend = backends.resolve(args.backend)[0]
    _refuse_flags_that_do_not_apply(args, backend)
    request = BuildRequest(
        source=Source(checkpoint=checkpoint_path(args.checkpoint) if args.checkpoint else None, model=args.model,
                      onnx=args.onnx, declared=_declared(args) if args.onnx or args.checkpoint else None,
                      random_weights=args.random_weights,
                      model_options={"backbone": args.backbone} if args.backbone else {},
                      num_classes=args.num_classes or 11),
        precision=args.precision, backend=args.backend,
        graph=Graph(input_size=args.input_size, batch=args.batch, dynamic=args.dynamic,
                    fuse_preprocess=args.fuse_preprocess, fuse_argmax=args.fuse_argmax, tail=args.tail,
                    exporter=args.exporter, proposals=args.proposals, detections=args.detections,
                    min_score=args.min_score, crf=_crf(args)),
        int8=Int8(calib=args.calib, calib_size=args.calib_size, calib_method=args.calib_method or "entropy",
                  keep_float=tuple(args.keep_float or ()), val=args.val, max_miou_drop=args.max_miou_drop,
                  val_size=args.val_size, max_float_layers=args.max_float_layers, class_map=args.class_map,
                  speed_guard=not args.no_speed_guard, max_ap_drop=args.max_ap_drop),
        destination=Destination(out=args.out, force=args.force), backend_options=_backend_options(args))
    from edgeseg.io import check_replaceable, require_writable_parent

    # before any weights are read: a read-only --out, or an engine that is there without --force, fails now
    require_writable_parent(args.out or f"{request.destination.engines_dir}/ENGINE", "the engine directory",
                            "pass --out DIR in a folder you can write to")
    name = Path(args.onnx).stem if args.onnx else args.model
    if args.out or name:  # with only --checkpoint the default name waits for the checkpoint's model
        check_replaceable(Path(request.destination.directory(name, args.precision, backend,
                                                             "crf" if args.crf else "")), args.force)
    result = build_engine(request)
    print(result.summary())
    if result.manifest.precision.get("note"):
        print(f"  note: {result.manifest.precision['note']}")
    return 0


def _declared(args: argparse.Namespace):
    """--onnx: what the foreign graph cannot say, as the flags say it (the sidecar and presets fill the rest)."""
    from edgeseg.build.onnx_import.declare import Declared, float_triple

    return Declared(meta=args.meta, preset=args.preset, channel_order=args.channel_order,
                    value_range=args.value_range, size_divisor=args.size_divisor,
                    mean=float_triple(args.mean, "--mean") if args.mean else None,
                    std=float_triple(args.std, "--std") if args.std else None,
                    classes=args.classes, palette=args.palette, ignore_index=args.ignore_index, output=args.output,
                    input_layout=args.input_layout, output_layout=args.output_layout)


_FOREIGN_FLAGS = (("--meta", "meta"), ("--preset", "preset"), ("--mean", "mean"), ("--std", "std"),
                  ("--channel-order", "channel_order"), ("--value-range", "value_range"),
                  ("--size-divisor", "size_divisor"), ("--classes", "classes"), ("--palette", "palette"),
                  ("--ignore-index", "ignore_index"), ("--output", "output"), ("--input-layout", "input_layout"),
                  ("--output-layout", "output_layout"))

# Flags that mean something only in some builds: (flag, argparse dest, when it applies, why not otherwise).
# A flag given where it does not apply is refused: silently ignoring it builds something the user did not ask for.
_SOURCE_FLAGS = (("--num-classes", "num_classes"),)
_INT8_FLAGS = (("--calib", "calib"), ("--calib-size", "calib_size"), ("--calib-method", "calib_method"),
               ("--val", "val"), ("--val-size", "val_size"), ("--max-float-layers", "max_float_layers"),
               ("--keep-float", "keep_float"), ("--max-miou-drop", "max_miou_drop"),
               ("--class-map", "class_map"))
_BACKEND_FLAGS = (("--device", "device", ("openvino",)), ("--dla-core", "dla_core", ("tensorrt",)),
                  ("--workspace", "workspace", ("tensorrt",)), ("--timing-cache", "timing_cache", ("tensorrt",)))


def _crf(args):
    """--crf conv: the ConvCRF parameters (the dense CRF's kernels; edgeseg.models.convcrf)."""
    if not args.crf:
        return None
    from edgeseg.models.convcrf import ConvCrfParams

    if args.crf_window < 1 or args.crf_window % 2 == 0 or args.crf_downsample < 1 or args.crf_iterations < 1:
        raise BadInputError(f"--crf-window {args.crf_window}, --crf-downsample {args.crf_downsample}, --crf-iterations "
                            f"{args.crf_iterations}", "pass an odd window and a downsample and iterations of 1 or more")
    return ConvCrfParams(window=args.crf_window, downsample=args.crf_downsample, iterations=args.crf_iterations)


def _refuse_flags_that_do_not_apply(args: argparse.Namespace, backend: str) -> None:
    # identity, not equality: 0 == False, and --dla-core 0 or --max-float-layers 0 are given values
    given = lambda dest: getattr(args, dest) is not None and getattr(args, dest) is not False \
        and getattr(args, dest) != []  # noqa: E731
    for flag, dest in _FOREIGN_FLAGS:
        labels = dest in ("classes", "palette", "ignore_index")  # also name a torchvision checkpoint's classes
        if given(dest) and not args.onnx and not (labels and args.checkpoint):
            raise BadInputError(f"{flag} describes a foreign graph and applies to --onnx builds"
                                + (" and torchvision checkpoints" if labels else ""),
                                f"drop {flag}, or pass --onnx FILE")
    for flag, dest in _SOURCE_FLAGS:
        if given(dest) and not args.random_weights:
            raise BadInputError(f"{flag} applies to --random-weights builds; a checkpoint fixes it",
                                f"drop {flag}, or pass --random-weights for a speed-only engine")
    for flag, dest in _INT8_FLAGS + (("--no-speed-guard", "no_speed_guard"),):
        if dest in ("val", "val_size") and args.max_ap_drop is not None:
            continue  # an instance engine's AP budget holds at every precision
        if given(dest) and args.precision != "int8":
            raise BadInputError(f"{flag} applies to int8 builds, not {args.precision}",
                                f"add --precision int8, or drop {flag}")
    if args.int8_vnni_only and (backend not in ("onnxruntime", "openvino") or args.precision != "int8"):
        raise BadInputError("--int8-vnni-only applies to ONNX Runtime and OpenVINO int8 builds", "drop --int8-vnni-only")
    if args.int8_vnni_only:
        from edgeseg.runtime.cpu import refuse_vnni_only_build_here

        refuse_vnni_only_build_here()
    if args.trt_int8 != "explicit" and (backend != "tensorrt" or args.precision != "int8"):
        raise BadInputError("--trt-int8 applies to TensorRT int8 builds", "drop --trt-int8")
    for flag, dest, owners in _BACKEND_FLAGS:
        if given(dest) and backend not in owners:
            raise BadInputError(f"{flag} applies to {' and '.join(owners)} builds; this one is for {backend}",
                                f"drop {flag}, or pass --backend {owners[0]}")
    if args.min_score is not None and not 0 <= args.min_score < 1:
        raise BadInputError(f"--min-score {args.min_score} is outside 0..1", "pass a score such as 0.3")
    for flag, value in (("--calib-size", args.calib_size), ("--val-size", args.val_size), ("--batch", args.batch),
                        ("--proposals", args.proposals), ("--detections", args.detections)):
        if value is not None and value < 1:
            raise BadInputError(f"{flag} {value} must be at least 1", f"pass a positive {flag}")
    for flag, value in (("--max-float-layers", args.max_float_layers), ("--workspace", args.workspace)):
        if value is not None and value < 0:
            raise BadInputError(f"{flag} {value} is negative", f"pass a positive {flag}")


def _backend_options(args: argparse.Namespace):
    """The flags only some backends read; an unset flag keeps BackendOptions' documented default."""
    from edgeseg.build.spec import DEFAULT_WORKSPACE, BackendOptions

    return BackendOptions(device=args.device or "CPU", dla_core=args.dla_core,
                          workspace=int(args.workspace * 2**20) if args.workspace else DEFAULT_WORKSPACE,
                          timing_cache=args.timing_cache or None, int8_mode=args.trt_int8,
                          int8_vnni_only=args.int8_vnni_only)


def _add_foreign_options(p: argparse.ArgumentParser) -> None:
    from edgeseg.build.presets import PRESETS

    g = p.add_argument_group("a segmentation ONNX exported elsewhere (docs/import.md)")
    g.add_argument("--onnx", metavar="FILE", help="build this graph instead of a zoo network: its input, output and "
                   "metadata are detected, what it cannot say is declared with the flags below")
    g.add_argument("--meta", metavar="FILE", help="YAML or JSON with the fields below (mean, std, channel_order, ...)")
    g.add_argument("--preset", choices=tuple(PRESETS), help="the usual preprocessing of the graph's source")
    g.add_argument("--mean", metavar="A,B,C", help="per-channel mean, in the graph's colour order and value range")
    g.add_argument("--std", metavar="A,B,C", help="per-channel standard deviation, likewise")
    g.add_argument("--channel-order", choices=("rgb", "bgr"), help="the colour order the graph takes")
    g.add_argument("--value-range", type=int, choices=(1, 255), help="pixels in 0-1 or 0-255 before mean/std")
    g.add_argument("--size-divisor", type=int, metavar="N", help="pad frames to multiples of N (crop the output back)")
    g.add_argument("--classes", metavar="NAMES", help="camvid, cityscapes, voc, a,b,c, or a file of names")
    g.add_argument("--palette", metavar="P", help="a dataset name, or a JSON file of [r, g, b] per class")
    g.add_argument("--ignore-index", type=int, help="the label of unlabelled pixels (default the dataset's, or 255)")
    g.add_argument("--output", metavar="NAME", help="the segmentation output of a graph with several")
    g.add_argument("--input-layout", choices=("NCHW", "NHWC"), help="where the graph cannot tell")
    g.add_argument("--output-layout", choices=("NCHW", "NHWC"), help="the scores' class axis, where not detected")


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
    print(_video_io_line())
    return 0


def _video_io_line() -> str:
    """What `edgeseg stream` can open with the installed OpenCV (its build, not a probe of a device)."""
    import cv2

    from edgeseg.runtime.sources import opencv_video_io

    found = opencv_video_io()
    listed = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in found.items())
    line = f"OpenCV {cv2.__version__} video I/O: {listed}"
    if not found["GStreamer"]:
        line += " (--gst needs an OpenCV built with GStreamer, e.g. Debian's or JetPack's python3-opencv)"
    return line


def add_commands(sub) -> None:
    p = sub.add_parser("export", help="checkpoint -> simplified, checked ONNX")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    _add_graph_options(p, size_arg)
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--parity", metavar="DATA", help="compare with PyTorch in ONNX Runtime on images of DATA")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=run_export)

    p = sub.add_parser("build", help="checkpoint, shipped weights or a foreign ONNX -> engine directory with "
                                     "manifest.json")
    p.add_argument("--checkpoint", help="trained weights (edgeseg train); default: the weights shipped with "
                   "edgeseg for --model (see `edgeseg models`)")
    p.add_argument("--model", help="zoo name; without --checkpoint its shipped weights are built; checked against "
                   "the checkpoint")
    p.add_argument("--backbone", help="which shipped (or --random-weights) variant; with a torchvision state dict "
                   "as --checkpoint, the one it was trained with")
    p.add_argument("--num-classes", type=int, help="with --random-weights (default 11)")
    p.add_argument("--random-weights", action="store_true", help="untrained weights, for speed-only experiments")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--calib", help="int8: calibration images: a dataset spec (camvid:PATH:train), a folder of images "
                        "(folder:DIR, or DIR) or calibration/LIST.txt")
    p.add_argument("--calib-size", type=int, help="int8: number of calibration images, 1 or more (default 300 or all)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"),
                   help="int8: how ranges are found (default entropy)")
    p.add_argument("--val", help="the held-out split accuracy is measured on (--max-miou-drop) and reported on; "
                                 "calibration images found in it are warned about")
    p.add_argument("--max-miou-drop", type=float, metavar="POINTS",
                   help="int8: keep the most sensitive layers in float until the mIoU drop on --val fits")
    p.add_argument("--proposals", type=int, metavar="N", help="instance networks: proposals kept per pyramid "
                   "level and in all (default the network's, 1000); the box head runs on each")
    p.add_argument("--detections", type=int, metavar="N", help="instance networks: most detections per frame "
                   "(default 100); the mask head runs on each")
    p.add_argument("--min-score", type=float, metavar="S", help="instance networks: lowest score a detection is "
                   "reported with, 0..1 (default 0.05)")
    p.add_argument("--max-ap-drop", type=float, metavar="POINTS",
                   help="instance engines (Mask R-CNN), any precision: the most box or mask AP points the engine may "
                        "lose against the PyTorch network on --val; an INT8 build past it keeps the feature pyramid "
                        "in float and tries again, then stops")
    p.add_argument("--val-size", type=int, help="int8 budget: images of --val to measure on, 1 or more (default all)")
    p.add_argument("--max-float-layers", type=int, help="int8 budget: most layers it may keep in float")
    p.add_argument("--class-map", metavar="FILE", help="int8 budget: a JSON map of model class -> --val class, or a "
                   "shipped one (cityscapes-to-camvid, voc-to-camvid), for a network trained on other classes "
                   "(docs/int8.md)")
    p.add_argument("--keep-float", nargs="+", metavar="NODE", help="int8: ONNX nodes to keep in float")
    p.add_argument("--no-speed-guard", action="store_true",
                   help="int8: skip timing against the backend's float builds after the build")
    p.add_argument("--trt-int8", choices=("explicit", "implicit"), default="explicit",
                   help="TensorRT int8: Q/DQ ONNX (explicit, TensorRT 10/11) or calibrator (implicit, TensorRT <= 10)")
    p.add_argument("--int8-vnni-only", action="store_true",
                   help="ONNX Runtime and OpenVINO int8: full-range weights, exact only on CPUs with VNNI (AVX512-VNNI, "
                        "AVX-VNNI); by default weights stay within [-64, 64] so every x86 CPU computes the same labels")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "openvino", "tensorrt", "torch"), default="auto")
    p.add_argument("--out", help="engine directory (default engines/MODEL-PRECISION-BACKEND)")
    _add_foreign_options(p)
    _add_graph_options(p, size_arg)
    p.add_argument("--tail", choices=("auto", "host", "engine"), default="auto",
                   help="where the logits' upsampling and the argmax run: host (the session, boundary cells "
                        "only; auto's choice for onnxruntime and openvino) or engine (in the graph)")
    p.add_argument("--crf", choices=("conv",), help="append ConvCRF (DeepLab's dense CRF in a local window, mean "
                   "field in the graph) behind the network; docs/crf.md")
    p.add_argument("--crf-window", type=int, default=11, help="ConvCRF: neighbour window in cells, odd (default 11)")
    p.add_argument("--crf-downsample", type=int, default=8, help="ConvCRF: runs at 1/N of the input (default 8)")
    p.add_argument("--crf-iterations", type=int, default=5, help="ConvCRF: mean-field iterations (default 5)")
    p.add_argument("--device", help="OpenVINO device (CPU, GPU, NPU)")
    p.add_argument("--dla-core", type=int, help="TensorRT: run on this DLA core with GPU fallback (Jetson)")
    p.add_argument("--workspace", type=float, help="TensorRT workspace limit in MiB (default 1024)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file (default engines/tensorrt-timing.cache)")
    p.add_argument("--force", action="store_true", help="replace an existing engine directory")
    p.set_defaults(func=run_build)

    p = sub.add_parser("doctor", help="which backends can run here, with versions, and why not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_doctor)
