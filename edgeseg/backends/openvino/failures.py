"""OpenVINO and NNCF failures as EdgesegErrors that keep the cause and give a fix that fits it.

OpenVINO's messages start with a trace of C++ source locations ("Exception from src/inference/src/
cpp/core.cpp:132:") and put the cause on a later line ('Device with "FOO" name is not registered',
"No conversion rule found for operations: ...", "Error parsing start element tag"). Cutting them to
their first line left only the trace; here the trace lines are dropped, the rest kept, and the cause
is sorted into a device that is missing, an operation that is not supported, a damaged file, or a
file that cannot be written, each with its own fix. Run-time half: imports neither torch nor
edgeseg.build.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Callable, Iterator

from edgeseg.errors import EdgesegError, reraise_interrupt

MAX_LINES = 6  # of OpenVINO's message, after the trace lines are dropped
MAX_CHARS = 600

# A source-location trace, wherever it stands in a line: "Exception from src/.../core.cpp:132:",
# "Check 'res.status == pugi::status_ok' failed at src/frontends/ir/src/input_model.cpp:219:",
# "FrontEnd API failed with OpConversionFailure:", "Traceback (most recent call last):", '  File "x.py", line 3'.
_TRACE = re.compile(r"(?:Exception from \S+:\d+:?\s*|Check '.*?' failed at \S+:\d+:?\s*|"
                    r"^\S+\.(?:cpp|hpp|cc|h):\d+:?\s*)+")
_NOISE = re.compile(r"^(?:FrontEnd API failed with \w+:?|Traceback \(most recent call last\):|File \".*\", line \d+.*|"
                    r"Summary:|\[ ?ERROR ?\]\s*)$")

# What the cause is, by the words OpenVINO and NNCF use for it; the first kind that matches wins.
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("device", re.compile(r"not registered|Device with \"|device .*not (?:found|available)|Cannot load library|"
                          r"libOpenCL|clGetPlatformIDs|VCL compiler|No available devices|unsupported device|"
                          r"device name", re.I)),
    ("unsupported", re.compile(r"No conversion rule|not supported|unsupported|Cannot create .* layer|"
                               r"not implemented|doesn't support|does not support|wasn't fully converted", re.I)),
    ("write", re.compile(r"No space left|Permission denied|Read-only file system|Couldn't create directory|"
                         r"Can't open .* for writ|Failed to (?:create|write)|Disk quota", re.I)),
    ("corrupt", re.compile(r"pars(?:e|ing)|Cannot recognize input model|bin file|Incorrect weights|out of bounds|"
                           r"Unexpected end|protobuf|ModelProto|Failed to read|corrupt|truncated|Empty weights|"
                           r"cannot open|Can't open|Could not open|does not exist|No such file|Invalid|Wrong|mismatch", re.I)),
)


def meaningful_lines(exc: BaseException) -> list[str]:
    """OpenVINO's message without its source-location trace and boilerplate, each line once, in order."""
    lines: list[str] = []
    for raw in str(exc).splitlines():
        line = _TRACE.sub("", raw.strip()).strip()
        if line and not _NOISE.match(line) and line not in lines:
            lines.append(line)
    return lines or [type(exc).__name__]


def cause_kind(text: str) -> str:
    """'device', 'unsupported', 'write', 'corrupt' or 'other' for a message's kept lines."""
    return next((kind for kind, pattern in KINDS if pattern.search(text)), "other")


def summary(exc: BaseException) -> str:
    """The kept lines joined, bounded so a huge message (every unconverted op listed) stays readable."""
    lines = meaningful_lines(exc)
    text = "; ".join(lines[:MAX_LINES]) + (f" (+{len(lines) - MAX_LINES} more lines)" if len(lines) > MAX_LINES else "")
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 3] + "..."


def available_devices() -> str:
    """The devices this OpenVINO can use, for a device fix; never raises (it runs inside an error path)."""
    try:
        import openvino as ov

        return ", ".join(ov.Core().available_devices) or "none"
    except Exception as exc:  # a broken plugin install
        reraise_interrupt(exc)
        return "unknown (OpenVINO cannot list them)"


def compile_fix(kind: str, device: str, cache_dir: str | None) -> str:
    """The fix for a compile (engine load) failure of kind `kind`."""
    if kind == "device":
        return (f"OpenVINO here can use: {available_devices()}. Pass --device CPU (or one of those), or install "
                f"the driver of {device}; `edgeseg doctor` lists what this machine can run")
    if kind == "unsupported":
        return (f"{device} cannot run an operation of this IR: load it with --device CPU, or rebuild it for {device} "
                "(`edgeseg build ... --backend openvino --device " + device + " --force`)")
    if kind == "corrupt":
        extra = f", or delete the compiled-model cache {cache_dir}" if cache_dir else ""
        return f"the engine's model.xml/model.bin are damaged or incomplete: rebuild with `edgeseg build ... --force`{extra}"
    if kind == "write" and cache_dir:
        return f"the compiled-model cache {cache_dir} cannot be written: free space there, or pass another cache folder"
    return "check the device with `edgeseg doctor`, or rebuild with `edgeseg build ... --force`"


def convert_fix(kind: str) -> str:
    """The fix for an ONNX -> IR conversion failure."""
    if kind == "unsupported":
        return ("this OpenVINO cannot convert an operation of the graph: export with the other exporter "
                "(--exporter torchscript or dynamo), upgrade openvino, or build for onnxruntime")
    if kind == "corrupt":
        return "the ONNX file is damaged or not ONNX: export it again (`edgeseg build ... --force`)"
    return "check the ONNX graph with `edgeseg export ... --parity`, or build for onnxruntime"


def save_fix(kind: str) -> str:
    """The fix for a failure to write the IR."""
    if kind in ("write", "corrupt"):
        return "check that the output folder is writable and has free space, then build again"
    return "build again with `--force`; if it repeats, build for onnxruntime"


def nncf_fix(kind: str, exc: BaseException) -> str:
    """The fix for an NNCF quantization failure."""
    name = type(exc).__name__
    if kind == "unsupported" or name in ("UnsupportedModelError", "UnsupportedBackendError", "ParameterNotSupportedError"):
        return ("NNCF cannot quantize an operation of this graph: keep the layer it names in float "
                "(--keep-float NAME), upgrade nncf, or build INT8 for onnxruntime")
    if name in ("UnsupportedDatasetError", "UnknownDatasetError"):
        return "check the calibration images (--calib) and --calib-size"
    if kind == "device":
        return "NNCF compiles on the CPU: check `edgeseg doctor` for a working OpenVINO CPU plugin"
    return "try another --calib-method or fewer --calib-size images; if it repeats, build INT8 for onnxruntime"


@contextmanager
def reported(problem: str, fix_for: Callable[[str, BaseException], str]) -> Iterator[None]:
    """Turn any failure of the OpenVINO/NNCF call inside into EdgesegError(problem: kept lines, fix_for(kind, exc)).

    EdgesegErrors raised inside (edgeseg's own checks, e.g. from a validation callback) and interrupts
    pass through unchanged."""
    try:
        yield
    except EdgesegError:
        raise
    except Exception as exc:
        reraise_interrupt(exc)
        kind = cause_kind("\n".join(meaningful_lines(exc)))
        raise EdgesegError(f"{problem}: {summary(exc)}", fix_for(kind, exc)) from exc
