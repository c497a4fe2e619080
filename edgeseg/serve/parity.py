"""Does the served model give the engine's labels? Checked here, on real frames, before anything is published.

A served graph that is a byte copy of the engine file, run by the library the engine was built for, needs
no run: it is the engine. Everything else (the host tail appended, OpenVINO running an ONNX Runtime graph,
DeepStream's float-frames graph) is run on the same frames as the engine's own session, and the share of
pixels with the same class is reported; a graph edgeseg rewrote for the same library must agree
(`REWRITE_AGREEMENT`), a different library's result is reported as measured.

The frames: `--check-frames SPEC` (a folder of images, a dataset spec, an image list), by default the CamVid
train frames shipped with edgeseg for INT8 calibration: real road scenes, never an evaluation split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.manifest import Manifest
from edgeseg.runtime.tail import first_argmax, upsample_argmax
from edgeseg.serve.served import ServedModel

REWRITE_AGREEMENT = 0.999  # float rounding where two classes tie is all a faithful rewrite may change
DEFAULT_SIZE = (352, 480)  # frames for engines with an open height and width: a multiple of every zoo stride
DEFAULT_FRAMES = 4


@dataclass
class Parity:
    frames: int = 0
    spec: str = ""
    runtime: str = ""
    agreement: float | None = None  # share of pixels with the reference's class
    skipped: str = ""  # why nothing ran
    against: str = "the engine"  # the reference: the engine's session, or the graph a variant was made from

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        if self.skipped:
            return f"not run: {self.skipped}"
        return (f"{100 * self.agreement:.3f}% of pixels as {self.against} ({self.frames} frames of {self.spec}, "
                f"{self.runtime})")


def default_spec() -> str:
    from importlib import resources

    return "folder:" + str(resources.files("edgeseg.weights").joinpath("calibration/camvid-train"))


def check_frames(manifest: Manifest, spec: str | None, count: int) -> tuple[str, np.ndarray]:
    from edgeseg.build.calibration import open_calibration

    h, w = manifest.input.size
    size = (h, w) if h and w else DEFAULT_SIZE
    batch = manifest.input.shape[0] or 1
    spec = spec or default_spec()
    frames = open_calibration(spec, size, -(-count // batch) * batch, progress=False).frames
    return spec, frames[: len(frames) - len(frames) % batch]


def engine_labels(engine: Path, frames: np.ndarray) -> np.ndarray:
    from edgeseg import runtime

    with runtime.load(engine) as session:
        return np.concatenate([session.infer(batch) for batch in batches(frames, session.manifest.input.shape[0])])


def served_labels(served: ServedModel, manifest: Manifest, runtime: str, frames: np.ndarray) -> np.ndarray:
    run = _runner(runtime, served.path, manifest)
    feed_name = manifest.input.name
    outputs = []
    for batch in batches(frames, manifest.input.shape[0]):
        outputs.append(labels_of(run({feed_name: _feed(batch, manifest)})[0], served.kind, batch.shape[1:3]))
    return np.concatenate(outputs)


def measure(engine: Path, manifest: Manifest, served: ServedModel, runtime: str | None, spec: str | None,
            count: int, same_library: bool) -> Parity:
    if manifest.output.kind == "instances":
        return Parity(skipped="instance outputs are not compared pixel by pixel; the served graph is the engine's file")
    if not served.variant and same_library:
        return Parity(skipped="the served graph is the engine's file, run by its own library")
    from edgeseg.backends import availability

    built_with = manifest.backend["name"]
    if runtime is None or not availability(built_with).ok:
        return Parity(skipped=f"the engine's {built_with} cannot run on this machine, so its labels cannot be compared")
    spec, frames = check_frames(manifest, spec, count)
    reference = engine_labels(engine, frames)
    labels = served_labels(served, manifest, runtime, frames)
    parity = Parity(len(frames), spec, runtime, float(np.mean(labels == reference)))
    if same_library and parity.agreement < REWRITE_AGREEMENT:
        raise EdgesegError(f"the served graph ({served.variant}) agrees with the engine on only "
                           f"{100 * parity.agreement:.2f}% of pixels", "report this: the rewrite is not faithful")
    return parity


def rewrite_agreement(src: Path, variant: Path, manifest: Manifest, kind: str, frames: np.ndarray,
                      std_in_graph: bool = True) -> float:
    """The DeepStream graph against the ONNX it came from, both run by ONNX Runtime (DeepStream's TensorRT
    cannot run here): the share of pixels with the same argmax at the variant's output resolution. The
    variant is fed what nvinfer would feed it: the frames as float, or (x - 255 * mean) / 255 for a graph that
    multiplies by 1/std itself."""
    import onnxruntime as ort

    def run(path: Path, feed: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {manifest.input.name: feed})[0]

    same = []
    for batch in batches(frames, manifest.input.shape[0]):
        original = _feed(batch, manifest)
        fed = original.astype(np.float32)
        if manifest.input.preprocess != "fused" and std_in_graph:
            fed = _feed(batch, manifest, std=(1.0, 1.0, 1.0))
        ref, out = run(src, original), run(variant, fed)
        ref = labels_of(ref, manifest.output.kind if kind == "labels" else "probs", batch.shape[1:3])
        same.append(labels_of(out, kind, batch.shape[1:3]) == ref)
    return float(np.mean(np.concatenate(same)))


def _feed(batch: np.ndarray, manifest: Manifest, std=None) -> np.ndarray:
    if manifest.input.preprocess == "fused":
        return batch
    from edgeseg.runtime.session import normalize

    return normalize(batch, manifest.input.mean, std or manifest.input.std)


def labels_of(output: np.ndarray, kind: str, size: tuple[int, int]) -> np.ndarray:
    if kind == "labels":
        return np.asarray(output)
    if kind == "lowres-logits":
        return upsample_argmax(output, size)
    return np.stack([first_argmax(np.asarray(frame, np.float32)) for frame in output])  # logits, probs


def batches(frames: np.ndarray, batch: int | None):
    """The frames in the engine's batch (check_frames takes a multiple of a fixed batch)."""
    step = batch or 1
    for start in range(0, len(frames), step):
        yield frames[start:start + step]


def _runner(runtime: str, path: Path, manifest: Manifest):
    if runtime == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds)
    if runtime == "openvino":
        from edgeseg.backends import serve_side

        hint = manifest.backend.get("options", {}).get("inference_precision_hint", "f32")
        return serve_side("openvino").runner(path, hint)
    raise EdgesegError(f"no runner for {runtime}", "")
