"""TensorRT sessions: the run-time half of the backend (tensorrt and a CUDA binding only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.manifest import Manifest
from edgeseg.runtime.session import LoadOptions, Session

ENGINE_FILE = "model.engine"


def major_version(trt) -> int:
    return int(trt.__version__.split(".")[0])


def _rebuild_hint(manifest: Manifest | None = None) -> str:
    command = manifest.command if manifest else "edgeseg build ... --backend tensorrt"
    return f"rebuild the engine on this machine: {command} --force"


class Logger:
    """Keeps TensorRT's messages so an error can quote them instead of leaving them on stderr."""

    def __new__(cls, trt):
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.messages: list[str] = []

            def log(self, severity, msg):
                if severity in KEPT:
                    self.messages.append(str(msg))

        KEPT = {trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR, trt.ILogger.Severity.WARNING}

        return Logger()


def _check_compatible(trt, manifest: Manifest, cuda) -> None:
    built_with = manifest.backend.get("version")
    if built_with != trt.__version__:
        raise EdgesegError(f"this engine was built with TensorRT {built_with}; this machine has {trt.__version__}. "
                           "TensorRT engines only run on the version that built them", _rebuild_hint(manifest))
    want = manifest.backend.get("options", {}).get("compute_capability")
    name, have = cuda.device_properties()
    if want and want != have:
        raise EdgesegError(f"this engine was built for a GPU of compute capability {want}; this GPU ({name}) is {have}",
                           _rebuild_hint(manifest))


class TensorRtSession(Session):
    def __init__(self, manifest: Manifest, root: Path, options: LoadOptions) -> None:
        import tensorrt as trt

        from edgeseg.backends.tensorrt import cuda as _cuda

        super().__init__(manifest)
        self.trt = trt
        self.cuda = _cuda.open_device(int(options.device or 0))
        _check_compatible(trt, manifest, self.cuda)
        self._logger = Logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine((root / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise EdgesegError(f"TensorRT cannot deserialize {root / ENGINE_FILE}: " + " | ".join(self._logger.messages[-2:]),
                               _rebuild_hint(manifest))
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input = names[is_input.index(True)]
        self.output = names[is_input.index(False)]
        self._shape: tuple[int, ...] | None = None
        self._buffers: list[int] = []

    def _allocate(self, shape: tuple[int, ...]) -> None:
        """(Re)allocate buffers when the batch shape changes; a camera stream allocates once."""
        trt, engine = self.trt, self.engine
        self._release()
        self.context.set_input_shape(self.input, shape)
        out_shape = tuple(self.context.get_tensor_shape(self.output))
        in_dtype, out_dtype = (np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in (self.input, self.output))
        self.host_in = self.cuda.pinned(shape, in_dtype)
        self.host_out = self.cuda.pinned(out_shape, out_dtype)
        self._buffers = [self.cuda.malloc(self.host_in.nbytes), self.cuda.malloc(self.host_out.nbytes)]
        self.context.set_tensor_address(self.input, self._buffers[0])
        self.context.set_tensor_address(self.output, self._buffers[1])
        self._shape = shape

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self._shape:
            self._allocate(batch.shape)
        np.copyto(self.host_in, batch)
        self.cuda.to_device(self._buffers[0], self.host_in)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise EdgesegError("TensorRT execution failed: " + " | ".join(self._logger.messages[-2:]),
                               "check the GPU with nvidia-smi; rebuild the engine if the driver changed")
        self.cuda.to_host(self.host_out, self._buffers[1])
        self.cuda.synchronize()
        return self.host_out.copy()

    def _release(self) -> None:
        for pointer in self._buffers:
            self.cuda.free(pointer)
        self._buffers = []

    def close(self) -> None:
        self._release()
        self.cuda.close()


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        raise EdgesegError("CUDA_VISIBLE_DEVICES is empty, so no GPU is visible", "unset it to run TensorRT engines")
    return TensorRtSession(manifest, root, options)
