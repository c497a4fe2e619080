"""Bench, eval and stream JSONs that are crafted, cut or not files, and baselines whose round medians are
zero, negative or NaN: each refused where it is read (or gated), naming the field, never a KeyError."""

from __future__ import annotations

import json
import os

import pytest
from bench_helpers import make_result, noisy_rounds, write_run

from edgeseg.cli.main import main
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.measure.gate import check_latency, read_eval
from edgeseg.measure.report_stream import read_stream
from edgeseg.measure.results import from_dict, read_json
from edgeseg.measure.stats import bootstrap_ratio


@pytest.fixture()
def good(tmp_path) -> dict:
    return json.loads(open(write_run(tmp_path / "good.json", [make_result("net", noisy_rounds(20.0, 1))])).read())


def _with(data: dict, edit) -> dict:
    copy = json.loads(json.dumps(data))
    edit(copy)
    return copy


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("results"), "results is None, not a non-empty list"),
    (lambda d: d.update(results=[]), "results is \\[\\], not a non-empty list"),
    (lambda d: d["results"][0].pop("round_medians_ms"), "lacks round_medians_ms"),
    (lambda d: d["results"][0].pop("latency_ms"), "lacks latency_ms"),
    (lambda d: d["results"][0]["latency_ms"].pop("p50"), "latency statistics with mean, p50"),
    (lambda d: d["results"][0].update(engine=3), "engine is 3, not a string"),
    (lambda d: d["results"][0].update(batch="1"), "batch is '1', not a whole number"),
    (lambda d: d["results"][0].update(round_medians_ms="fast"), "round_medians_ms is 'fast', not a non-empty list"),
    (lambda d: d["results"][0].update(round_sizes=[1, 2]), "a split of its 180 samples_ms"),
    (lambda d: d["results"][0]["stages_ms"].pop("total"), "stages_ms.total is None, not an object"),
    (lambda d: d["results"][0]["throughput"].pop("requests"), "throughput with fps and requests"),
    (lambda d: d["results"][0].update(role="boss"), "role is 'boss', not one of engine"),
    (lambda d: d["results"][0]["load_options"].update(cache_dir="/tmp"), "unknown: cache_dir"),
    (lambda d: d["results"][0]["load_options"].update(threads=-1), "threads is -1"),
    (lambda d: d.update(environment={"cpu": "fast"}), "environment.cpu is 'fast', not an object"),
    (lambda d: d["environment"]["cpu"].update(flags="avx2"), "environment.cpu.flags is 'avx2', not a list"),
    (lambda d: d["environment"].update(libraries=["onnxruntime"]), "environment.libraries is"),
    (lambda d: d.update(results=["net"]), "results\\[0\\] is 'net', not an object"),
])
def test_a_crafted_bench_json_names_the_field(good, edit, message):
    with pytest.raises(EdgesegError, match=message) as info:
        from_dict(_with(good, edit), "crafted.json")
    assert "edgeseg bench --json FILE" in info.value.fix


@pytest.mark.parametrize("median", [0.0, -3.0, float("nan"), float("inf")])
def test_round_medians_that_are_not_latencies_are_refused_in_a_file(good, tmp_path, median, capsys):
    bad = _with(good, lambda d: d["results"][0]["round_medians_ms"].__setitem__(2, median))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))  # json writes NaN/Infinity, and Python reads them back
    with pytest.raises(EdgesegError, match=r"round_medians_ms\[2\] is .*not a positive, finite number"):
        read_json(path)
    good_path = tmp_path / "good.json"
    assert main(["compare", str(good_path), str(path), "--fail-on-regression", "10%"]) == 2
    assert "round_medians_ms[2]" in capsys.readouterr().err


@pytest.mark.parametrize("median", [0.0, -1.0, float("nan")])
def test_the_gate_refuses_such_medians_in_a_run_measured_now(median):
    base = make_result("net", noisy_rounds(20.0, 1))
    new = make_result("net", noisy_rounds(20.0, 2))
    new.round_medians_ms[0] = median  # an in-memory run never goes through from_dict
    with pytest.raises(BadInputError, match="round medians of net \\(new run\\).*round 1 is") as info:
        check_latency(new, base, 0.10)
    assert "re-run `edgeseg bench" in info.value.fix
    base.round_medians_ms = [0.0] * len(base.round_medians_ms)
    with pytest.raises(BadInputError, match="baseline net"):
        check_latency(make_result("net", noisy_rounds(20.0, 2)), base, 0.10)


def test_bootstrap_refuses_non_latencies_itself():
    with pytest.raises(BadInputError, match="baseline's round medians"):
        bootstrap_ratio([1.0, 2.0], [0.0, 1.0])
    with pytest.raises(BadInputError, match="are empty"):
        bootstrap_ratio([], [1.0])


def _not_files(tmp_path):
    (tmp_path / "dir.json").mkdir()
    os.mkfifo(tmp_path / "fifo.json")
    return [(tmp_path / "dir.json", "is a directory, not a file"), (tmp_path / "fifo.json", "is a FIFO"),
            ("/dev/null", "is a character device")]


def test_json_paths_that_are_not_files_say_what_they_are(tmp_path):
    for path, message in _not_files(tmp_path):  # a FIFO would block a plain read: these return at once
        for reader in (read_json, read_eval, read_stream):
            with pytest.raises(EdgesegError, match=message):
                reader(path)


@pytest.mark.parametrize("content,message", [
    ({"miou": float("nan")}, "miou is nan, not an mIoU between 0 and 1"),
    ({"miou": "0.5"}, "miou is '0.5'"),
    ({"miou": 1.5}, "miou is 1.5"),
    ({"miou": 0.5, "miou_drop_points": "big"}, "miou_drop_points is 'big'"),
    ({"miou": 0.5, "per_class_iou": {"road": -1}}, "per_class_iou.road is -1"),
    ({"miou": 0.5, "reference": 3}, "reference is 3"),
])
def test_a_crafted_eval_json_is_refused(tmp_path, content, message):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(content))
    with pytest.raises(EdgesegError, match=message):
        read_eval(path)


def test_a_nan_miou_cannot_pass_the_floor(tmp_path, good, capsys):
    run = tmp_path / "good.json"
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"miou": float("nan"), "per_class_iou": {}}))
    assert main(["compare", str(run), str(run), "--eval", str(ev), "--min-miou", "50"]) == 2
    assert "miou is nan" in capsys.readouterr().err


def _stream_stats() -> dict:
    from edgeseg.runtime.stats import EngineOnly, LatencySummary, StreamStats

    summary = LatencySummary(count=10, mean_ms=5.0, p50_ms=5.0, p95_ms=7.0, p99_ms=8.0)
    return StreamStats(source={"kind": "video", "name": "clip.mp4"},
                       engine={"name": "net", "precision_requested": "fp32", "precision_as_run": "fp32"},
                       settings={}, frames={"captured": 10, "processed": 10, "dropped": 0, "corrupt": 0,
                                            "reconnects": 0}, wall_s=1.0, fps=10.0,
                       stages={s: summary for s in ("capture", "preprocess", "infer", "render", "sink")},
                       e2e=summary, stopped_by="end", engine_only=EngineOnly(50.0, 20.0, 20.0, 10, 50.0, 50.0),
                       ratio=0.2).to_dict()


def test_real_stream_stats_are_read(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_stream_stats()))
    assert read_stream(path)["fps"] == 10.0


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("engine"), "engine is None, not an object"),
    (lambda d: d["engine"].pop("precision_as_run"), "engine.precision_as_run is None, not a string"),
    (lambda d: d["frames"].update(processed=-1), "frames.processed is -1"),
    (lambda d: d.update(fps=float("nan")), "fps is nan"),
    (lambda d: d["stages"].pop("render"), "stages.render is None"),
    (lambda d: d["e2e"].update(p95_ms="slow"), "e2e.p95_ms is 'slow'"),
    (lambda d: d["engine_only"].pop("fps"), "engine_only.fps is None"),
    (lambda d: d.update(source="camera"), "source is 'camera', not an object"),
])
def test_crafted_stream_stats_name_the_field(tmp_path, edit, message):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_with(_stream_stats(), edit)))
    with pytest.raises(EdgesegError, match=message) as info:
        read_stream(path)
    assert "edgeseg stream" in info.value.fix


def test_a_cut_file_is_not_json(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"kind": "edgeseg-bench", "schema_')
    with pytest.raises(EdgesegError, match="is not JSON"):
        read_json(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EdgesegError, match="not text"):
        read_json(path)
