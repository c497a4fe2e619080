"""`edgeseg demo`: the main job end to end (edgeseg.demo)."""

from __future__ import annotations

import argparse
import time

from edgeseg.cli.common import size_arg as _size_arg


def run_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgeseg.demo import DemoConfig
    from edgeseg.demo import run_demo as demo

    from edgeseg.io import require_writable_folder

    out = Path(args.out) if args.out else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    require_writable_folder(out, "the demo's run folder (--out)", "pass --out DIR in a folder you can write to")
    result = demo(DemoConfig(data=args.data, out=out, model=args.model, epochs=args.epochs, backend=args.backend,
                             input_size=args.input_size, video_frames=args.video_frames, calib_size=args.calib_size,
                             max_miou_drop=args.max_miou_drop, progress=not args.no_progress))
    print("\n" + result.summary())
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job end to end: train, build FP32/INT8, eval, bench, stream, report")
    p.add_argument("--data", default="synthetic", help="dataset spec with train and val splits (default synthetic)")
    p.add_argument("--out", help="run folder (default runs/demo-DATE-TIME)")
    p.add_argument("--model", default="fastscnn", help="zoo name (default fastscnn, the real-time reference)")
    p.add_argument("--epochs", type=int, help="training epochs (default 10, synthetic scenes or not)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "openvino", "tensorrt"))
    p.add_argument("--input-size", type=_size_arg, default=(360, 480), metavar="HxW",
                   help="training crop, engine input and video size (default 360x480)")
    p.add_argument("--calib-size", type=int, default=64, help="INT8 calibration images from the train split")
    p.add_argument("--max-miou-drop", type=float, default=1.0, metavar="POINTS", help="INT8 mIoU budget (default 1.0)")
    p.add_argument("--video-frames", type=int, default=300, help="frames of the generated road video")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_demo)


def add_commands(sub) -> None:
    _add_demo(sub)
