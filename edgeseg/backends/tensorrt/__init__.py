"""TensorRT engines for Jetson and desktop NVIDIA GPUs, written against the TensorRT 10 and 11 Python API.

Build (`build`, TensorRT 10): ONNX parser -> builder config with a workspace limit, an optimization profile
for the input, a timing cache file shared by every build on this GPU, the FP16 builder flag, and a
DLA core with GPU fallback on Jetson.
Build (TensorRT 11): weak typing is gone; networks are strongly typed, so FP16 comes from an FP16
ONNX (made here with FP32 I/O kept) and no precision flags are set. `strongly_typed=True` opts into
the same path on TensorRT 10.12+.
Run (`session`): deserialize, pinned host + device buffers, copies and `execute_async_v3` on one CUDA
stream. An engine only runs on the TensorRT version and GPU it was built for: load checks both first.
Instance engines (Mask R-CNN): TensorRT's plugin library is registered before parsing and deserializing
(RoiAlign is the ROIAlign_TRT plugin), and the detections, whose count the frame decides, get their memory
during the run from an IOutputAllocator (`outputs`). INT8 for them is explicit only (heads float).
"""

from __future__ import annotations

from edgeseg.backends import Availability

NAME = "tensorrt"


def availability() -> Availability:
    try:
        import tensorrt as trt
    except ImportError:
        return Availability(False, None, "tensorrt is not installed (it comes with JetPack, or NVIDIA's wheels: "
                                         "pip install tensorrt); it cannot be installed on CPU-only machines")
    from edgeseg.backends.tensorrt import cuda as _cuda

    ok, reason = _cuda.available()
    return Availability(ok, trt.__version__, reason, ("cuda",) if ok else ())
