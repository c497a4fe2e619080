"""INT8 that is correct on every x86 CPU: ONNX Runtime graphs get reduced-range weights by default,
the manifest says what the graph needs from the CPU, and the session refuses an engine whose weights
would saturate on the CPU it finds (see edgeseg.runtime.cpu for the kernels behind it).

These hold on any runner: the weight ranges are read from the graph, and the load-time check reads
the CPU flags through `edgeseg.runtime.cpu.cpu_flags`, which the tests replace.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx
import pytest
from fakedata import write_camvid
from onnx import numpy_helper

from edgeseg.backends.onnxruntime.session import (
    ALLOW_SATURATION_ENV,
    Int8CpuWarning,
    OrtSession,
    int8_requirement,
    rebuild_command,
)
from edgeseg.build.calibration import open_calibration
from edgeseg.build.export import ExportOptions, export_onnx
from edgeseg.build.orchestrator import BuildRequest, Destination, Int8, Source, build_engine
from edgeseg.build.quantize import qdq_from_onnx
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.models import build
from edgeseg.runtime import cpu

SIZE = (64, 96)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
AVX2_ONLY = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"})  # an AMD EPYC (Zen 2) or Haswell
AVX512_NO_VNNI = AVX2_ONLY | {"avx512f", "avx512bw", "avx512vl"}  # Skylake-SP: vpmaddubsw too
VNNI = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni"}
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _matrix_weights(path) -> dict[str, np.ndarray]:
    """Every int8 weight a Conv/ConvTranspose/Gemm/MatMul reads, by initializer name: read here from
    the graph, independently of the quantizer's own bookkeeping."""
    graph = onnx.load(str(path)).graph
    init = {t.name: t for t in graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    found = {}
    for node in graph.node:
        if node.op_type in WEIGHTED:
            for name in node.input:
                source = dequantized.get(name)
                if source in init and init[source].data_type == onnx.TensorProto.INT8:
                    found[source] = numpy_helper.to_array(init[source])
    return found


def test_reduced_range_pairs_fit_int16_and_match_onnxruntime():
    """The bound and ORT's reduced int8 range agree: an ORT release that widened it would fail here."""
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    assert 2 * 255 * cpu.SATURATION_FREE_WEIGHT <= np.iinfo(np.int16).max < 2 * 255 * 127
    qmin, qmax = get_qmin_qmax_for_qType(onnx.TensorProto.INT8, reduce_range=True, symmetric=True)
    assert (int(qmin), int(qmax)) == (-cpu.SATURATION_FREE_WEIGHT, cpu.SATURATION_FREE_WEIGHT)


@pytest.fixture(scope="module")
def default_engine(int8_checkpoint, tmp_path_factory):
    """The ONNX Runtime INT8 engine `edgeseg build --precision int8` makes by default."""
    root = tmp_path_factory.mktemp("portable")
    data = write_camvid(root / "camvid")
    return build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="onnxruntime", precision="int8",
                                     int8=Int8(calib=f"camvid:{data}:train", calib_size=2, speed_guard=False),
                                     destination=Destination(out=str(root / "int8"))))


def test_default_ort_int8_graph_cannot_saturate_and_says_so(default_engine):
    weights = _matrix_weights(default_engine.path / default_engine.manifest.backend["engine"])
    assert weights, "no quantized matrix weights found"
    widest = {name: int(np.abs(w.astype(np.int32)).max()) for name, w in weights.items()}
    assert max(widest.values()) <= cpu.SATURATION_FREE_WEIGHT, {k: v for k, v in widest.items() if v > 64}
    options = default_engine.manifest.backend["options"]
    assert options["int8_weights"] == "reduced-range (7-bit)" and options["requires"] == cpu.ANY_X86
    assert options["quantization"]["folded_input"]["first_conv_on_2x2_blocks"]  # the rearranged conv included
    assert "reduced-range (7-bit) weights" in default_engine.manifest.precision["note"]


def test_full_range_is_an_explicit_opt_in_and_s8_stays_full_range(camvid_root, tmp_path):
    torch_model = build("fastscnn", 11).eval()
    export_onnx(torch_model, tmp_path / "m.onnx", 11, MEAN, STD, ExportOptions(SIZE, host_tail=True))
    calib = open_calibration(f"camvid:{camvid_root}:train", SIZE, count=2, progress=False)
    common = {"calib": calib, "method": "minmax", "cache_root": tmp_path / "cache"}
    full = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "full.onnx", activations="u8", reduce_range=False, **common)
    assert not full.reduce_range and full.widest_weight == 127 and full.weights == "full-range (8-bit)"
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in _matrix_weights(tmp_path / "full.onnx").values()) == 127
    assert cpu.requirement_for_weights(full.widest_weight) == cpu.NEEDS_VNNI
    s8 = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "s8.onnx", activations="s8", **common)
    assert not s8.reduce_range and s8.widest_weight == 127  # TensorRT's symmetric graph keeps full range
    with pytest.raises(BadInputError, match="not s8 graphs"):
        qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "bad.onnx", activations="s8", reduce_range=True, **common)


def _as_full_range(manifest, recorded: bool = True):
    """The manifest of a full-range engine: recorded as needing VNNI, or (recorded=False) built before
    edgeseg recorded anything, which the session must treat the same way."""
    options = {k: v for k, v in manifest.backend["options"].items() if k not in ("int8_weights", "requires")}
    if recorded:
        options.update(int8_weights="full-range (8-bit)", requires=cpu.NEEDS_VNNI)
    return dataclasses.replace(manifest, backend={**manifest.backend, "options": options},
                               command="/usr/bin/edgeseg build --checkpoint c.pt --precision int8 --int8-vnni-only")


def _cpu(monkeypatch, flags, machine="x86_64"):
    monkeypatch.setattr(cpu, "cpu_flags", lambda path="/proc/cpuinfo": flags)
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.delenv(ALLOW_SATURATION_ENV, raising=False)


@pytest.mark.parametrize("recorded", [True, False])
@pytest.mark.parametrize("flags", [AVX2_ONLY, AVX512_NO_VNNI])
def test_full_range_engine_is_refused_without_vnni(default_engine, monkeypatch, recorded, flags):
    _cpu(monkeypatch, flags)
    manifest = _as_full_range(default_engine.manifest, recorded)
    assert int8_requirement(manifest) == cpu.NEEDS_VNNI
    with pytest.raises(EdgesegError, match="avx512_vnni or avx_vnni") as err:
        OrtSession(manifest, default_engine.path)
    assert "vpmaddubsw" in err.value.problem and ("built before" in err.value.problem) != recorded
    assert "edgeseg build --checkpoint c.pt --precision int8 --force" in err.value.fix
    assert ALLOW_SATURATION_ENV in err.value.fix


def test_full_range_engine_runs_anyway_with_a_warning_when_allowed(default_engine, monkeypatch):
    _cpu(monkeypatch, AVX2_ONLY)
    monkeypatch.setenv(ALLOW_SATURATION_ENV, "1")
    with pytest.warns(Int8CpuWarning, match="loading it anyway"):
        session = OrtSession(_as_full_range(default_engine.manifest), default_engine.path)
    assert session.infer(np.zeros((1, *SIZE, 3), np.uint8)).shape == (1, *SIZE)


@pytest.mark.parametrize("flags,machine", [(VNNI, "x86_64"), (AVX2_ONLY | {"avx_vnni"}, "x86_64"),
                                           (frozenset({"fp", "asimd", "asimddp"}), "aarch64")])
def test_full_range_engine_loads_where_it_is_exact(default_engine, monkeypatch, flags, machine):
    _cpu(monkeypatch, flags, machine)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Int8CpuWarning)
        OrtSession(_as_full_range(default_engine.manifest), default_engine.path)


def test_default_engine_loads_on_an_avx2_only_cpu(default_engine, monkeypatch):
    _cpu(monkeypatch, AVX2_ONLY)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Int8CpuWarning)
        session = OrtSession(default_engine.manifest, default_engine.path)
    assert session.infer(np.zeros((1, *SIZE, 3), np.uint8)).shape == (1, *SIZE)


def test_unreadable_cpu_flags_warn_for_a_full_range_engine(default_engine, monkeypatch):
    _cpu(monkeypatch, None)
    with pytest.warns(Int8CpuWarning, match="cannot be read"):
        OrtSession(_as_full_range(default_engine.manifest), default_engine.path)


def test_float_engines_are_not_checked(default_engine, monkeypatch):
    manifest = dataclasses.replace(_as_full_range(default_engine.manifest, recorded=False),
                                   precision={"requested": "fp32", "as_run": "fp32", "note": ""})
    assert int8_requirement(manifest) is None


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu.cpu_flags(str(info)) == frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
    assert cpu.cpu_flags(str(tmp_path / "missing")) is None
    assert cpu.unmet(cpu.NEEDS_VNNI, frozenset({"avx2"}), "x86_64") == "this CPU has none of avx512_vnni, avx_vnni"
    assert cpu.unmet(cpu.ANY_X86, frozenset({"avx2"}), "x86_64") is None


def test_rebuild_command_drops_the_opt_in(default_engine):
    manifest = dataclasses.replace(default_engine.manifest, command="python -m edgeseg build --checkpoint 'a b.pt' "
                                   "--precision int8 --int8-vnni-only --force")
    assert rebuild_command(manifest) == "edgeseg build --checkpoint 'a b.pt' --precision int8 --force"
    assert rebuild_command(dataclasses.replace(manifest, command="")).startswith("edgeseg build --checkpoint CKPT")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_vnni_only_build_on_a_cpu_without_vnni_stops_before_the_work(monkeypatch, tmp_path, capsys, backend):
    from edgeseg.cli.main import main

    _cpu(monkeypatch, AVX2_ONLY)
    argv = ["build", "--model", "fastscnn", "--random-weights", "--precision", "int8", "--backend", backend,
            "--int8-vnni-only", "--calib", "synthetic:2", "--input-size", "64x96", "--out", str(tmp_path / "e")]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "--int8-vnni-only builds an INT8 engine that only CPUs with avx512_vnni or avx_vnni" in err
    assert "drop --int8-vnni-only" in err and ALLOW_SATURATION_ENV in err
    assert not (tmp_path / "e").exists() and "calibrat" not in err.lower()
