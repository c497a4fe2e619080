"""A served model's inputs and outputs as the server sees them, read from the model file itself.

Every server checks a configuration against the graph it loads, each in its own words; edgeseg reads the
graph once into `Tensor`s and writes (and checks) every configuration from them, never from what the
manifest says alone: a hand-edited file or a graph variant made for one server is what gets served.
"""

from __future__ import annotations

from dataclasses import dataclass

# numpy dtype name -> Triton's DataType enum name (common/protobuf/model_config.proto)
TRITON_TYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
                "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
                "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
                "bfloat16": "TYPE_BF16"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # numpy's name: uint8, float32, ...
    shape: tuple[int | None, ...]  # None: a dimension the graph leaves open

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} ({dims})"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def input(self, name: str) -> Tensor | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> Tensor | None:
        return next((t for t in self.outputs if t.name == name), None)
