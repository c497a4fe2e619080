"""The build-time contract between the orchestrator and each backend's build side: what to build
(`BuildSpec`, with the user's `BackendOptions`) and what was built (`Built`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_WORKSPACE = 1 << 30  # 1 GiB: enough tactics for these networks, and fits a Jetson Orin Nano

Shape = tuple[int, ...]


@dataclass(frozen=True)
class BackendOptions:
    """What a backend's builder may be told beyond the precision; each backend reads the fields it knows
    and records what it used in `Built.options` (the manifest's backend.options), not this object."""

    device: str = "CPU"  # OpenVINO: CPU, GPU, NPU
    gpu: int = 0  # TensorRT: the CUDA device index
    dla_core: int | None = None  # TensorRT: run on this DLA core with GPU fallback (Jetson)
    workspace: int = DEFAULT_WORKSPACE  # TensorRT: builder workspace limit, bytes
    timing_cache: str | None = None  # TensorRT: default engines/tensorrt-timing.cache beside the engine directory
    int8_mode: str = "explicit"  # TensorRT int8: "explicit" (Q/DQ ONNX) or "implicit" (calibrator, TensorRT <= 10)
    strongly_typed: bool = False  # TensorRT 10: precisions from the graph (TensorRT 11 always is)
    max_batch: int = 8  # TensorRT: the profile's largest batch for a dynamic-batch graph
    profile: tuple[Shape, Shape, Shape] | None = None  # TensorRT: (min, opt, max) input shapes, overriding the above
    input_size: tuple[int, int] | None = None  # (H, W) of the export: the orchestrator fills it in
    # ONNX Runtime and OpenVINO int8: full-range weights, exact only on CPUs with VNNI (AVX512-VNNI or AVX-VNNI); by
    # default weights stay within [-64, 64] so that CPUs without VNNI (16-bit saturating pair sums) compute the same
    # (OpenVINO: NNCF overflow_fix ENABLE by default, DISABLE with this)
    int8_vnni_only: bool = False


@dataclass(frozen=True)
class BuildSpec:
    precision: str  # "fp32" | "fp16" | "int8"
    input_shape: tuple[int | None, ...]  # the graph input's shape; None where dynamic
    input_name: str
    options: BackendOptions = field(default_factory=BackendOptions)
    checkpoint: str | None = None  # the torch backend's artifact is the checkpoint itself
    calibration: Any = None  # a CalibrationSet for int8 builds (edgeseg.build.calibration)
    calib_method: str = "entropy"  # minmax | entropy | percentile
    keep_float: tuple[str, ...] = ()  # ONNX node names kept out of INT8 by the user
    budget: Any = None  # an edgeseg.build.budget.BudgetRequest: fit INT8 into an mIoU drop
    # int8: quantize only the nodes whose names start with this (Mask R-CNN: "/backbone/", its backbone and
    # pyramid; the heads stay float); None: every node but keep_float
    int8_only: str | None = None

    def float_node_names(self, onnx_path) -> tuple[str, ...]:
        """The ONNX nodes an INT8 build keeps in float: keep_float, and every node outside int8_only."""
        if self.int8_only is None:
            return self.keep_float
        import onnx

        graph = onnx.load(str(onnx_path), load_external_data=False).graph
        outside = [node.name for node in graph.node if not node.name.startswith(self.int8_only)]
        return tuple(dict.fromkeys([*self.keep_float, *outside]))


@dataclass
class Built:
    files: list[str]  # relative to the output directory
    precision_as_run: str
    device: str
    version: str
    note: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    not_int8: dict[str, str] = field(default_factory=dict)  # int8 builds: every layer left in float -> its precision
