"""ONNX Runtime, CPU execution provider: the portable default that runs wherever Python does.

The backend in two halves, as Polygraphy splits loaders from runners: `session` (run time: load an
engine and infer, torch-free and build-free) and `build` (build time: the engine file, INT8, the
mIoU budget). This module says only whether the library is here.
"""

from __future__ import annotations

from edgeseg.backends import Availability

NAME = "onnxruntime"


def availability() -> Availability:
    try:
        import onnxruntime as ort
    except ImportError:
        return Availability(False, None, "onnxruntime is not installed (pip install onnxruntime)")
    return Availability(True, ort.__version__, devices=tuple(ort.get_available_providers()))
