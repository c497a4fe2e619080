"""`edgeseg serve-export` and `edgeseg serve-check`: engines as models for Triton, DeepStream and OVMS."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edgeseg.cli.common import add_force, size_arg

SERVE_LINES = {
    "triton": "docker run --rm -p8000:8000 -p8001:8001 -p8002:8002 -v {out}:/models "
              "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models",
    "ovms": "docker run --rm -p9000:9000 -p8000:8000 -v {out}:/models openvino/model_server:latest "
            "--config_path /models/config.json --port 9000 --rest_port 8000",
    "deepstream": "gst-launch-1.0 filesrc location=drive.mp4 ! qtdemux ! h264parse ! nvv4l2decoder ! m.sink_0 "
                  "nvstreammux name=m batch-size=1 width=1280 height=720 ! nvinfer config-file-path="
                  "{model_dir}/config_infer_primary.txt ! nvsegvisual width=1280 height=720 ! nveglglessink",
}


def run_serve_export(args: argparse.Namespace) -> int:
    from edgeseg.runtime.engines import default_engine
    from edgeseg.serve import ServeRequest, export
    from edgeseg.serve.triton import TritonOptions

    engine = Path(args.engine) if args.engine else default_engine(what="engine to export")
    request = ServeRequest(engine, args.to, Path(args.out), name=args.name, tail=args.tail, force=args.force,
                           check_frames=args.check_frames, check_count=args.check_count,
                           triton=TritonOptions(args.max_batch, args.queue_delay_us, args.instances),
                           batch=args.batch, input_size=args.input_size, ds_std=args.ds_std,
                           command=shlex.join(["edgeseg"] + sys.argv[1:]))
    result = export(request)
    print(f"wrote {result.model_dir} for {result.target}: {len(result.files)} files, output {result.kind}")
    for line in result.checks:
        print(f"  checked: {line}")
    for note in result.notes:
        print(f"  note: {note}")
    if result.client_tail:
        print(f"  the client must: {result.client_tail}")
    if result.target == "ovms":
        print(f"  listed in {result.out / 'config.json'}")
    print("serve it with:\n  " + SERVE_LINES[result.target].format(out=result.out.resolve(),
                                                                    model_dir=result.model_dir.resolve()))
    return 0


def run_serve_check(args: argparse.Namespace) -> int:
    from edgeseg.serve import check, detect

    kind = detect(Path(args.path))
    problems = check(Path(args.path))
    for problem in problems:
        print(f"{args.path}: {problem}")
    print(f"{args.path} ({kind}): " + (f"{len(problems)} problem(s)" if problems else "no problems found"))
    return 1 if problems else 0


def add_commands(sub) -> None:
    p = sub.add_parser("serve-export", help="write an engine as a Triton, DeepStream or OVMS model, checked offline")
    p.add_argument("--engine", help="engine directory (default: the newest under engines/)")
    p.add_argument("--to", required=True, choices=("triton", "deepstream", "ovms"))
    p.add_argument("--out", required=True,
                   help="Triton model repository or OVMS repository (the model goes in OUT/NAME, other models "
                        "stay), or the folder for DeepStream model folders")
    p.add_argument("--name", help="model name (default: the engine's name)")
    p.add_argument("--tail", choices=("auto", "server", "client"), default="auto",
                   help="engines ending at low-resolution logits: server appends the upsampling and argmax so "
                        "the server returns label maps (auto for triton and ovms); client leaves them to the "
                        "client (auto for deepstream, whose parser takes the argmax at the logits' resolution)")
    p.add_argument("--max-batch", type=int, default=8,
                   help="Triton max_batch_size for an engine with an open batch (built with --dynamic)")
    p.add_argument("--queue-delay-us", type=int, default=1000,
                   help="Triton dynamic batching: most microseconds a request waits for a fuller batch")
    p.add_argument("--instances", type=int, default=1, help="Triton instance_group count")
    p.add_argument("--batch", type=int, help="DeepStream batch-size for an engine with an open batch")
    p.add_argument("--input-size", type=size_arg, metavar="HxW",
                   help="DeepStream network size for an engine that takes any frame size")
    p.add_argument("--ds-std", choices=("graph", "scale"), default="graph",
                   help="DeepStream, engines taking normalized float input: graph multiplies each channel by 1/std "
                        "in the graph (exact; default); scale leaves the graph as built and approximates the three "
                        "stds by nvinfer's one net-scale-factor (warned, its effect measured)")
    p.add_argument("--check-frames", metavar="SPEC",
                   help="images the served model is compared with the engine on (default: the CamVid train "
                        "frames shipped for calibration)")
    p.add_argument("--check-count", type=int, default=4, help="how many of them (default 4)")
    add_force(p, "an existing export of the same name (never other files)")
    p.set_defaults(func=run_serve_export)
    c = sub.add_parser("serve-check", help="check a Triton, DeepStream or OVMS model's files offline")
    c.add_argument("path", help="a Triton model folder or repository, a DeepStream model folder, an OVMS repository")
    c.set_defaults(func=run_serve_check)
