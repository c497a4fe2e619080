"""ONNX Runtime sessions: the run-time half of the backend (numpy and onnxruntime only)."""

from __future__ import annotations

import os
import shlex
import warnings
from pathlib import Path

import numpy as np

from edgeseg.errors import EdgesegError, reraise_interrupt
from edgeseg.manifest import Manifest
from edgeseg.runtime import cpu
from edgeseg.runtime.session import LoadOptions, Session

# Set to 1 to load an INT8 engine whose weights may saturate on this CPU anyway, with a warning (to
# measure what saturation costs, say); without it such an engine is refused at load.
ALLOW_SATURATION_ENV = "EDGESEG_ALLOW_INT8_SATURATION"
VNNI_ONLY_FLAG = "--int8-vnni-only"  # `edgeseg build`'s opt-in to full-range weights (BackendOptions.int8_vnni_only)


class Int8CpuWarning(UserWarning):
    """An INT8 engine loaded on a CPU where it may compute wrong values, or where that cannot be told."""


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


def int8_requirement(manifest: Manifest) -> str | None:
    """What the engine's INT8 graph needs from an x86 CPU (`edgeseg.runtime.cpu`); None for float engines.

    The ORT build records it in backend.options["requires"]. Engines built before it did hold
    full-range U8S8 weights, which only CPUs with VNNI add up exactly: they need VNNI.
    """
    if manifest.precision.get("as_run") != "int8":
        return None
    return manifest.backend.get("options", {}).get("requires", cpu.NEEDS_VNNI)


def check_int8_cpu(manifest: Manifest, root: Path) -> None:
    """Refuse an INT8 engine whose weights saturate on this CPU (a warning with ALLOW_SATURATION_ENV=1).

    On x86 CPUs without VNNI, ONNX Runtime adds u8 x s8 products in pairs into a saturating int16
    (`vpmaddubsw`); full-range weights overflow it and the engine returns wrong labels without any error.
    """
    requires = int8_requirement(manifest)
    if requires is None:
        return
    try:
        why = cpu.unmet(requires, cpu.cpu_flags())
    except ValueError:
        warnings.warn(f"{root}: its INT8 graph needs a CPU with {requires}, and this CPU's flags cannot be read "
                      f"(no /proc/cpuinfo); on a CPU without VNNI its outputs would be wrong. "
                      f"An engine built without {VNNI_ONLY_FLAG} runs on any x86 CPU", Int8CpuWarning, stacklevel=3)
        return
    if why is None:
        return
    recorded = "requires" in manifest.backend.get("options", {})
    weights = "full-range int8 weights" if recorded else "full-range int8 weights (built before edgeseg recorded this)"
    problem = (f"{root} is an INT8 engine with {weights}: it needs a CPU with {requires}, and {why}. Without VNNI, "
               "ONNX Runtime's U8S8 kernels add products in pairs into a saturating int16 (vpmaddubsw), and this "
               "engine's pairs overflow it: it may return wrong labels without any error")
    fix = (f"rebuild it with 7-bit weights, which run on every x86 CPU (the default): `{rebuild_command(manifest)}`; "
           f"or set {ALLOW_SATURATION_ENV}=1 to run it anyway")
    if os.environ.get(ALLOW_SATURATION_ENV) == "1":
        warnings.warn(f"{problem} ({ALLOW_SATURATION_ENV}=1: loading it anyway). Fix: {fix}", Int8CpuWarning,
                      stacklevel=3)
        return
    raise EdgesegError(problem, fix)


def rebuild_command(manifest: Manifest) -> str:
    """The engine's recorded `edgeseg build` command without the VNNI-only opt-in, with --force."""
    try:
        words = shlex.split(manifest.command)
    except ValueError:
        words = []
    if "build" not in words:
        return "edgeseg build --checkpoint CKPT --backend onnxruntime --precision int8 --calib SPEC --force"
    words = ["edgeseg"] + [w for w in words[words.index("build"):] if w != VNNI_ONLY_FLAG]
    return shlex.join(words + ([] if "--force" in words else ["--force"]))


class OrtSession(Session):
    def __init__(self, manifest: Manifest, root: Path, threads: int = 0, spin: bool = False) -> None:
        super().__init__(manifest)
        check_int8_cpu(manifest, root)
        threads = threads or int(os.environ.get("EDGESEG_THREADS", 0))
        self._session = open_session(root / manifest.backend["engine"], threads, spin)
        self._input = self._session.get_inputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]

    def describe(self) -> dict:
        options = self._session.get_session_options()  # what ORT holds, not what was asked
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
        return {**super().describe(), "threads": options.intra_op_num_threads, "spinning": spinning}


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    return OrtSession(manifest, root, options.threads, options.spin)
