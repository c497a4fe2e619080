"""`edgeseg bench` end to end on a tiny engine: stages, throughput, environment, the torch baseline,
re-timed baselines for the gate; and the bench/report/gate path stays torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeseg.cli.main import main
from edgeseg.measure.results import STAGES, read_json

FAST = ["--data", "synthetic:3", "--iterations", "6", "--rounds", "3", "--warmup", "1", "--no-progress"]


def test_bench_stages_throughput_environment(tiny_engine, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_engine), "--engine", str(tiny_engine), *FAST, "--throughput-seconds", "0.2",
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "per stage, mean ms" in table and "app FPS" in table and "tput FPS" in table
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2 and data["kind"] == "edgeseg-bench"
    assert set(data["environment"]) >= {"cpu", "libraries", "gpu", "power", "threads_requested"}
    assert data["environment"]["libraries"]["onnxruntime"]
    run = read_json(out)
    assert [r.engine for r in run.results] == ["tiny-ort", "tiny-ort#2"]
    for r in run.results:
        assert set(r.stages_ms) == {*STAGES, "total"} and r.app_fps and r.fps >= r.app_fps
        assert r.iterations == 6 and len(r.round_medians_ms) == 3 and sum(r.round_sizes) == 6
        assert r.throughput["frames"] > 0 and r.throughput["requests"] >= 1
        assert r.artifact_bytes > 0 and r.load_rss_mb is not None and r.files_digest
        assert r.latency_ms["p50"] <= r.latency_ms["p99"] and r.latency_ms["std"] >= 0


@pytest.mark.slow  # times the torch baseline (20 s)
def test_bench_baseline_torch(tiny_engine, capsys):
    assert main(["bench", "--engine", str(tiny_engine), *FAST, "--throughput-seconds", "0", "--no-stages",
                 "--baseline-torch"]) == 0
    table = capsys.readouterr().out
    assert "tiny-ort [torch eager]" in table and "torch" in table and "1.00x" in table


def test_bench_against_baseline_file_retimes_it(tiny_engine, tmp_path, capsys):
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    assert main(["bench", "--engine", str(tiny_engine), *FAST, "--throughput-seconds", "0", "--json", str(base)]) == 0
    summary = tmp_path / "s.md"
    # a 900% threshold: this checks the path (re-timed baseline, summary, exit 0), not the speed
    assert main(["bench", "--engine", str(tiny_engine), *FAST, "--throughput-seconds", "0", "--baseline", str(base),
                 "--fail-on-regression", "900%", "--summary", str(summary), "--json", str(new)]) == 0
    out = capsys.readouterr().out
    assert "baseline re-timed in this run" in out and "gate: PASS" in out
    roles = [r.role for r in read_json(new).results]
    assert roles == ["baseline", "engine"]
    assert "| `tiny-ort` | `tiny-ort [baseline]` |" in summary.read_text()
    assert main(["compare", str(new), str(base), "--fail-on-regression", "900%"]) == 0
    assert main(["bench", "--engine", str(tiny_engine), *FAST, "--throughput-seconds", "0", "--baseline", str(base),
                 "--no-rerun-baseline", "--fail-on-regression", "900%"]) == 0
    assert "compared across runs" in capsys.readouterr().out


def test_bench_baseline_engine_in_the_same_run(tiny_engine, capsys):
    assert main(["bench", "--engine", str(tiny_engine), "--baseline-engine", str(tiny_engine), *FAST,
                 "--throughput-seconds", "0", "--fail-on-regression", "900%"]) == 0
    out = capsys.readouterr().out
    assert "tiny-ort [baseline]" in out and "gate tiny-ort: new/base" in out


def test_openvino_throughput_mode_uses_async_requests(tiny_openvino, tmp_path):
    out = tmp_path / "ov.json"
    assert main(["bench", "--engine", str(tiny_openvino), *FAST, "--throughput-seconds", "0.3", "--no-stages",
                 "--json", str(out)]) == 0
    (r,) = read_json(out).results
    assert r.backend == "openvino" and r.throughput["frames"] > 0 and r.throughput["requests"] >= 1
    assert r.stages_ms == {} and r.app_fps is None


def test_bench_needs_an_engine(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no engines/ here: nothing to default to
    assert main(["bench", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "none under engines/" in err and "edgeseg build --model deeplabv3plus --precision int8" in err


def test_bench_defaults_to_the_newest_engine(tiny_engine, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copytree(tiny_engine, tmp_path / "engines" / "tiny-ort")
    monkeypatch.chdir(tmp_path)
    assert main(["bench", *FAST, "--throughput-seconds", "0", "--no-stages"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("engine: engines/tiny-ort (newest under engines/, built ") and "tiny-ort" in out


def test_bench_report_gate_import_no_torch():
    code = ("import sys, edgeseg.measure.bench, edgeseg.measure.gate, edgeseg.measure.report, edgeseg.cli.report, "
            "edgeseg.measure.envinfo, edgeseg.measure.svgplot; edgeseg.measure.envinfo.fingerprint(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
