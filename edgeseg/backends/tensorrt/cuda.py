"""Device memory and streams for the TensorRT runtime, as TensorRT's own Python samples do it:
cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` before 12.6) where installed, else pycuda
(what older JetPack images carry). Only the TensorRT backend imports this module.
"""

from __future__ import annotations

import ctypes

import numpy as np

from edgeseg.errors import EdgesegError


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6
    return cudart


def available() -> tuple[bool, str]:
    """(usable, reason): a CUDA binding is importable and sees at least one GPU."""
    try:
        cudart = _cudart()
    except ImportError:
        try:
            import pycuda.driver as cuda

            cuda.init()
            return (cuda.Device.count() > 0, "pycuda sees no GPU")
        except ImportError:
            return False, "neither cuda-python nor pycuda is installed (pip install 'edgeseg[tensorrt]')"
        except Exception as exc:  # pycuda raises LogicError/RuntimeError without a driver
            from edgeseg.errors import reraise_interrupt

            reraise_interrupt(exc)  # else --backend auto would quietly build for another backend
            return False, f"pycuda cannot initialize CUDA: {exc}"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return False, f"CUDA reports no usable GPU ({err})"
    return True, ""


class CudaPython:
    """The subset of the CUDA runtime a TensorRT session needs, over cuda-python."""

    def __init__(self, device: int = 0) -> None:
        self.rt = _cudart()
        self._check(self.rt.cudaSetDevice(device))
        self.stream = self._check(self.rt.cudaStreamCreate())

    def _check(self, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EdgesegError(f"CUDA call failed: {self.rt.cudaGetErrorString(err)[1]}",
                               "check the GPU with nvidia-smi and `edgeseg doctor`")
        return values[0] if len(values) == 1 else values

    def device_properties(self, device: int = 0) -> tuple[str, str]:
        props = self._check(self.rt.cudaGetDeviceProperties(device))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.strip("\x00 "), f"{props.major}.{props.minor}"

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(nbytes)))

    def free(self, pointer: int) -> None:
        self.rt.cudaFree(pointer)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Page-locked host memory: the only kind a copy can overlap with compute."""
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pointer = self._check(self.rt.cudaMallocHost(size))
        raw = (ctypes.c_byte * size).from_address(int(pointer))
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        self._pinned = getattr(self, "_pinned", []) + [int(pointer)]
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        """Give back an array from `pinned` before close (a buffer that grows replaces its old one)."""
        pointer = int(array.ctypes.data)
        if pointer in getattr(self, "_pinned", []):
            self._pinned.remove(pointer)
            self.rt.cudaFreeHost(pointer)

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, kind, self.stream))

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self.stream))

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        for pointer in getattr(self, "_pinned", []):
            self.rt.cudaFreeHost(pointer)
        self._pinned = []
        self.rt.cudaStreamDestroy(self.stream)


class PyCuda:
    """The same subset over pycuda."""

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(device).make_context()
        self.stream = cuda.Stream()
        self._allocations: dict[int, object] = {}

    def device_properties(self, device: int = 0) -> tuple[str, str]:
        dev = self.cuda.Device(device)
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}"

    def malloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._allocations.pop(pointer).free()

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def free_pinned(self, array: np.ndarray) -> None:
        """pycuda frees page-locked memory with its array's base (a HostAllocation); else when collected."""
        free = getattr(array.base, "free", None)
        if free is not None:
            free()

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(pointer, host, self.stream)

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        self.cuda.memcpy_dtoh_async(host, pointer, self.stream)

    @property
    def stream_handle(self) -> int:
        return self.stream.handle

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.context.pop()


def open_device(device: int = 0):
    try:
        _cudart()
        return CudaPython(device)
    except ImportError:
        return PyCuda(device)
