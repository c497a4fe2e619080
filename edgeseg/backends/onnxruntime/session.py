"""ONNX Runtime sessions: the run-time half of the backend (numpy and onnxruntime only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseg.errors import EdgesegError, reraise_interrupt
from edgeseg.manifest import Manifest
from edgeseg.runtime import cpu
from edgeseg.runtime.session import LoadOptions, Session

# The INT8 CPU check is shared with OpenVINO (edgeseg.runtime.cpu); its names stay importable from here.
ALLOW_SATURATION_ENV = cpu.ALLOW_SATURATION_ENV
VNNI_ONLY_FLAG = cpu.VNNI_ONLY_FLAG
Int8CpuWarning = cpu.Int8CpuWarning
int8_requirement = cpu.int8_requirement
rebuild_command = cpu.rebuild_command
KERNELS = "ONNX Runtime's U8S8 kernels"


def open_session(path: Path, threads: int, spin: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    # ORT's idle workers spin on their cores after each run by default, and the host tail, the
    # stream's capture and render threads and every other engine in the process wait for those cores.
    # On this 2-core machine, two 2-thread sessions called in turn (as bench does) took 102 and 55 ms
    # per call spinning and 50 and 20 ms not. One session alone: Fast-SCNN INT8 5.2-5.6 ms spinning,
    # 5.8-6.1 not; FP32 the same. So spinning is opt-in (LoadOptions.spin, --spin).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types for corrupt files
        reraise_interrupt(exc)
        raise EdgesegError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}",
                           "rebuild the engine with `edgeseg build ... --force`") from exc


def check_int8_cpu(manifest: Manifest, root: Path) -> None:
    """Refuse an INT8 engine whose weights saturate ONNX Runtime's U8S8 kernels on this CPU (a warning with
    ALLOW_SATURATION_ENV=1): see edgeseg.runtime.cpu."""
    cpu.check_int8_cpu(manifest, root, KERNELS)


class OrtSession(Session):
    concurrent_calls = True  # InferenceSession.run is thread-safe: a stream may run several calls at once

    def __init__(self, manifest: Manifest, root: Path, threads: int = 0, spin: bool = False) -> None:
        super().__init__(manifest)
        check_int8_cpu(manifest, root)
        threads = threads or int(os.environ.get("EDGESEG_THREADS", 0))
        self._session = open_session(root / manifest.backend["engine"], threads, spin)
        self._input = self._session.get_inputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]

    def _run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self._input: batch})

    def describe(self) -> dict:
        options = self._session.get_session_options()  # what ORT holds, not what was asked
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
        return {**super().describe(), "threads": options.intra_op_num_threads, "spinning": spinning}


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    return OrtSession(manifest, root, options.threads, options.spin)
