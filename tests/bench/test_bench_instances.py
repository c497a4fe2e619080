"""`edgeseg bench` on instance engines (Mask R-CNN): detect at the frame's size as the inference stage,
render_instances as the postprocess, ONNX Runtime and torch engines side by side, the JSON and the
report, and a run mixing a semantic and an instance engine (timed side by side; never gated)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeseg.cli.main import main
from edgeseg.measure.bench import INSTANCE_ENGINES, _call, _Engine
from edgeseg.measure.results import STAGES, read_json
from edgeseg.runtime import load
from edgeseg.runtime.instances import Instances

pytestmark = pytest.mark.slow  # each test builds instance engines

SIZE = (96, 128)
FAST = ["--iterations", "2", "--rounds", "2", "--warmup", "1", "--no-progress"]
OPTIONS = {"backbone": "mobilenetv3_large", "min_size": SIZE[0], "max_size": SIZE[1], "rpn_pre_nms_top_n_test": 100,
           "rpn_post_nms_top_n_test": 50, "detections_per_img": 8}  # few detections: a quick mask head


def _build(out, backend: str, model: str = "maskrcnn"):
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine

    source = Source(model=model, random_weights=True, num_classes=4, model_options=OPTIONS) if model == "maskrcnn" \
        else Source(model=model, random_weights=True)
    build_engine(BuildRequest(source, precision="fp32", backend=backend, graph=Graph(input_size=SIZE),
                              destination=Destination(out=str(out))))
    return out


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    return {"ort": _build(root / "mr-ort", "onnxruntime"), "torch": _build(root / "mr-torch", "torch"),
            "semantic": _build(root / "fastscnn-ort", "onnxruntime", "fastscnn")}


def test_instance_engines_are_benched_side_by_side_and_reported(engines, tmp_path, capsys):
    out, report = tmp_path / "bench.json", tmp_path / "report.html"
    assert main(["bench", "--engine", str(engines["ort"]), "--engine", str(engines["torch"]), *FAST,
                 "--data", "synthetic-instances:3", "--throughput-seconds", "0.2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "mr-ort" in table and "mr-torch" in table and "[instances]: inference = session.detect" in table
    run = read_json(out)
    assert [(r.engine, r.backend) for r in run.results] == [("mr-ort", "onnxruntime"), ("mr-torch", "torch")]
    assert run.context[INSTANCE_ENGINES] == ["mr-ort", "mr-torch"]
    for r in run.results:
        assert r.iterations == 2 and len(r.samples_ms) == 2 and r.random_weights
        assert 0 < r.latency_ms["min"] <= r.latency_ms["p50"] <= r.latency_ms["max"] and r.fps > 0
        assert set(r.stages_ms) == {*STAGES, "total"} and r.app_fps > 0
        assert r.throughput["frames"] > 0 and r.throughput["requests"] == 1  # one request in flight
    assert main(["report", str(out), "--out", str(report)]) == 0
    assert "mr-ort (random weights) [instances]" in report.read_text()


def test_inference_is_detect_at_the_frame_size_and_postprocess_draws(engines, monkeypatch):
    """One timed call: the frame (160x240, not the engine's 96x128) is detected at its own size, and the
    objects at or above 0.5 are drawn; a semantic engine's stages are untouched."""
    frame = np.full((160, 240, 3), 120, np.uint8)
    encoded = [cv2.imencode(".png", frame)[1].tobytes()]
    asked, drawn = [], []

    def detect(frames, size=None):
        asked.append((frames.shape, size))
        masks = np.zeros((2, *size), bool)
        masks[:, 40:80, 40:80] = True
        return [Instances(np.array([[40, 40, 80, 80]] * 2, np.float32), np.array([1, 2]),
                          np.array([0.9, 0.2], np.float32), masks)]

    import edgeseg.runtime.instances as instances

    real = instances.render_instances
    monkeypatch.setattr(instances, "render_instances", lambda im, found, *a, **k: drawn.append(len(found)) or
                        real(im, found, *a, **k))
    with load(engines["ort"]) as session:
        monkeypatch.setattr(session, "detect", detect)
        engine = _Engine("mr-ort", str(engines["ort"]), session, np.zeros((256, 3), np.uint8), 0.0, None)
        ms = _call(engine, encoded, 0, stages=True)
    assert asked == [((1, *SIZE, 3), (160, 240))] and drawn == [1]  # the 0.9 object; not the 0.2 one
    assert set(ms) == set(STAGES) and all(v >= 0 for v in ms.values())


def test_a_mixed_run_is_timed_but_never_gated(engines, tmp_path, capsys):
    out = tmp_path / "mixed.json"
    assert main(["bench", "--engine", str(engines["semantic"]), "--engine", str(engines["ort"]), *FAST,
                 "--throughput-seconds", "0", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    run = read_json(out)
    assert [r.engine for r in run.results] == ["fastscnn-ort", "mr-ort"]
    assert run.context[INSTANCE_ENGINES] == ["mr-ort"]
    first_rows = {name: next(line for line in table.splitlines() if line.startswith(name + " "))
                  for name in ("fastscnn-ort", "mr-ort")}
    assert "[instances]" in first_rows["mr-ort"] and "[instances]" not in first_rows["fastscnn-ort"]
    assert all(r.latency_ms["p50"] > 0 and r.stages_ms for r in run.results)
    assert main(["report", str(out), "--out", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "| mr-ort (random weights) [instances] |" in md and "| fastscnn-ort (random weights) |" in md
    # a latency gate between the two kinds: refused before any timing, naming both
    assert main(["bench", "--engine", str(engines["ort"]), "--baseline-engine", str(engines["semantic"]),
                 *FAST]) == 2
    err = capsys.readouterr().err
    assert "instance engines (mr-ort) and semantic ones (fastscnn-ort [baseline]) do different work" in err
    assert "fix:" in err
    assert main(["bench", "--engine", str(engines["ort"]), "--baseline", str(out), *FAST]) == 2
    assert "do different work" in capsys.readouterr().err
    # one kind on each side is gated as before
    assert main(["bench", "--engine", str(engines["ort"]), "--baseline-engine", str(engines["ort"]), *FAST,
                 "--throughput-seconds", "0", "--fail-on-regression", "900%"]) == 0
    assert "gate: PASS" in capsys.readouterr().out


def test_openvino_instance_engine_throughput_keeps_one_request(tmp_path):
    """OpenVINO's asynchronous throughput queue ends each request with the semantic tail; an instance
    engine's throughput mode keeps one request in flight instead of failing inside that callback."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    engine = _build(tmp_path / "mr-ov", "openvino")
    out = tmp_path / "ov.json"
    assert main(["bench", "--engine", str(engine), *FAST, "--throughput-seconds", "0.2", "--json", str(out)]) == 0
    (r,) = read_json(out).results
    assert r.backend == "openvino" and r.throughput["requests"] == 1 and r.throughput["frames"] > 0
    assert json.loads(out.read_text())["context"][INSTANCE_ENGINES] == ["mr-ov"]
