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

OpenVINO's CPU plugin has the same kernels: its oneDNN (openvinotoolkit/oneDNN,
`jit_uni_x8s8s32x_conv_kernel.cpp`, `jit_avx512_core_x8s8s32x_conv_kernel.cpp`) computes dense u8 x s8
convolutions with `vpmaddubsw` where `avx2_vnni`/`avx512_core_vnni` are missing, and halves the weights
(`scale_adjust` 0.5) only for *signed* inputs; depthwise convolutions widen both operands to 16 bits
first (`vpmaddwd`) and are exact. So an OpenVINO INT8 IR needs the same [-64, 64] bound on its dense
convolution and MatMul weights: NNCF's `overflow_fix=ENABLE` (its default, FIRST_LAYER, bounds only
the first convolution). Both backends record `requires` in the manifest, and `check_int8_cpu` below
refuses an engine at load on a CPU where it would saturate.
"""

from __future__ import annotations

import os
import platform
import shlex
import warnings
from pathlib import Path

from edgeseg.errors import EdgesegError

ANY_X86 = "x86 any"  # the manifest's `requires` for a graph with reduced-range weights
NEEDS_VNNI = "avx512_vnni or avx_vnni"  # ... and for full-range U8S8 weights
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
# The widest int8 weight whose u8 x s8 pair sums fit vpmaddubsw's int16: 2 * 255 * 64 = 32640 <= 32767.
SATURATION_FREE_WEIGHT = 64
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
# Set to 1 to load an INT8 engine whose weights may saturate on this CPU anyway, with a warning (to
# measure what saturation costs, say); without it such an engine is refused at load.
ALLOW_SATURATION_ENV = "EDGESEG_ALLOW_INT8_SATURATION"
VNNI_ONLY_FLAG = "--int8-vnni-only"  # `edgeseg build`'s opt-in to full-range weights (BackendOptions.int8_vnni_only)
REDUCED_RANGE = "reduced-range (7-bit)"  # the manifest's backend.options["int8_weights"]
FULL_RANGE = "full-range (8-bit)"


class Int8CpuWarning(UserWarning):
    """An INT8 engine loaded on a CPU where it may compute wrong values, or where that cannot be told."""


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


def int8_requirement(manifest) -> str | None:
    """What the engine's INT8 graph needs from an x86 CPU; None for float engines.

    The ONNX Runtime and OpenVINO builds record it in backend.options["requires"]. Engines built before
    they did hold full-range weights (ORT's U8S8 graphs, NNCF's default FIRST_LAYER overflow fix), which
    only CPUs with VNNI add up exactly: they need VNNI."""
    if manifest.precision.get("as_run") != "int8":
        return None
    return manifest.backend.get("options", {}).get("requires", NEEDS_VNNI)


def check_int8_cpu(manifest, root: Path, kernels: str) -> None:
    """Refuse an INT8 engine whose weights saturate on this CPU (a warning with ALLOW_SATURATION_ENV=1).

    `kernels` names the library's pairwise u8 x s8 kernels for the message ("ONNX Runtime's U8S8
    kernels"): on x86 CPUs without VNNI they add products in pairs into a saturating int16
    (`vpmaddubsw`); full-range weights overflow it and the engine returns wrong labels without any error.
    """
    requires = int8_requirement(manifest)
    if requires is None:
        return
    try:
        why = unmet(requires, cpu_flags())
    except ValueError:
        warnings.warn(f"{root}: its INT8 graph needs a CPU with {requires}, and this CPU's flags cannot be read "
                      f"(no /proc/cpuinfo); on a CPU without VNNI its outputs would be wrong. "
                      f"An engine built without {VNNI_ONLY_FLAG} runs on any x86 CPU", Int8CpuWarning, stacklevel=4)
        return
    if why is None:
        return
    recorded = "requires" in manifest.backend.get("options", {})
    weights = "full-range int8 weights" if recorded else "full-range int8 weights (built before edgeseg recorded this)"
    problem = (f"{root} is an INT8 engine with {weights}: it needs a CPU with {requires}, and {why}. Without VNNI, "
               f"{kernels} add products in pairs into a saturating int16 (vpmaddubsw), and this "
               "engine's pairs overflow it: it may return wrong labels without any error")
    fix = (f"rebuild it with 7-bit weights, which run on every x86 CPU (the default): `{rebuild_command(manifest)}`; "
           f"or set {ALLOW_SATURATION_ENV}=1 to run it anyway")
    if os.environ.get(ALLOW_SATURATION_ENV) == "1":
        warnings.warn(f"{problem} ({ALLOW_SATURATION_ENV}=1: loading it anyway). Fix: {fix}", Int8CpuWarning,
                      stacklevel=4)
        return
    raise EdgesegError(problem, fix)


def refuse_vnni_only_build_here() -> None:
    """A --int8-vnni-only build on a CPU without VNNI would calibrate, then run its speed guard and parity
    checks on saturated sums and refuse its own engine at the end: say so before the work, unless
    ALLOW_SATURATION_ENV=1 asks to build (and measure) it anyway."""
    try:
        why = unmet(NEEDS_VNNI, cpu_flags())
    except ValueError:
        return  # flags unknown: the engine's own load check warns
    if why is None or os.environ.get(ALLOW_SATURATION_ENV) == "1":
        return
    raise EdgesegError(f"{VNNI_ONLY_FLAG} builds an INT8 engine that only CPUs with {NEEDS_VNNI} compute exactly, "
                       f"and {why}: its speed guard and checks here would measure saturated sums",
                       f"build it on a CPU with VNNI (the vehicle's, or one like it); or drop {VNNI_ONLY_FLAG} for "
                       f"7-bit weights that run on every x86 CPU; or set {ALLOW_SATURATION_ENV}=1 to build and "
                       "measure it here anyway")


def rebuild_command(manifest) -> str:
    """The engine's recorded `edgeseg build` command without the VNNI-only opt-in, with --force."""
    try:
        words = shlex.split(manifest.command)
    except ValueError:
        words = []
    if "build" not in words:
        backend = manifest.backend.get("name", "onnxruntime")
        return f"edgeseg build --checkpoint CKPT --backend {backend} --precision int8 --calib SPEC --force"
    words = ["edgeseg"] + [w for w in words[words.index("build"):] if w != VNNI_ONLY_FLAG]
    return shlex.join(words + ([] if "--force" in words else ["--force"]))
