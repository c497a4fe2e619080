"""Fakes for tests/engines/test_trt_instances.py: a CUDA device whose memory is numpy byte arrays, and the part
of TensorRT 10's Python API the session uses, behaving as NVIDIA documents it (an output whose shape the
data decides reports -1 until the run; during execute_async_v3 it gets memory from the IOutputAllocator,
then its shape through notify_shape)."""

from __future__ import annotations

import types

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.manifest import InputSpec, Manifest, OutputSpec


class FakeCuda:
    """Device memory as numpy byte arrays keyed by fake pointers; the same methods as cuda.CudaPython."""

    def __init__(self, limit: int = 1 << 30) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.next, self.limit = 0x1000, limit
        self.mallocs: list[int] = []
        self.freed: list[int] = []
        self.pinned_freed = 0
        self.closed = False

    def malloc(self, nbytes: int) -> int:
        if nbytes > self.limit:
            raise EdgesegError("CUDA call failed: out of memory", "check the GPU")
        pointer, self.next = self.next, self.next + nbytes + 256
        self.memory[pointer] = np.zeros(nbytes, np.uint8)
        self.mallocs.append(nbytes)
        return pointer

    def free(self, pointer: int) -> None:
        del self.memory[pointer]
        self.freed.append(pointer)

    def pinned(self, shape, dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    def free_pinned(self, array: np.ndarray) -> None:
        self.pinned_freed += 1

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        self.memory[pointer][: host.nbytes] = np.ascontiguousarray(host).reshape(-1).view(np.uint8)

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        host.reshape(-1).view(np.uint8)[:] = self.memory[pointer][: host.nbytes]

    def write(self, pointer: int, array: np.ndarray) -> None:
        raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        self.memory[pointer][: raw.size] = raw

    def device_properties(self, device: int = 0) -> tuple[str, str]:
        return "Fake GPU", "8.7"

    stream_handle = 0

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def fake_tensorrt_module(engine_factory) -> types.ModuleType:
    """The part of TensorRT 10's Python API the session uses; dtypes are numpy dtypes (nptype: identity)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0"

    class ILogger:
        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO = range(4)

        def __init__(self) -> None:
            pass

    class Logger(ILogger):
        ERROR = 1

        def __init__(self, severity=None) -> None:
            pass

    class IOutputAllocator:
        def __init__(self) -> None:
            pass

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes):
            return engine_factory(trt)

    trt.ILogger, trt.Logger, trt.IOutputAllocator, trt.Runtime = ILogger, Logger, IOutputAllocator, Runtime
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dtype: dtype
    trt.plugins_registered = []
    trt.init_libnvinfer_plugins = lambda logger, namespace: trt.plugins_registered.append(namespace) or True
    return trt


class FakeEngine:
    """tensors: name -> (mode, dtype, shape with -1 where data-dependent); `compute` maps the input frames
    to every output's array, as the engine would."""

    def __init__(self, trt, tensors: dict, compute, cuda: FakeCuda) -> None:
        self.trt, self.tensors, self.compute, self.cuda = trt, tensors, compute, cuda
        self.num_io_tensors = len(tensors)

    def get_tensor_name(self, i: int) -> str:
        return list(self.tensors)[i]

    def get_tensor_mode(self, name: str):
        return self.trt.TensorIOMode.INPUT if self.tensors[name][0] == "in" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str):
        return np.dtype(self.tensors[name][1])

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.addresses, self.allocators, self.input_shape = engine, {}, {}, None

    def set_input_shape(self, name: str, shape) -> None:
        self.input_shape = tuple(shape)

    def get_tensor_shape(self, name: str):
        shape = self.engine.tensors[name][2]
        return tuple(self.input_shape[0] if d == "N" else d for d in shape)

    def set_tensor_address(self, name: str, pointer: int) -> None:
        self.addresses[name] = pointer

    def set_output_allocator(self, name: str, allocator) -> None:
        self.allocators[name] = allocator

    def execute_async_v3(self, stream: int) -> bool:
        cuda, engine = self.engine.cuda, self.engine
        frames_name = next(n for n, t in engine.tensors.items() if t[0] == "in")
        count = int(np.prod(self.input_shape))
        frames = cuda.memory[self.addresses[frames_name]][:count].reshape(self.input_shape)
        for name, array in engine.compute(frames).items():
            array = np.asarray(array, engine.tensors[name][1])
            if name in self.allocators:  # as TensorRT does: memory first, then the shape, before returning
                pointer = self.allocators[name].reallocate_output_async(name, 0, max(array.nbytes, 1), 256, stream)
                if pointer is None:
                    return False
                cuda.write(pointer, array)
                self.allocators[name].notify_shape(name, array.shape)
            else:
                cuda.write(self.addresses[name], array)
        return True


def fake_manifest(output: OutputSpec, size=(32, 48)) -> Manifest:
    return Manifest(name="fake", model={"name": "fake"}, classes=("car", "person"), palette=((0, 0, 255), (255, 0, 0)),
                    ignore_index=255, input=InputSpec("frames", (1, *size, 3), "uint8", "NHWC"), output=output,
                    precision={"requested": "fp32", "as_run": "fp32"},
                    backend={"name": "tensorrt", "version": "10.9.0", "options": {"compute_capability": "8.7"}},
                    onnx={}, hardware={}, files={}, build_seconds=0.0, created="", command="edgeseg build",
                    edgeseg_version="0")


def detections(frames: np.ndarray) -> dict[str, np.ndarray]:
    """As many detections as the first pixel's blue value says (mod 6): the count follows the frame."""
    d = int(frames[0, 0, 0, 0]) % 6
    boxes = np.array([[2 + i, 3, 20 + i, 25] for i in range(d)], np.float32).reshape(d, 4)
    masks = np.full((d, 28, 28), 0.9, np.float32)
    return {"scores": np.linspace(0.9, 0.5, d), "masks": masks, "boxes": boxes, "labels": np.arange(d) % 2 + 1}
