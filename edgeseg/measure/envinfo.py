"""Where a benchmark ran: CPU and flags, cores and threads, GPU and driver, library versions, power mode.

Two numbers are only comparable when this block matches; `edgeseg compare` prints both sides' CPU and
thread count so a "regression" that is really a different runner is visible at once. Everything here
is read without importing an inference library (versions come from package metadata) and every probe
of an external tool has a timeout, so a missing or hung tool costs at most a few seconds.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

# CPU features that change which kernels ONNX Runtime / OpenVINO pick (and so their speed)
FLAG_PREFIXES = ("avx512", "avx2", "avx_vnni", "amx", "fma", "f16c", "sse4_2", "neon", "asimd")
FLAG_WORDS = ("avx", "vnni", "bf16", "fp16")
# module -> distributions that may provide it (first one installed wins)
LIBRARIES = {"numpy": ("numpy",), "cv2": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
             "onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "openvino": ("openvino",),
             "tensorrt": ("tensorrt",), "edgeseg": ("edgeseg",)}


def fingerprint(threads: int | None = None) -> dict:
    """A JSON-ready description of this machine as a benchmark sees it."""
    return {"cpu": cpu_info(), "threads_requested": threads or "library default",
            "python": platform.python_version(), "platform": platform.platform(),
            "libraries": library_versions(), "gpu": gpu_info(), "power": power_mode(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = relevant_flags(value.split())
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "flags": flags, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "machine": platform.machine()}


def relevant_flags(flags: list[str]) -> list[str]:
    """The few CPU flags that matter to inference speed, sorted (avx512*, vnni, bf16, amx, ...)."""
    keep = {f for f in flags if f.startswith(FLAG_PREFIXES) or any(w in f for w in FLAG_WORDS)}
    return sorted(keep)


def library_versions() -> dict[str, str | None]:
    """Installed versions, from metadata so nothing heavy is imported; torch only if already imported."""
    versions = {}
    for module, dists in LIBRARIES.items():
        versions[module] = _dist_version(dists)
    if "torch" in sys.modules:  # never import torch just to print its version: the runtime is torch-free
        versions["torch"] = getattr(sys.modules["torch"], "__version__", None)
    return versions


def _dist_version(dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a probe command, or None when it is absent, fails or hangs."""
    if not shutil.which(cmd[0]):
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def gpu_info() -> list[dict] | None:
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                "--format=csv,noheader"])
    if not out:
        return None
    rows = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        rows.append(dict(zip(("name", "driver", "memory", "max_sm_clock"), parts)))
    return rows


def power_mode() -> dict | None:
    """Jetson power model and clocks (nvpmodel -q, jetson_clocks --show); None off Jetson."""
    nvp, clocks = _run(["nvpmodel", "-q"]), _run(["jetson_clocks", "--show"])
    if nvp is None and clocks is None:
        return None
    return {"nvpmodel": nvp, "jetson_clocks": clocks[:2000] if clocks else None}


def short(env: dict) -> str:
    """One line for tables: CPU model, cores, threads."""
    cpu = env.get("cpu", {})
    gpu = env.get("gpu") or []
    gpus = f", GPU {gpu[0].get('name')} (driver {gpu[0].get('driver')})" if gpu else ""
    return (f"{cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} cores, threads "
            f"{env.get('threads_requested', '?')}{gpus}")
