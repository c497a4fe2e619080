"""Which external-data files an ONNX graph reads, found with the standard library.

The runtime must not import the `onnx` package (a vehicle image carries numpy, OpenCV and one inference
library), and ONNX Runtime opens external data by the paths the graph names: so the engine's hash check
reads those paths itself, walking only the protobuf fields (onnx.proto's numbers) that lead from a
ModelProto to a TensorProto's external_data entries.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Iterator

from edgeseg.manifest.schema import REBUILD, ManifestError

# ONNX protobuf field numbers (onnx.proto) on every path from a ModelProto to a TensorProto: the
# external-data check parses only these, with the standard library (the runtime never imports onnx).
_ONNX_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}


_MAX_DEPTH = 64


def external_data_locations(path: Path) -> list[str]:
    """The `location` of every tensor in the ONNX file that keeps its data in another file."""
    if path.stat().st_size == 0:
        return []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            return _locations(view, path)
        finally:
            view.release()


def _locations(view: memoryview, path: Path) -> list[str]:
    found: list[str] = []
    stack = [("model", 0, len(view), 0)]
    while stack:
        kind, start, end, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _not_onnx(path, "nested too deep")
        if kind == "entry":
            entry = {number: bytes(view[a:b]) for number, wire, a, b in _fields(view, start, end, path) if wire == 2}
            if entry.get(1) == b"location":
                found.append(entry.get(2, b"").decode("utf-8", "replace"))
            continue
        children = _ONNX_CHILDREN[kind]
        for number, wire, a, b in _fields(view, start, end, path):
            if wire == 2 and number in children:
                stack.append((children[number], a, b, depth + 1))
    return found


def _fields(view: memoryview, pos: int, end: int, path: Path) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field of one protobuf message."""
    while pos < end:
        key, pos = _varint(view, pos, end, path)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(view, pos, end, path)
        elif wire == 2:
            size, pos = _varint(view, pos, end, path)
            after = pos + size
        elif wire in (1, 5):
            after = pos + (8 if wire == 1 else 4)
        else:
            raise _not_onnx(path, f"wire type {wire}")
        if after > end:
            raise _not_onnx(path, "truncated")
        yield number, wire, pos, after
        pos = after


def _varint(view: memoryview, pos: int, end: int, path: Path) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _not_onnx(path, "truncated varint")


def _not_onnx(path: Path, why: str) -> ManifestError:
    return ManifestError(f"{path} is not a readable ONNX file ({why})", REBUILD)
