"""OpenVINO: IR (.xml/.bin) via openvino.convert_model, for Intel CPUs, iGPUs and NPUs.

Precision facts this backend exists to get right:
- On CPUs with AVX512-BF16 or AMX, OpenVINO runs an "FP32" model in bf16 unless
  INFERENCE_PRECISION_HINT is f32. FP32 builds set it; the manifest records what the compiled model
  reports, never what was asked.
- FP16 is a compressed IR (FP16 weights). x86 CPUs without AVX512-FP16 execute it in bf16 (or f32);
  the precision "as run" is read back from the compiled model.

Two halves: `session` (run time, openvino only) and `build` (IR, NNCF INT8, the mIoU budget).
"""

from __future__ import annotations

from edgeseg.backends import Availability

NAME = "openvino"


def availability() -> Availability:
    try:
        import openvino as ov
    except ImportError:
        return Availability(False, None, "openvino is not installed (pip install 'edgeseg[openvino]')")
    try:
        devices = tuple(ov.Core().available_devices)
    except Exception as exc:  # a broken plugin install
        from edgeseg.errors import reraise_interrupt

        reraise_interrupt(exc)  # else --backend auto would quietly build for another backend
        return Availability(False, ov.get_version(), f"OpenVINO cannot enumerate devices: {exc}")
    return Availability(bool(devices), version(), "" if devices else "OpenVINO found no devices", devices)


def version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]
