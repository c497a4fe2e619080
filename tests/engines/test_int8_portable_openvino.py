"""OpenVINO INT8 that is correct on every x86 CPU, as for ONNX Runtime (test_int8_portable.py).

OpenVINO's CPU plugin computes dense u8 x s8 convolutions with oneDNN's `vpmaddubsw` pairs where VNNI is
missing (edgeseg.runtime.cpu), and NNCF's default overflow fix (FIRST_LAYER) bounds only the first
convolution's weights. So edgeseg asks NNCF for ENABLE (every dense weight within [-64, 64]) unless
--int8-vnni-only, reads the widest dense weight back from the IR it wrote, records it in the manifest,
and the session refuses a full-range IR on a CPU without VNNI.
"""

from __future__ import annotations

import dataclasses
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from fakedata import write_camvid

from edgeseg import backends
from edgeseg.backends.openvino import session as ov_session
from edgeseg.build.orchestrator import BackendOptions, BuildRequest, Destination, Int8, Source, build_engine
from edgeseg.errors import EdgesegError
from edgeseg.runtime import cpu

AVX2_ONLY = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"})
VNNI = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni"}
needs_openvino = pytest.mark.skipif(not backends.availability("openvino").ok, reason="OpenVINO cannot run here")


def _cpu(monkeypatch, flags, machine="x86_64"):
    monkeypatch.setattr(cpu, "cpu_flags", lambda path="/proc/cpuinfo": flags)
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.delenv(cpu.ALLOW_SATURATION_ENV, raising=False)


def _manifest(**options):
    """What check_int8_cpu reads of a manifest: an OpenVINO INT8 IR with these backend options."""
    return SimpleNamespace(precision={"requested": "int8", "as_run": "int8"}, command="",
                           backend={"name": "openvino", "options": {"device": "CPU", **options}})


# -- the load-time check, on manifests alone (fast) ------------------------------------------------------------
@pytest.mark.parametrize("options", [{"requires": cpu.NEEDS_VNNI, "int8_weights": cpu.FULL_RANGE}, {}],
                         ids=["full-range", "built-before-the-record"])
def test_a_full_range_openvino_ir_is_refused_on_a_cpu_without_vnni(monkeypatch, tmp_path, options):
    _cpu(monkeypatch, AVX2_ONLY)
    with pytest.raises(EdgesegError, match="avx512_vnni or avx_vnni") as err:
        ov_session.check_int8_cpu(_manifest(**options), tmp_path, "CPU")
    assert "OpenVINO's CPU plugin" in err.value.problem and "vpmaddubsw" in err.value.problem
    assert "--backend openvino" in err.value.fix and cpu.ALLOW_SATURATION_ENV in err.value.fix


def test_the_check_follows_the_device_and_the_cpu(monkeypatch, tmp_path):
    full = _manifest(requires=cpu.NEEDS_VNNI)
    _cpu(monkeypatch, AVX2_ONLY)
    for device in ("GPU", "GPU.1", "NPU"):  # no vpmaddubsw there
        ov_session.check_int8_cpu(full, tmp_path, device)
    ov_session.check_int8_cpu(_manifest(requires=cpu.ANY_X86), tmp_path, "CPU")  # the default build loads anywhere
    monkeypatch.setenv(cpu.ALLOW_SATURATION_ENV, "1")
    with pytest.warns(cpu.Int8CpuWarning, match="loading it anyway"):
        ov_session.check_int8_cpu(full, tmp_path, "CPU")
    _cpu(monkeypatch, VNNI)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cpu.Int8CpuWarning)
        ov_session.check_int8_cpu(full, tmp_path, "CPU")


# -- real builds (slow) --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ov_engines(int8_checkpoint, tmp_path_factory):
    """The OpenVINO INT8 engines `edgeseg build --precision int8` makes by default and with --int8-vnni-only."""
    if not backends.availability("openvino").ok:
        pytest.skip("OpenVINO cannot run here")
    root = tmp_path_factory.mktemp("portable-ov")
    data = write_camvid(root / "camvid")

    def engine(name: str, vnni_only: bool):
        return build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="openvino", precision="int8",
                                         int8=Int8(calib=f"camvid:{data}:train", calib_size=2, speed_guard=False),
                                         backend_options=BackendOptions(int8_vnni_only=vnni_only),
                                         destination=Destination(out=str(root / name))))

    return engine("default", False), engine("vnni-only", True)


def _widest_in_ir(engine) -> int:
    import openvino as ov

    from edgeseg.backends.openvino.build import widest_dense_weight

    return widest_dense_weight(ov.Core().read_model(str(engine.path / ov_session.XML)))


@pytest.mark.slow  # two NNCF INT8 builds (20-40 s)
@needs_openvino
def test_default_openvino_int8_ir_cannot_saturate_and_says_so(ov_engines):
    default, vnni_only = ov_engines
    options = default.manifest.backend["options"]
    assert options["quantization"]["overflow_fix"] == "enable"
    assert options["int8_weights"] == cpu.REDUCED_RANGE and options["requires"] == cpu.ANY_X86
    assert 0 < _widest_in_ir(default) <= cpu.SATURATION_FREE_WEIGHT  # read back from the published IR
    assert "runs on: x86 any" in default.manifest.precision["note"]
    options = vnni_only.manifest.backend["options"]
    assert options["quantization"]["overflow_fix"] == "disable"
    assert options["int8_weights"] == cpu.FULL_RANGE and options["requires"] == cpu.NEEDS_VNNI
    assert _widest_in_ir(vnni_only) == 127


@pytest.mark.slow  # two NNCF INT8 builds (20-40 s), shared with the test above
@needs_openvino
def test_openvino_sessions_refuse_only_what_would_saturate(ov_engines, monkeypatch):
    from edgeseg.runtime import load

    default, vnni_only = ov_engines
    _cpu(monkeypatch, AVX2_ONLY)
    with pytest.raises(EdgesegError, match="avx512_vnni or avx_vnni") as err:
        load(vnni_only.path)
    assert "--int8-vnni-only" not in err.value.fix and "--force" in err.value.fix
    with warnings.catch_warnings():
        warnings.simplefilter("error", cpu.Int8CpuWarning)
        with load(default.path) as session:
            assert session.infer(np.zeros((1, *default.manifest.input.size, 3), np.uint8)).ndim == 3
    _cpu(monkeypatch, VNNI)
    with load(vnni_only.path) as session:
        assert session.precision_as_run == "int8"
    legacy = dataclasses.replace(vnni_only.manifest, backend={
        **vnni_only.manifest.backend, "options": {k: v for k, v in vnni_only.manifest.backend["options"].items()
                                                  if k not in ("requires", "int8_weights")}})
    _cpu(monkeypatch, AVX2_ONLY)
    with pytest.raises(EdgesegError, match="built before edgeseg recorded this"):
        ov_session.OpenVinoSession(legacy, vnni_only.path, ov_session.LoadOptions())
