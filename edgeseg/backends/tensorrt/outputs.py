"""Outputs whose shape TensorRT only knows after it has run: the detections of an instance engine.

An instance graph (edgeseg.models.maskrcnn.deploy) ends in ONNX NonMaxSuppression and a TopK/Gather whose
length depends on the frame, so its outputs (boxes, labels, scores, masks) have a -1 in the shape the
execution context reports even after the input shape is set. TensorRT 10 hands such outputs to an
`IOutputAllocator` set with `context.set_output_allocator(name, allocator)`: during `execute_async_v3`
it asks the allocator for device memory (`reallocate_output[_async]`, the size in bytes) and reports
the shape (`notify_shape`) before the call returns. See NVIDIA's Python API,
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
(IOutputAllocator), and the C++ class it wraps,
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/c-api/classnvinfer1_1_1v__1__0_1_1_i_output_allocator.html.

`DynamicOutputs` is the allocator's logic in plain Python over the project's CUDA helper (cuda.py), so
that it is tested without TensorRT; `output_allocator` wraps it in the TensorRT class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeseg.errors import EdgesegError

MIN_BYTES = 4096  # the first buffer of an output: a frame with a few detections needs no second allocation
_FIX = "check the GPU with nvidia-smi (free memory); rebuild the engine if the driver changed"


def data_dependent(shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """The outputs (name -> the shape the execution context reports after set_input_shape) that need an
    output allocator: those with a -1 left, whose size only the run itself decides."""
    return [name for name, shape in shapes.items() if any(int(d) < 0 for d in shape)]


def ordered_outputs(engine_outputs: Sequence[str], manifest_names: str, instances: bool) -> list[str]:
    """The engine's outputs in the graph's order. TensorRT lists I/O tensors in its own order; the manifest
    names the outputs in the ONNX graph's order (an instance engine: "boxes,labels,scores,masks"), which is
    the order `Session._run_all` promises. An instance engine whose outputs are not the ones named is refused."""
    named = [n for n in manifest_names.split(",") if n]
    if sorted(named) == sorted(engine_outputs):
        return named
    if instances:
        raise EdgesegError(f"this instance engine has outputs {', '.join(engine_outputs)}; its manifest names "
                           f"{manifest_names}",
                           "rebuild the engine: the manifest and the engine do not belong together")
    return list(engine_outputs)


@dataclass
class _Buffer:
    device: int  # device pointer handed to TensorRT
    host: np.ndarray  # page-locked uint8 staging of the same capacity, so the copy back is asynchronous
    capacity: int  # bytes


class DynamicOutputs:
    """Device buffers (and pinned host twins) for data-dependent outputs, kept between runs and grown when
    a frame needs more: a camera stream allocates a few times, not every frame.

    TensorRT's Python binding prints and drops an exception raised inside a callback, so a failed
    allocation is kept in `error` and raised by `check()` after the run."""

    def __init__(self, cuda) -> None:
        self.cuda = cuda
        self._buffers: dict[str, _Buffer] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.error: Exception | None = None

    def begin(self) -> None:
        """Before a run: forget the previous run's shapes, so a shape TensorRT did not report is noticed."""
        self.shapes = {}
        self.error = None

    def reallocate(self, name: str, size: int) -> int:
        """A device pointer of at least `size` bytes for output `name` (0 when allocation failed). cudaMalloc
        aligns to 256 bytes, more than TensorRT asks of an output."""
        try:
            buffer = self._buffers.get(name)
            if buffer is not None and int(size) <= buffer.capacity:
                return buffer.device
            capacity = max(int(size), MIN_BYTES, 2 * buffer.capacity if buffer else 0)
            device = self.cuda.malloc(capacity)
            try:
                host = self.cuda.pinned((capacity,), np.uint8)
            except Exception:
                self.cuda.free(device)
                raise
            if buffer is not None:  # the previous run has been synchronized: nothing still reads it
                self._free(buffer)
            self._buffers[name] = _Buffer(device, host, capacity)
            return device
        except Exception as exc:  # raised here it would only be printed by TensorRT's binding
            self.error = exc
            return 0

    def notify(self, name: str, shape: Sequence[int]) -> None:
        self.shapes[name] = tuple(int(d) for d in shape)

    def check(self) -> None:
        if self.error is not None:
            error = self.error
            raise EdgesegError(f"allocating an output of the TensorRT engine failed: {error}", _FIX) from error

    def _nbytes(self, name: str, dtype: np.dtype) -> int:
        if name not in self.shapes:
            raise EdgesegError(f"TensorRT ran but did not report the shape of output {name}",
                               "rebuild the engine with this TensorRT; report it if it happens again")
        nbytes = int(np.prod(self.shapes[name], dtype=np.int64)) * np.dtype(dtype).itemsize
        buffer = self._buffers.get(name)
        if nbytes and (buffer is None or nbytes > buffer.capacity):
            raise EdgesegError(f"TensorRT reported output {name} as {self.shapes[name]} ({nbytes} bytes), more than "
                               f"it asked memory for", "rebuild the engine with this TensorRT")
        return nbytes

    def copy_to_host(self, name: str, dtype: np.dtype) -> None:
        """Queue the copy of output `name` to its pinned staging buffer on the session's stream."""
        nbytes = self._nbytes(name, dtype)
        if nbytes:
            buffer = self._buffers[name]
            self.cuda.to_host(buffer.host[:nbytes], buffer.device)

    def result(self, name: str, dtype: np.dtype) -> np.ndarray:
        """Output `name` as an array of its own (after the stream is synchronized): the staging buffer is
        overwritten by the next run."""
        nbytes, shape = self._nbytes(name, dtype), self.shapes[name]
        if not nbytes:
            return np.zeros(shape, dtype)  # no detections: (0, 4), (0,), (0,), (0, 28, 28)
        return self._buffers[name].host[:nbytes].view(dtype).reshape(shape).copy()

    def _free(self, buffer: _Buffer) -> None:
        self.cuda.free(buffer.device)
        self.cuda.free_pinned(buffer.host)

    def close(self) -> None:
        for buffer in self._buffers.values():
            self._free(buffer)
        self._buffers = {}


def output_allocator(trt, outputs: DynamicOutputs):
    """A trt.IOutputAllocator over `outputs`. The caller keeps it referenced for as long as the context
    may run: TensorRT holds a raw pointer to it. Both reallocate callbacks are given: TensorRT 10's
    binding calls reallocate_output_async where the application defines it and falls back to
    reallocate_output (deprecated since 10.x) otherwise."""

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)  # pybind11: the base must be initialized explicitly

        def reallocate_output(self, tensor_name, memory, size, alignment):
            return outputs.reallocate(tensor_name, size) or None  # None: "cannot be satisfied", per the docs

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return outputs.reallocate(tensor_name, size) or None

        def notify_shape(self, tensor_name, shape) -> None:
            outputs.notify(tensor_name, shape)

    return OutputAllocator()
