"""Backends behind one small interface, each in its own folder, each library imported only there.

A backend is a package `edgeseg.backends.<name>` in two halves, as Polygraphy splits its loaders from
its runners, so that run time never imports build time:
  <name>/__init__.py   NAME, availability() -> Availability: can it run here, which version, why not
  <name>/session.py    load(manifest, root, options: LoadOptions) -> Session      (run time: torch-free)
  <name>/build.py      build(onnx_path, out_dir, spec: BuildSpec) -> Built, FLOAT_PRECISIONS and,
                       where the library can say why INT8 is slow, int8_diagnosis(root, manifest)
  <name>/serve.py      what Triton, OVMS and DeepStream get from its engines (edgeseg.serve): TRITON_BACKEND,
                       TRITON_MODEL_FILE, INSTANCE_KIND, RUNTIME, triton_parameters(), served_graph(),
                       deepstream_graph()
Nothing outside this package asks which backend it is talking to.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass
from types import ModuleType

from edgeseg.errors import EdgesegError, UnknownNameError


@dataclass(frozen=True)
class Availability:
    ok: bool
    version: str | None
    reason: str = ""  # why not, when not ok
    devices: tuple[str, ...] = ()


MODULES = {
    "tensorrt": "edgeseg.backends.tensorrt",
    "openvino": "edgeseg.backends.openvino",
    "onnxruntime": "edgeseg.backends.onnxruntime",
    "torch": "edgeseg.backends.torch",
}
# --backend auto: TensorRT where it can run, OpenVINO on x86, else ONNX Runtime (the portable default).
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")

__all__ = ["Availability", "names", "get", "session_side", "build_side", "serve_side", "availability", "resolve"]


def names() -> list[str]:
    return list(MODULES)


def get(name: str) -> ModuleType:
    """The backend's package: NAME and availability(); imports no inference library."""
    if name not in MODULES:
        raise UnknownNameError("backend", name, MODULES)
    return importlib.import_module(MODULES[name])


def session_side(name: str) -> ModuleType:
    """The run-time half: `load(manifest, root, options) -> Session`."""
    return importlib.import_module(get(name).__name__ + ".session")


def build_side(name: str) -> ModuleType:
    """The build-time half: `build(onnx_path, out_dir, spec) -> Built`, `FLOAT_PRECISIONS`."""
    return importlib.import_module(get(name).__name__ + ".build")


def serve_side(name: str) -> ModuleType:
    """The serving half: what a model server gets from this backend's engines (edgeseg.serve)."""
    return importlib.import_module(get(name).__name__ + ".serve")


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
