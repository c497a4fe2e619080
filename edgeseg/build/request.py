"""What `edgeseg build` is asked for, in small frozen pieces that each say one thing: where the weights
come from (`Source`), the graph to export (`Graph`), how INT8 is calibrated and held to accuracy and speed
(`Int8`), where the engine directory goes (`Destination`), and the `BuildRequest` holding them with the
precision, the backend and its `BackendOptions`.

    BuildRequest(Source(checkpoint="runs/x/best.pt"), precision="int8",
                 int8=Int8(calib="camvid:PATH:train", val="camvid:PATH:val", max_miou_drop=0.5))

Each piece checks its own values where the orchestrator needs them; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.build.spec import BackendOptions
from edgeseg.errors import BadInputError

PRECISIONS = ("fp32", "fp16", "int8")
TAILS = ("auto", "host", "engine")
# CPU backends run the full-resolution upsampling + argmax slower than the host's boundary-only tail
# (Fast-SCNN 360x480: 7-10 ms in the graph); GPUs and the torch reference keep it in the graph
HOST_TAIL_BACKENDS = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class Source:
    """Where the weights come from: a trained checkpoint, the weights shipped with edgeseg for `model`
    (neither checkpoint nor random_weights given), (speed only) random weights of a zoo model, or a
    segmentation ONNX exported elsewhere (`onnx`, with what it cannot say in `declared`)."""

    checkpoint: str | None = None
    onnx: str | None = None  # a foreign graph, wrapped instead of exported (edgeseg.build.onnx_import)
    declared: Any = None  # an edgeseg.build.onnx_import.Declared: the foreign graph's preprocessing, classes...
    model: str | None = None  # checked against the checkpoint; required for shipped and random weights
    model_options: dict[str, Any] = field(default_factory=dict)  # random or shipped weights: {"backbone": ...}
    random_weights: bool = False  # speed-only experiments; stamped in the manifest
    num_classes: int = 11  # with random_weights


@dataclass(frozen=True)
class Graph:
    """The ONNX graph to export: its input, what it fuses, and where its tail runs."""

    input_size: tuple[int, int] | None = None  # default: the checkpoint's training crop
    batch: int = 1
    dynamic: bool = False  # symbolic batch, height and width
    fuse_preprocess: bool = True  # uint8 BGR frames in, instead of normalized float NCHW
    fuse_argmax: bool = True  # class ids out, instead of logits
    tail: str = "auto"  # "host": upsampling + argmax in the session; "engine": in the graph; auto: host on CPUs
    exporter: str = "dynamo"  # or "torchscript" (opset 17)
    # instance networks: proposals kept per pyramid level and in all (None: the network's, 1000), detections
    # per frame (None: 100), and the lowest score a detection is reported with (None: 0.05)
    proposals: int | None = None
    detections: int | None = None
    min_score: float | None = None
    crf: Any = None  # an edgeseg.models.convcrf.ConvCrfParams: ConvCRF appended to the network (--crf conv)

    def check_crf(self, precision: str, backend: str, foreign: bool) -> None:
        """--crf conv: a zoo network's module to append it to; INT8 only where the quantizer leaves it in float."""
        if self.crf is None:
            return
        if foreign:
            raise BadInputError("--crf conv is appended to a zoo network's PyTorch module; a foreign ONNX has none",
                                "build the foreign graph without --crf")
        if precision == "int8" and backend != "onnxruntime":
            raise BadInputError(f"--crf conv with --precision int8 is built for onnxruntime only: {backend}'s quantizer "
                                "would quantize the CRF's marginals",
                                "build --crf conv INT8 with --backend onnxruntime, or FP32/FP16")

    def refuse_instance_options(self) -> None:
        """For semantic networks: the proposal and detection budget means nothing to them."""
        said = [flag for flag, value in (("--proposals", self.proposals), ("--detections", self.detections),
                                         ("--min-score", self.min_score)) if value is not None]
        if said:
            raise BadInputError(f"{', '.join(said)} apply to instance networks (Mask R-CNN), not to this semantic one",
                                f"drop {', '.join(said)}")

    def host_tail(self, backend: str) -> bool:
        """Whether `backend`'s graph ends at the low-resolution logits, the session finishing on the host."""
        if self.tail not in TAILS:
            raise BadInputError(f"unknown tail '{self.tail}'", f"choose one of {', '.join(TAILS)}")
        if self.tail == "host" and backend == "torch":
            raise BadInputError("the torch backend runs the checkpoint itself; its tail cannot move",
                                "drop --tail host, or build for onnxruntime or openvino")
        if self.tail == "auto":
            return backend in HOST_TAIL_BACKENDS
        return self.tail == "host"


@dataclass(frozen=True)
class Int8:
    """INT8 only: the calibration images, the accuracy budget on a held-out split, and the speed guard."""

    calib: str | None = None  # dataset spec or calibration/LIST.txt; required, never random
    calib_size: int | None = None
    calib_method: str = "entropy"  # minmax | entropy | percentile
    keep_float: tuple[str, ...] = ()  # ONNX node names kept out of INT8
    val: str | None = None  # the split accuracy is reported on: calibration overlapping it is warned about
    max_miou_drop: float | None = None  # keep sensitive layers in float until the drop on `val` fits
    val_size: int | None = None  # images of `val` the budget measures on (default: all)
    max_float_layers: int | None = None  # most layers the budget may keep in float
    class_map: str | None = None  # model class -> `val` class (JSON file or shipped name): a foreign net's budget
    max_ap_drop: float | None = None  # instance engines: the most mask/box AP points lost on `val` (any precision)
    speed_guard: bool = True  # time against the backend's float builds and record the recommendation
    guard_iterations: int = 30

    def budget_drop(self, precision: str) -> float | None:
        """The mIoU drop (points) the build must fit, None without a budget; refused where it cannot apply."""
        if self.max_miou_drop is None:
            return None
        if precision != "int8":
            raise BadInputError("--max-miou-drop applies to int8 builds",
                                "add --precision int8, or drop --max-miou-drop")
        if self.max_miou_drop < 0:
            raise BadInputError(f"--max-miou-drop {self.max_miou_drop} is negative",
                                "pass the points you can lose, e.g. 0.5")
        return self.max_miou_drop


@dataclass(frozen=True)
class Destination:
    """Where the engine directory is published, and whether it may replace one that is there."""

    out: str | None = None  # default engines_dir/<model>-<precision>-<backend>
    engines_dir: str = "engines"
    force: bool = False

    def directory(self, model: str, precision: str, backend: str, suffix: str = "") -> Path:
        """--out, or engines_dir/<model>-<precision>-<backend>[-<suffix>] (suffix: "crf" for --crf conv)."""
        return Path(self.out or Path(self.engines_dir) / f"{model}-{precision}-{backend}{'-' + suffix if suffix else ''}")


@dataclass(frozen=True)
class BuildRequest:
    """One engine to build: the weights, the precision and backend, and the pieces that shape the build."""

    source: Source
    precision: str = "fp32"  # one of PRECISIONS
    backend: str = "auto"
    graph: Graph = field(default_factory=Graph)
    int8: Int8 = field(default_factory=Int8)
    destination: Destination = field(default_factory=Destination)
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    command: str = ""  # recorded in the manifest; default: this process's command line

    def check_precision(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInputError(f"precision '{self.precision}' is not built by `edgeseg build`",
                                f"choose one of {', '.join(PRECISIONS)}")
