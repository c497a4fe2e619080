"""Backends behind one small interface, each in its own module, each library imported only there.

A backend module provides:
  NAME: str
  availability() -> Availability            can it run here, which version, and if not why not
  build(onnx_path, out_dir, spec) -> Built  engine files written into out_dir (a staging directory)
  load(manifest, root, options: LoadOptions) -> Session
Nothing outside this package asks which backend it is talking to.
"""

from __future__ import annotations

import importlib
import platform
from types import ModuleType

from ..errors import EdgesegError, UnknownNameError
from .base import Availability, BuildSpec, Built, LoadOptions, Session

MODULES = {
    "tensorrt": "edgeseg.backends.tensorrt",
    "openvino": "edgeseg.backends.openvino",
    "onnxruntime": "edgeseg.backends.onnxruntime",
    "torch": "edgeseg.backends.torch",
}
# --backend auto: TensorRT where it can run, OpenVINO on x86, else ONNX Runtime (the portable default).
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")

__all__ = ["Availability", "BuildSpec", "Built", "LoadOptions", "Session", "names", "get", "availability", "resolve"]


def names() -> list[str]:
    return list(MODULES)


def get(name: str) -> ModuleType:
    if name not in MODULES:
        raise UnknownNameError("backend", name, MODULES)
    return importlib.import_module(MODULES[name])


def availability(name: str) -> Availability:
    return get(name).availability()


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def resolve(name: str) -> tuple[str, str]:
    """The backend to use for `name` ("auto" or a backend name) and why; refuses an unusable one."""
    if name != "auto":
        status = availability(name)
        if not status.ok:
            raise EdgesegError(f"backend '{name}' cannot run here: {status.reason}",
                               "run `edgeseg doctor` to see which backends this machine has, or pass --backend auto")
        return name, "requested"
    skipped = []
    for candidate in AUTO_ORDER:
        if candidate == "openvino" and not _is_x86():
            skipped.append("openvino: not an x86 machine")
            continue
        status = availability(candidate)
        if status.ok:
            return candidate, "auto: " + "; ".join(skipped + [f"{candidate} {status.version} is usable"])
        skipped.append(f"{candidate}: {status.reason.split(' (')[0]}")
    raise EdgesegError("no inference backend is usable here: " + "; ".join(skipped),
                       "pip install onnxruntime (or edgeseg[openvino])")
