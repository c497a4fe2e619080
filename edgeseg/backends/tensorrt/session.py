"""TensorRT sessions: the run-time half of the backend (tensorrt and a CUDA binding only).

One input; one output (a semantic engine) or several (an instance engine: boxes, labels, scores, masks),
those whose shape depends on the data given memory during the run by an IOutputAllocator (outputs.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseg.backends.tensorrt.outputs import DynamicOutputs, data_dependent, ordered_outputs, output_allocator
from edgeseg.errors import EdgesegError
from edgeseg.manifest import Manifest
from edgeseg.runtime.session import INSTANCES, LoadOptions, Session

ENGINE_FILE = "model.engine"
_PLUGINS: dict[str, object] = {}  # "logger" -> the logger TensorRT's plugin library keeps, "ok" -> the result


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


def init_plugins(trt) -> bool:
    """Register TensorRT's own plugins (libnvinfer_plugin) once per process: the ONNX parser maps RoiAlign to
    the ROIAlign_TRT plugin, which it looks up in the plugin registry, and an engine holding that plugin
    deserializes only where the registry has it (NVIDIA: call initLibNvInferPlugins "once before accessing
    the Plugin Registry", https://docs.nvidia.com/deeplearning/tensorrt/api/c_api/_nv_infer_plugin_8h.html).
    The library keeps the logger for the life of the process, so it is a module-level one, never freed."""
    if "ok" not in _PLUGINS:
        _PLUGINS["logger"] = trt.Logger(trt.Logger.ERROR)
        try:
            _PLUGINS["ok"] = bool(trt.init_libnvinfer_plugins(_PLUGINS["logger"], ""))
        except Exception:  # libnvinfer_plugin missing: only graphs with plugins need it, and they say so
            _PLUGINS["ok"] = False
    return bool(_PLUGINS["ok"])


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
        plugins = init_plugins(trt)  # before deserializing: an instance engine holds the ROIAlign_TRT plugin
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine((root / ENGINE_FILE).read_bytes())
        if self.engine is None:
            fix = _rebuild_hint(manifest) if plugins else ("install TensorRT's plugin library (libnvinfer_plugin, "
                                                           "in JetPack and NVIDIA's wheels): RoiAlign needs it")
            raise EdgesegError(f"TensorRT cannot deserialize {root / ENGINE_FILE}: " + " | ".join(self._logger.messages[-2:]),
                               fix)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input = names[is_input.index(True)]
        self.outputs = ordered_outputs([n for n, i in zip(names, is_input) if not i], manifest.output.name,
                                       manifest.output.kind == INSTANCES)
        self.output = self.outputs[0]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._shape: tuple[int, ...] | None = None
        self._buffers: list[int] = []  # the input's device buffer, then each fixed-shape output's
        self._fixed: dict[str, tuple[np.ndarray, int]] = {}  # output -> (pinned host array, device pointer)
        self._dynamic = DynamicOutputs(self.cuda)  # data-dependent outputs: memory given during the run
        self._allocator = None  # the trt.IOutputAllocator: TensorRT holds a raw pointer, so this keeps it alive

    def _allocate(self, shape: tuple[int, ...]) -> None:
        """(Re)allocate buffers when the batch shape changes; a camera stream allocates once. An output whose
        shape still has a -1 once the input shape is set depends on the data (detections): TensorRT asks the
        output allocator for its memory during the run instead."""
        self._release()
        self.context.set_input_shape(self.input, shape)
        shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in self.outputs}
        dynamic = set(data_dependent(shapes))
        self.host_in = self.cuda.pinned(shape, self._dtypes[self.input])
        self._buffers = [self.cuda.malloc(self.host_in.nbytes)]
        self.context.set_tensor_address(self.input, self._buffers[0])
        self._fixed = {}
        for name in self.outputs:
            if name in dynamic:
                if self._allocator is None:
                    self._allocator = output_allocator(self.trt, self._dynamic)
                self.context.set_output_allocator(name, self._allocator)
                continue
            host = self.cuda.pinned(shapes[name], self._dtypes[name])
            self._buffers.append(self.cuda.malloc(host.nbytes))
            self._fixed[name] = (host, self._buffers[-1])
            self.context.set_tensor_address(name, self._buffers[-1])
        self.host_out = self._fixed[self.output][0] if self.output in self._fixed else None
        self._shape = shape

    def _execute(self, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """Run once and copy back the outputs `names` (host arrays of their own, in that order)."""
        if batch.shape != self._shape:
            self._allocate(batch.shape)
        np.copyto(self.host_in, batch)
        self.cuda.to_device(self._buffers[0], self.host_in)
        self._dynamic.begin()
        ok = self.context.execute_async_v3(self.cuda.stream_handle)
        self._dynamic.check()  # an allocation that failed inside TensorRT's callback
        if not ok:
            raise EdgesegError("TensorRT execution failed: " + " | ".join(self._logger.messages[-2:]),
                               "check the GPU with nvidia-smi; rebuild the engine if the driver changed")
        for name in names:
            if name in self._fixed:
                host, pointer = self._fixed[name]
                self.cuda.to_host(host, pointer)
            else:  # its shape was reported (notify_shape) before execute_async_v3 returned
                self._dynamic.copy_to_host(name, self._dtypes[name])
        self.cuda.synchronize()
        return [self._fixed[n][0].copy() if n in self._fixed else self._dynamic.result(n, self._dtypes[n])
                for n in names]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._execute(batch, [self.output])[0]

    def _run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output in the graph's order, with TensorRT's dtypes (labels may come back int32 or int64:
        edgeseg.runtime.instances converts)."""
        return self._execute(batch, self.outputs)

    def _release(self) -> None:
        for pointer in self._buffers:
            self.cuda.free(pointer)
        self._buffers = []
        self._fixed = {}

    def close(self) -> None:
        self._release()
        self._dynamic.close()
        self.cuda.close()


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        raise EdgesegError("CUDA_VISIBLE_DEVICES is empty, so no GPU is visible", "unset it to run TensorRT engines")
    return TensorRtSession(manifest, root, options)
