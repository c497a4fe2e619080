"""The run-time contract every backend implements: `Session` (input checks, the host tail, describe)
and `LoadOptions`. Torch-free, build-free: a vehicle image imports this and one inference library."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import BadInputError
from edgeseg.manifest import Manifest
from edgeseg.runtime.instances import Instances, from_outputs
from edgeseg.runtime.tail import KIND as TAIL_KIND
from edgeseg.runtime.tail import upsample_argmax

INSTANCES = "instances"  # the output kind of an instance engine (outputs: manifest.schema.INSTANCE_OUTPUTS)


@dataclass(frozen=True)
class LoadOptions:
    """How to run a loaded engine; each backend uses the fields that mean something to it."""

    threads: int = 0  # 0: the library's default
    device: str | None = None  # OpenVINO device ("CPU", "GPU"), TensorRT GPU index; None: as built
    performance_hint: str = "latency"  # "latency" (one stream, a camera) or "throughput" (batches, eval)
    cache_dir: str | None = None  # OpenVINO compiled-model cache; None: <engine dir>/.cache
    spin: bool = False  # ONNX Runtime: idle workers spin between runs (see backends/onnxruntime.py)


class Session:
    """A loaded engine. `infer` takes what the manifest says the engine takes and returns class ids, or
    on an instance engine (`manifest.output.kind == "instances"`) the objects found (`detect`).

    Subclasses implement `_run(batch) -> array` (labels or logits, as the graph makes them) and, for
    graphs with several outputs, `_run_all(batch) -> list of arrays` in the graph's output order.
    """

    concurrent_calls = False  # whether several threads may call infer at once (a stream's --engine-workers)

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._host_preprocess = manifest.input.preprocess == "host"
        self._height, self._width = manifest.input.size

    @property
    def detects_instances(self) -> bool:
        return self.manifest.output.kind == INSTANCES

    def infer(self, frames: np.ndarray) -> np.ndarray | list[Instances]:
        """(N, H, W, 3) uint8 BGR frames at the engine's input size -> (N, H, W) class ids; an instance
        engine returns one `Instances` per frame instead (`detect`, masks at the input size)."""
        frames = self.check_frames(frames)
        if self.detects_instances:
            return self.detect(frames)
        out = self._run_checked(frames)
        if self.manifest.output.kind in ("logits", TAIL_KIND):  # full-size logits only need the argmax
            return upsample_argmax(out, frames.shape[1:3])
        return out

    def detect(self, frames: np.ndarray, size: tuple[int, int] | None = None) -> list[Instances]:
        """Instance engines: (N, H, W, 3) frames at the input size -> the `Instances` of each frame, boxes
        and masks at `size` (H, W): the size of the frame before it was resized to the input, so that
        the 28 x 28 masks are pasted once, at the resolution they are shown or scored at. Default: the
        input size."""
        if not self.detects_instances:
            raise BadInputError(f"engine {self.manifest.name} is a {self.manifest.output.kind} engine: it labels "
                                "pixels and finds no instances", "call infer(), or pass an instance engine "
                                "(built from a Mask R-CNN)")
        frames = self.check_frames(frames)
        height, width = size or frames.shape[1:3]
        found = []
        for frame in frames:  # instance graphs take one frame (their outputs have no batch axis)
            boxes, labels, scores, masks = self._run_all(self._prepared(frame[None]))
            found.append(from_outputs(boxes, labels, scores, masks, height, width, frames.shape[1:3]))
        return found

    def infer_raw(self, frames: np.ndarray) -> np.ndarray:
        """The graph's own output: labels, (N, C, H, W) logits for a graph built without --fuse-argmax,
        or (N, C, h, w) low-resolution logits for a graph whose tail runs on the host (`--tail host`)."""
        return self._run_checked(self.check_frames(frames))

    def _run_checked(self, frames: np.ndarray) -> np.ndarray:
        return self._run(self._prepared(frames))

    def _prepared(self, frames: np.ndarray) -> np.ndarray:
        if self._host_preprocess:
            return normalize(frames, self.manifest.input.mean, self.manifest.input.std)
        return frames

    def check_frames(self, frames: np.ndarray) -> np.ndarray:
        if not isinstance(frames, np.ndarray):
            raise BadInputError(f"frames must be a numpy array, got {type(frames).__name__}",
                                "pass (N, H, W, 3) uint8 BGR frames, e.g. from cv2.VideoCapture.read()")
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8:
            raise BadInputError(f"frames have dtype {frames.dtype}; the engine takes uint8",
                                "pass frames as OpenCV reads them (uint8 BGR), not normalized floats")
        h, w = self._height, self._width
        if frames.ndim != 4 or frames.shape[3] != 3 or (h and frames.shape[1] != h) or (w and frames.shape[2] != w):
            raise BadInputError(f"frames have shape {frames.shape}; the engine takes (N, {h}, {w}, 3)",
                                "resize with edgeseg.runtime.resize_to_input(frame, manifest.input.size) first")
        batch = self.manifest.input.shape[0]
        if batch and frames.shape[0] != batch:
            raise BadInputError(f"got {frames.shape[0]} frames; this engine was built for batch {batch}",
                                f"pass {batch} frame(s) at a time, or build with --batch N or --dynamic")
        return np.ascontiguousarray(frames)

    def _run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def _run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output of the graph, in its order; backends that run instance graphs override it."""
        raise BadInputError(f"the {self.manifest.backend['name']} backend does not run graphs with several outputs",
                            "build the instance engine for onnxruntime or openvino")

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {"backend": m.backend["name"], "version": m.backend.get("version"), "device": m.backend.get("device"),
                "precision_requested": m.precision["requested"], "precision_as_run": m.precision["as_run"],
                "random_weights": m.random_weights}

    def run_for(self, frames: np.ndarray, seconds: float) -> tuple[int, float, int]:
        """Keep the engine busy on `frames` for about `seconds`: (frames done, seconds taken, requests in flight).

        Throughput mode of `edgeseg bench`. This default keeps one request in flight, so its FPS equals
        latency mode; backends with asynchronous requests or streams (OpenVINO) override it to show
        what overlapping requests add. The result labels are discarded: only the rate matters here.
        """
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.infer(frames)
            done += len(frames)
        return done, time.perf_counter() - start, 1

    def close(self) -> None:
        pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def normalize(frames: np.ndarray, mean, std) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR -> (N, 3, H, W) float32 RGB; the host-side twin of the fused Preprocess."""
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(1, 3, 1, 1)
    shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(1, 3, 1, 1)
    rgb = frames[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    return np.ascontiguousarray(rgb * scale - shift)
