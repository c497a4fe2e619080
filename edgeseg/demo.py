"""The main job end to end, on the embedded default: `edgeseg demo` (and `make demo`).

Data -> a short training of a real-time network -> FP32 and INT8 engines on the best backend here ->
the INT8 mIoU drop on held-out images (and a strip of them: FP32 and INT8 overlays and where they differ)
-> a side-by-side benchmark -> a road video streamed through the
INT8 engine into an overlay video -> one HTML + Markdown report. Every step is the Python API the
subcommands use, so what the demo shows is what `edgeseg train/build/eval/bench/stream/report` do.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

# Fast-SCNN: the zoo's real-time reference (0.56 GMACs at 360x480); it trains to a usable model on the
# synthetic scenes in a few minutes of two CPU cores, where DeepLabV3+ needs several times longer.
DEMO_MODEL = "fastscnn"
EPOCHS = 10  # about 5 minutes on 2 cores on the synthetic scenes; the val mIoU it reaches is in README
CALIB_IMAGES = 64
VIDEO_FRAMES = 300  # ten seconds of road at 30 FPS


@dataclass(frozen=True)
class DemoConfig:
    data: str = "synthetic"  # any dataset spec with train and val splits, e.g. camvid:PATH
    out: Path = Path("runs/demo")
    model: str = DEMO_MODEL
    epochs: int | None = None  # None: EPOCHS
    backend: str = "auto"
    input_size: tuple[int, int] = (360, 480)
    video_frames: int = VIDEO_FRAMES
    max_miou_drop: float = 1.0
    calib_size: int = CALIB_IMAGES
    progress: bool = True


@dataclass
class DemoResult:
    out: str
    checkpoint: str
    engines: dict[str, str]
    miou_fp32: float  # percent, the FP32 engine on held-out images
    miou_int8: float
    engine_fps: float  # the INT8 engine alone, one frame at a time, in the stream's process and threads
    end_to_end_fps: float  # the streamed road video, capture to rendered overlay
    bench_fps: float  # the INT8 engine in `edgeseg bench` (latency mode, the library's default threads)
    files: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"demo finished: {self.out}"]
        lines += [f"  {name:14s} {path}" for name, path in self.files.items()]
        lines += ["", "the three numbers:",
                  f"  mIoU FP32 -> INT8   {self.miou_fp32:.2f}% -> {self.miou_int8:.2f}% "
                  f"(drop {self.miou_fp32 - self.miou_int8:.2f} points, held-out images)",
                  f"  engine FPS (INT8)   {self.engine_fps:.1f} (engine alone, timed in the stream run; "
                  f"{self.bench_fps:.1f} in the benchmark)",
                  f"  end-to-end FPS      {self.end_to_end_fps:.1f} (road video -> overlay video, "
                  f"{self.end_to_end_fps / max(self.engine_fps, 1e-9):.0%} of engine FPS)"]
        return "\n".join(lines)


class _Steps:
    """Numbered steps that each end with one line: what was made, where, how long."""

    def __init__(self, total: int, log: Callable[[str], None]) -> None:
        self.total, self.done, self.log = total, 0, log

    def run(self, title: str, fn: Callable, *args):
        self.done += 1
        self.log(f"\n[{self.done}/{self.total}] {title}")
        start = time.perf_counter()
        value, line = fn(*args)
        self.log(f"[{self.done}/{self.total}] {line} ({time.perf_counter() - start:.0f}s)")
        return value


def run_demo(config: DemoConfig, log: Callable[[str], None] = print) -> DemoResult:
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        from edgeseg.errors import EdgesegError

        raise EdgesegError(f"{out} already holds files", "choose another --out (make demo names a new one per run)")
    out.mkdir(parents=True, exist_ok=True)
    steps = _Steps(7, log)
    ckpt = steps.run(f"train {config.model} on {config.data}", _train, config, out)
    engines = steps.run("build FP32 and INT8 engines", _build, config, out, ckpt)
    evaluation = steps.run("INT8 mIoU against FP32 on held-out images", _evaluate, config, out, engines)
    bench = steps.run("benchmark the engines side by side", _bench, config, out, engines)
    video = steps.run("write a road video", _video, config, out)
    stream = steps.run("stream the video through the INT8 engine", _stream, out, engines["int8"], video)
    reports = steps.run("write the report", _report, out, evaluation)
    int8 = next(r for r in bench.results if r.engine == Path(engines["int8"]).name)
    result = DemoResult(str(out), str(ckpt), {k: str(v) for k, v in engines.items()},
                        100 * evaluation["reference"]["miou"], 100 * evaluation["miou"], stream.engine_only.fps,
                        stream.fps, int8.fps, _files(out, ckpt, video, reports))
    (out / "demo.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def _files(out: Path, ckpt: Path, video: Path, reports: tuple[Path, Path]) -> dict[str, str]:
    return {"checkpoint": str(ckpt), "engines": str(out / "engines"), "eval": str(out / "eval-int8.json"),
            "eval frames": str(out / "eval-int8.frames.jpg"),
            "bench": str(out / "bench.json"), "road video": str(video), "overlay video": str(out / "overlay.mp4"),
            "stream stats": str(out / "stream.json"), "report (HTML)": str(reports[0]),
            "report (Markdown)": str(reports[1])}


def _train(config: DemoConfig, out: Path):
    from edgeseg.train.loop import TrainConfig, train

    epochs = config.epochs or EPOCHS
    # AdamW at 4e-3: the Fast-SCNN CamVid recipe (docs/zoo.md), shortened. Without its median-frequency class
    # weights, which pay off over 80 epochs: measured over 6 epochs on the synthetic scenes, they cost 5 points of mIoU.
    result = train(TrainConfig(model=config.model, data=config.data, out=out / "train", epochs=epochs,
                               crop=config.input_size, optimizer="adamw", lr=4e-3, weight_decay=1e-2,
                               progress=config.progress))
    return result.best_path, (f"trained {epochs} epochs: val mIoU {100 * result.best_miou:.2f}% "
                              f"(epoch {result.best_epoch}) -> {result.best_path}")


def _build(config: DemoConfig, out: Path, ckpt: Path):
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Int8, Source, build_engine

    base = BuildRequest(Source(checkpoint=str(ckpt)), backend=config.backend, graph=Graph(input_size=config.input_size))
    fp32 = build_engine(replace(base, destination=Destination(out=str(out / "engines" / "fp32"))))
    int8 = build_engine(replace(base, precision="int8", destination=Destination(out=str(out / "engines" / "int8")),
                                int8=Int8(calib=f"{config.data}:train", calib_size=config.calib_size,
                                          val=f"{config.data}:val", max_miou_drop=config.max_miou_drop)))
    recommended = int8.manifest.extra.get("recommended")
    line = f"{fp32.summary()}\n      {int8.summary()}"
    if recommended:
        line += f"\n      speed guard recommends: {recommended}"
    return {"fp32": fp32.path, "int8": int8.path}, line


def _evaluate(config: DemoConfig, out: Path, engines: dict[str, Path]):
    from edgeseg.data import parse_spec
    from edgeseg.measure import strip
    from edgeseg.measure.evaluate import evaluate, session_predictor
    from edgeseg.runtime import load

    dataset = parse_spec(f"{config.data}:val", "val")
    with load(engines["int8"]) as int8, load(engines["fp32"]) as fp32:
        m = int8.manifest
        result = evaluate(session_predictor(int8), dataset, m.classes, m.ignore_index, session_predictor(fp32),
                          progress=config.progress, keep=strip.DEFAULT_SAMPLES)
    data = result.to_dict()
    # What the engines see: a few held-out frames, FP32 and INT8 overlays and where they differ (in the report).
    frames = strip.render(result.frames, m.palette, m.classes, m.ignore_index, "int8", "fp32")
    strip.write(frames, out / "eval-int8.frames.jpg")
    data["samples"] = strip.section(frames, result.frames, out / "eval-int8.frames.jpg", out / "eval-int8.json")
    (out / "eval-int8.json").write_text(json.dumps(data, indent=2) + "\n")
    return data, (f"mIoU FP32 {100 * result.reference.miou:.2f}% -> INT8 {100 * result.metrics.miou:.2f}% "
                  f"(drop {result.drop['miou']:.2f} points, {len(dataset)} images, pixel agreement "
                  f"{100 * result.agreement:.2f}%) -> {out / 'eval-int8.json'}, {out / 'eval-int8.frames.jpg'}")


def _bench(config: DemoConfig, out: Path, engines: dict[str, Path]):
    from edgeseg.data import parse_spec
    from edgeseg.measure.bench import bench_engines, encoded_frames, format_table
    from edgeseg.measure.results import to_json

    frames = encoded_frames(parse_spec(f"{config.data}:val", "val"))
    run = bench_engines([str(engines["fp32"]), str(engines["int8"])], frames, progress=config.progress,
                        context={"data": f"{config.data}:val", "command": "edgeseg demo",
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    (out / "bench.json").write_text(to_json(run))
    return run, f"{format_table(run.results)}\n      -> {out / 'bench.json'}"


def _video(config: DemoConfig, out: Path):
    from edgeseg.data.synthetic import write_road_video

    # The generated drive is the same street for every data spec: the demo needs no video of its own.
    path = write_road_video(out / "road.mp4", frames=config.video_frames, size=config.input_size)
    return path, f"{config.video_frames} frames at {config.input_size[1]}x{config.input_size[0]} -> {path}"


def _stream(out: Path, engine: Path, video: Path):
    from edgeseg.runtime import load
    from edgeseg.runtime.pipeline import Pipeline, PipelineConfig
    from edgeseg.runtime.sinks import output_sink
    from edgeseg.runtime.sources import VideoFile

    with load(engine) as session:  # the library's own thread count, as `edgeseg stream` by default
        pipeline = Pipeline(VideoFile(str(video)), session, [output_sink(out / "overlay.mp4")],
                            PipelineConfig(view="overlay", engine_fps_iterations=50))
        stats = pipeline.run()
    stats.write(out / "stream.json")
    return stats, f"{stats.summary()}\n      -> {out / 'overlay.mp4'}, {out / 'stream.json'}"


def _report(out: Path, evaluation: dict):
    from edgeseg.measure.gate import read_eval
    from edgeseg.measure.report import collect, write_report
    from edgeseg.measure.report_stream import read_stream

    int8 = read_eval(out / "eval-int8.json")  # as `edgeseg report --eval` reads it: the strip beside it
    rows, runs = collect([str(out / "bench.json")], {"int8": int8, "fp32": _reference_eval(evaluation)})
    streams = [read_stream(out / "stream.json")]
    html, md = out / "report.html", out / "report.md"
    write_report(html, rows, runs, "edgeseg demo", streams)
    write_report(md, rows, runs, "edgeseg demo", streams)
    return (html, md), f"-> {html}, {md}"


def _reference_eval(evaluation: dict) -> dict:
    """The FP32 engine's own accuracy, as an eval JSON of its own (drop 0 against itself)."""
    return {**evaluation["reference"], "miou_drop_points": 0.0}
