"""The speed guard of an INT8 build: is it faster than the float builds of the same backend?

INT8 engines are often no faster than FP16 (or even FP32): layers the runtime cannot run in INT8
(Resize, Concat of differently scaled inputs, the fused preprocessing) leave float islands, each with
a dequantize and a requantize around it. After an INT8 build the guard builds the backend's float
precisions from the same ONNX into a scratch directory, times them side by side with the INT8 engine
(interleaved rounds, `edgeseg.measure.bench`), and records the verdict and the recommended artifact in the
manifest.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.build.spec import BuildSpec
from edgeseg.errors import EdgesegError
from edgeseg.manifest import hash_files


@dataclass
class SpeedVerdict:
    latency_ms: dict[str, float]  # precision requested -> mean ms per call
    as_run: dict[str, str]  # precision requested -> precision the backend ran
    speedup_vs_fp32: float  # FP32 latency / INT8 latency
    int8_fastest: bool
    recommended: str  # the precision to deploy on this backend and hardware
    why: str = ""
    iterations: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # float precision -> why it was not timed

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        times = ", ".join(f"{p} {ms:.2f} ms" + (f" (as {self.as_run[p]})" if self.as_run[p] != p else "")
                          for p, ms in self.latency_ms.items())
        head = f"speed guard: {times}"
        if self.speedup_vs_fp32 == self.speedup_vs_fp32:  # not nan: FP32 was timed
            head += f"; INT8 runs {self.speedup_vs_fp32:.2f}x as fast as FP32"
        head += "".join(f"; {p} not timed: {why}" for p, why in self.skipped.items())
        if self.int8_fastest:
            return head + "; recommended: int8"
        return head + f". INT8 is NOT the fastest here: recommended {self.recommended}. Why: {self.why}"


def guard(backend, session_side, onnx_path: Path, int8_dir: Path, manifest, spec: BuildSpec, frames: np.ndarray,
          float_precisions: Sequence[str], iterations: int = 30, diagnose: Any = None) -> SpeedVerdict:
    """Time the INT8 engine in `int8_dir` against the backend's float builds of `onnx_path`.

    `backend` is the backend's build side (builds the float engines), `session_side` its run-time half.
    """
    from edgeseg.measure.bench import bench_sessions

    sessions, skipped = {}, {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-guard-") as tmp:
        try:
            sessions["int8"] = session_side.load(manifest, int8_dir)
            for precision in float_precisions:
                work = Path(tmp) / precision
                work.mkdir()
                shutil.copy2(onnx_path, work / onnx_path.name)  # a backend may run the graph itself
                try:
                    built = backend.build(work / onnx_path.name, work, dataclasses.replace(spec, precision=precision,
                                                                              calibration=None, budget=None))
                except EdgesegError as exc:
                    skipped[precision] = exc.problem
                    continue
                float_manifest = dataclasses.replace(
                    manifest, precision={"requested": precision, "as_run": built.precision_as_run, "note": built.note},
                    backend={**manifest.backend, "engine": built.files[0], "options": built.options},
                    files=hash_files(work, built.files))
                sessions[precision] = session_side.load(float_manifest, work)
            results = bench_sessions(sessions, list(frames), iterations=iterations, progress=False)
        finally:
            for session in sessions.values():
                session.close()
    latency = {r.precision_requested: round(r.latency_ms["mean"], 3) for r in results}
    as_run = {r.precision_requested: r.precision_as_run for r in results}
    fastest = min(latency, key=latency.get)
    speedup = latency["fp32"] / latency["int8"] if "fp32" in latency else float("nan")
    verdict = SpeedVerdict(latency_ms=latency, as_run=as_run, speedup_vs_fp32=round(speedup, 3),
                           int8_fastest=fastest == "int8", recommended=fastest, iterations=iterations, skipped=skipped)
    if fastest != "int8":
        verdict.why = diagnose() if diagnose else "the backend gives no layer-level detail"
    return verdict
