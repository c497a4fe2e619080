"""What an INT8 graph needs from an x86 CPU, and whether this CPU has it (torch-free, build-free).

ONNX Runtime's x86 INT8 kernels (MLAS) multiply uint8 activations by int8 weights (U8S8) in one of
three ways, chosen at load time from the CPU it runs on:

- AVX2, and AVX-512 without VNNI (Haswell-Skylake, AMD Zen 1-3): `vpmaddubsw` multiplies the bytes
  in pairs and adds each pair into a *saturating* int16, then `vpmaddwd` with ones widens to int32
  (MLAS `QgemmU8X8KernelAvx2Common.h`, `ConvSymKernelAvx2`). u8 x s8 pairs reach 2*255*127 = 64770,
  past 32767: a pair clamps, and the layer's output is wrong (+6.35 became -5.70 on an AMD EPYC).
- AVX-512 VNNI and AVX-VNNI (Cascade Lake, Ice Lake, Alder Lake, Zen 4 on): `vpdpbusd(s)` adds four
  products straight into int32: exact.
- AMX (`amx_int8`, Sapphire Rapids on): `tdpbusd` into int32: exact; every AMX CPU also lists
  `avx512_vnni`.

So a graph whose int8 weights all lie in [-64, 64] (ONNX Runtime's `reduce_range`, "7-bit" weights)
computes exact int32 sums on every x86 CPU: 2*255*64 = 32640 <= 32767. Full-range weights are exact
only where VNNI is. ONNX Runtime's quantization guide says the same: reduce-range "is designed for
the U8S8 format on AVX2 and AVX512 (non-VNNI) machines to mitigate saturation issues" and "there is
no such issue on other CPU architectures (x64 with VNNI and ARM)".
"""

from __future__ import annotations

import platform

ANY_X86 = "x86 any"  # the manifest's `requires` for a graph with reduced-range weights
NEEDS_VNNI = "avx512_vnni or avx_vnni"  # ... and for full-range U8S8 weights
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
# The widest int8 weight whose u8 x s8 pair sums fit vpmaddubsw's int16: 2 * 255 * 64 = 32640 <= 32767.
SATURATION_FREE_WEIGHT = 64
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")


def requirement_for_weights(widest_weight: int) -> str:
    """The CPUs a U8S8 graph computes exactly on, from the largest |int8 weight| feeding a matrix product."""
    return ANY_X86 if widest_weight <= SATURATION_FREE_WEIGHT else NEEDS_VNNI


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags as Linux lists them (first processor); None where they cannot be read
    (not Linux, or a sandbox without /proc). Same source as `edgeseg.measure.envinfo.cpu_info`."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        return None
    return None


def is_x86(machine: str | None = None) -> bool:
    return (machine if machine is not None else platform.machine()).lower() in X86_MACHINES


def unmet(requires: str, flags: frozenset[str] | None, machine: str | None = None) -> str | None:
    """Why this CPU cannot run a graph that `requires` ("x86 any" or "flag or flag ..."): None when it
    can, or when the question does not arise (ARM and other non-x86 CPUs have no vpmaddubsw path).
    Raises ValueError when the flags are unknown (`flags` None) and the answer depends on them."""
    if requires == ANY_X86 or not is_x86(machine):
        return None
    wanted = [flag.strip() for flag in requires.split(" or ") if flag.strip()]
    if flags is None:
        raise ValueError("the CPU's flags cannot be read")
    if any(flag in flags for flag in wanted):
        return None
    return f"this CPU has none of {', '.join(wanted)}"
