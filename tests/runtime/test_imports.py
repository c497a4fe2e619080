"""The runtime is torch-free and build-free: a fresh interpreter loads a real engine directory and
runs a frame through it without importing torch, the onnx package, NNCF, or any of edgeseg's
build, training or model code.

What each backend library imports by itself was checked first (onnxruntime 1.32, openvino 2026.4):
neither imports torch, onnx or nncf on import, on loading an engine or on inference, so every check
applies to both backends and none is dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fakedata import untrained_checkpoint

from edgeseg import backends

SIZE = (64, 96)
RUNTIME_BACKENDS = ("onnxruntime", "openvino")

# Run in a fresh interpreter: load the engine directory named in argv[1], infer one frame, and print
# the label map's shape and every module the process holds afterwards.
LOAD_AND_INFER = """
import json, sys
import numpy as np
from edgeseg.runtime import load
with load(sys.argv[1]) as session:
    h, w = session.manifest.input.size
    frame = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    labels = session.infer(frame)
    backend = session.manifest.backend["name"]
print(json.dumps({"shape": list(labels.shape), "dtype": str(labels.dtype), "backend": backend,
                  "modules": sorted(sys.modules)}))
"""


def forbidden(module: str) -> bool:
    """Modules a runtime process must never hold: the training/export stack and edgeseg's build side."""
    top = module.split(".")[0]
    if top in ("torch", "torchvision", "onnx", "onnxscript", "onnxsim", "nncf"):
        return True
    if module.startswith(("edgeseg.build", "edgeseg.train", "edgeseg.models", "edgeseg.data", "edgeseg.demo",
                          "edgeseg.cli")):
        return True
    # the build half of each backend package (edgeseg.backends.<name>.build) and the TensorRT calibrator
    parts = module.split(".")
    return parts[:2] == ["edgeseg", "backends"] and len(parts) >= 4 and parts[3] in ("build", "int8")


def test_forbidden_names_what_it_should():
    for name in ("torch", "torch.nn", "onnx", "onnx.helper", "nncf", "edgeseg.build", "edgeseg.build.export",
                 "edgeseg.train.checkpoint", "edgeseg.models", "edgeseg.backends.openvino.build"):
        assert forbidden(name), name
    for name in ("onnxruntime", "openvino", "numpy", "cv2", "edgeseg.runtime", "edgeseg.manifest",
                 "edgeseg.backends.onnxruntime.session", "torchless", "onnxruntime.capi"):
        assert not forbidden(name), name


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "fastscnn.pt", "fastscnn", SIZE)


@pytest.mark.parametrize("backend", RUNTIME_BACKENDS)
def test_runtime_loads_and_infers_without_torch_or_build_code(backend, checkpoint, tmp_path):
    status = backends.availability(backend)
    if not status.ok:
        pytest.skip(f"{backend} is not installed here: {status.reason}")
    from edgeseg.build.orchestrator import BuildRequest, Destination, Source, build_engine

    out = tmp_path / backend
    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend=backend,
                              destination=Destination(out=str(out))))
    run = subprocess.run([sys.executable, "-c", LOAD_AND_INFER, str(out)], check=False, capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["shape"] == [1, *SIZE] and result["dtype"] == "uint8"
    modules = result["modules"]
    assert "edgeseg.runtime" in modules and f"edgeseg.backends.{backend}.session" in modules  # it did load
    assert backend in modules  # the inference library itself was used
    leaked = [m for m in modules if forbidden(m)]
    assert leaked == [], f"the runtime imported {leaked}"


def test_runtime_modules_import_without_torch():
    """Importing every runtime-side module (streaming, bench, each session half) pulls in none of it either."""
    code = ("import json, sys, edgeseg.runtime, edgeseg.runtime.pipeline, edgeseg.runtime.sources, "
            "edgeseg.runtime.sinks, edgeseg.runtime.visualize, edgeseg.runtime.instances, edgeseg.measure.bench, "
            "edgeseg.backends.onnxruntime.session, edgeseg.backends.openvino.session, "
            "edgeseg.backends.tensorrt.session, edgeseg.backends.torch; print(json.dumps(sorted(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    leaked = [m for m in json.loads(run.stdout.strip().splitlines()[-1]) if forbidden(m)]
    assert leaked == [], f"importing the runtime imported {leaked}"
