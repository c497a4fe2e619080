"""Instance engines (Mask R-CNN) built by `edgeseg build`: the manifest says so, ONNX Runtime, OpenVINO and
the torch reference return Instances that match the PyTorch network (parity recorded), INT8 covers the
backbone and the pyramid only, the AP budget measures and falls back, `edgeseg eval --engine` scores AP
and its drop, and semantic options or data are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detection_weights import seeded_state_dict
from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Int8, Source, build_engine
from edgeseg.cli.main import main
from edgeseg.data.instances import parse_instance_spec
from edgeseg.data.instances.synthetic import SYNTHETIC_INSTANCE_INFO
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.manifest import read_manifest
from edgeseg.measure.instance_eval import torch_detector
from edgeseg.models import build
from edgeseg.runtime import load
from edgeseg.runtime.frames import resize_to_input
from edgeseg.runtime.instances import Instances
from edgeseg.train.checkpoint import save

SIZE = (120, 160)
DATA = "synthetic-instances:6:val"


def confident_network():
    """A seeded edge Mask R-CNN whose classifier favours 'car' strongly: detections that score above the
    0.5 the parity is held on, as a trained network's do, without training one in a test."""
    model = build("maskrcnn", 4, backbone="mobilenetv3_large", min_size=min(SIZE), max_size=max(SIZE),
                  rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=300, detections_per_img=30)
    state = seeded_state_dict({k: list(v.shape) for k, v in model.state_dict().items()})
    state["roi_heads.box_predictor.cls_score.bias"] = torch.tensor([0.0, 6.0, 0.0, 0.0])
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "maskrcnn.pt"
    save(path, confident_network(), {"task": "instance", "instance_dataset": SYNTHETIC_INSTANCE_INFO.to_dict(),
                                     "train_crop": list(SIZE)})
    return path


def _request(checkpoint, out, precision="fp32", backend="onnxruntime", **int8) -> BuildRequest:
    return BuildRequest(Source(checkpoint=str(checkpoint)), precision=precision, backend=backend,
                        int8=Int8(speed_guard=False, **int8), destination=Destination(out=str(out)))


@pytest.fixture(scope="module")
def ort_fp32(checkpoint, tmp_path_factory):
    return build_engine(_request(checkpoint, tmp_path_factory.mktemp("eng") / "ort")).path


def _frame(index=0):
    return resize_to_input(parse_instance_spec(DATA, "val")[index].image, SIZE)


@pytest.mark.slow
def test_an_instance_engine_says_so_and_detects_as_the_pytorch_network(ort_fp32, checkpoint):
    manifest = read_manifest(ort_fp32)
    assert manifest.output.kind == "instances" and manifest.output.name == "boxes,labels,scores,masks"
    assert manifest.model["num_classes"] == 4 and manifest.classes == SYNTHETIC_INSTANCE_INFO.classes
    assert manifest.input.shape == (1, *SIZE, 3) and manifest.input.dtype == "uint8"
    parity = manifest.extra["instances"]["parity"]
    assert parity["reference_detections"] > 0 and parity["matched_fraction"] == 1.0
    assert parity["min_box_iou"] > 0.999 and parity["mean_mask_iou"] > 0.99
    from edgeseg.train.checkpoint import build_from_checkpoint

    reference = torch_detector(build_from_checkpoint(checkpoint, task="instance")[0], SIZE)
    with load(ort_fp32) as session:
        assert session.detects_instances
        frame = _frame()
        found, = session.infer(frame[None])
        expected, = reference(frame[None], SIZE)
        assert isinstance(found, Instances) and len(found) == len(expected) > 0
        assert np.abs(found.boxes - expected.boxes).max() < 1e-2 and np.array_equal(found.labels, expected.labels)
        assert found.masks.shape == (len(found), *SIZE) and (found.masks == expected.masks).mean() > 0.999
        doubled, = session.detect(frame[None], (2 * SIZE[0], 2 * SIZE[1]))  # pasted at the original frame's size
        assert doubled.masks.shape[1:] == (240, 320)
        assert np.allclose(doubled.boxes, 2 * found.boxes, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_openvino_and_the_torch_reference_give_the_onnxruntime_engines_detections(backend, ort_fp32, checkpoint,
                                                                                    tmp_path):
    engine = build_engine(_request(checkpoint, tmp_path / backend, backend=backend)).path
    frame = _frame(1)[None]
    with load(ort_fp32) as ort, load(engine) as other:
        ours, theirs = ort.detect(frame)[0], other.detect(frame)[0]
    assert len(ours) == len(theirs) > 0 and np.array_equal(ours.labels, theirs.labels)
    assert np.abs(ours.boxes - theirs.boxes).max() < 1e-2 and np.abs(ours.scores - theirs.scores).max() < 1e-4


def _int8_convolutions(path) -> list[str]:
    """The convolutions of a Q/DQ graph whose weights are INT8 (their weight input is dequantized)."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: n for n in graph.node for out in n.output}
    return [n.name for n in graph.node if n.op_type == "Conv" and len(n.input) > 1
            and getattr(producer.get(n.input[1]), "op_type", "") == "DequantizeLinear"]


@pytest.mark.slow
def test_int8_quantizes_the_backbone_and_pyramid_and_keeps_the_heads_float(checkpoint, tmp_path):
    result = build_engine(_request(checkpoint, tmp_path / "int8", "int8", calib="synthetic-instances:8",
                                   calib_method="entropy"))
    m = result.manifest
    assert m.extra["calibration"]["method"] == "minmax" and m.extra["calibration"]["int8_only"] == "/backbone/"
    convs = _int8_convolutions(result.path / m.backend["engine"])
    assert any(name.startswith("/backbone/fpn/") for name in convs)
    assert any(name.startswith("/backbone/body/") for name in convs)
    assert convs and all(name.startswith("/backbone/") for name in convs)
    assert m.extra["instances"]["parity"]["reference_detections"] > 0
    with load(result.path) as session:
        assert len(session.detect(_frame()[None])[0]) > 0


@pytest.mark.slow
def test_openvino_int8_keeps_every_head_layer_in_float(checkpoint, tmp_path):
    from edgeseg.backends.openvino.session import XML, compile_ir, runtime_layers
    import openvino as ov

    result = build_engine(_request(checkpoint, tmp_path / "ov8", "int8", backend="openvino",
                                   calib="synthetic-instances:8"))
    layers = runtime_layers(compile_ir(ov.Core(), result.path / XML, "CPU", "int8", "latency", None))
    int8 = [name for name, precision in layers.items() if precision == "int8"]
    assert int8 and all(name.startswith("/backbone/") for name in int8)
    assert any(name.startswith("/roi_heads/") for name, p in layers.items() if p != "int8")


@pytest.mark.slow
def test_the_ap_budget_is_measured_recorded_and_falls_back_to_a_float_pyramid(checkpoint, tmp_path, monkeypatch):
    ok = build_engine(_request(checkpoint, tmp_path / "fits", "int8", calib="synthetic-instances:8",
                               val=DATA, max_ap_drop=100.0))
    budget = ok.manifest.extra["ap_budget"]
    assert budget["images"] == 6 and len(budget["tried"]) == 1 and budget["int8_scope"] == "/backbone/"

    import edgeseg.build.instances as instances
    from edgeseg.measure import instance_eval

    real, calls = instance_eval.score, []

    def score(detector, dataset, size, progress=True, desc=""):  # the first INT8 engine scored 5 points lower
        metrics = real(detector, dataset, size, progress, desc)
        calls.append(desc)
        if len(calls) == 2:
            import dataclasses

            return dataclasses.replace(metrics, box_ap=metrics.box_ap - 5, mask_ap=metrics.mask_ap - 5)
        return metrics

    monkeypatch.setattr(instance_eval, "score", score)
    fell_back = build_engine(_request(checkpoint, tmp_path / "fallback", "int8", calib="synthetic-instances:8",
                                      val=DATA, max_ap_drop=1.0))
    tried = fell_back.manifest.extra["ap_budget"]["tried"]
    assert [t["int8_only"] for t in tried] == ["/backbone/", instances.BACKBONE_ONLY] and tried[0]["drop"] >= 4
    assert fell_back.manifest.extra["ap_budget"]["int8_scope"] == instances.BACKBONE_ONLY
    convs = _int8_convolutions(fell_back.path / fell_back.manifest.backend["engine"])
    assert convs and all(name.startswith("/backbone/body/") for name in convs)

    calls.clear()

    def never_fits(detector, dataset, size, progress=True, desc=""):  # every engine 50 points under zero
        metrics = real(detector, dataset, size, progress, desc)
        calls.append(desc)
        if len(calls) == 1:  # the PyTorch reference
            return metrics
        import dataclasses

        return dataclasses.replace(metrics, box_ap=-50.0, mask_ap=-50.0)

    monkeypatch.setattr(instance_eval, "score", never_fits)
    with pytest.raises(EdgesegError, match="loses .* AP points"):
        build_engine(_request(checkpoint, tmp_path / "never", "int8", calib="synthetic-instances:8", val=DATA,
                              max_ap_drop=1.0))
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_the_proposal_and_detection_budget_is_built_in_and_recorded(checkpoint, tmp_path):
    result = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="onnxruntime",
                                       graph=Graph(proposals=40, detections=5, min_score=0.3),
                                       destination=Destination(out=str(tmp_path / "small"))))
    counts = result.manifest.extra["instances"]
    assert (counts["proposals_per_level"], counts["proposals"], counts["detections_per_img"]) == (40, 40, 5)
    assert counts["box_score_thresh"] == 0.3 and counts["parity"]["matched_fraction"] == 1.0
    with load(result.path) as session:
        found = [session.detect(_frame(i)[None])[0] for i in range(3)]
    assert all(0 < len(f) <= 5 and f.scores.min() >= 0.3 for f in found)


def test_the_instance_budget_flags_are_refused_for_semantic_networks(tmp_path, capsys):
    assert main(["build", "--model", "fastscnn", "--random-weights", "--detections", "5", "--out",
                 str(tmp_path / "e")]) == 2
    assert "--detections apply to instance networks" in capsys.readouterr().err
    assert main(["build", "--model", "maskrcnn", "--random-weights", "--min-score", "1.5", "--out",
                 str(tmp_path / "e")]) == 2
    assert "--min-score 1.5 is outside 0..1" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_semantic_options_and_missing_inputs_are_refused_before_any_work(checkpoint, tmp_path):
    for request, match in [
        (BuildRequest(Source(checkpoint=str(checkpoint)), graph=Graph(batch=2), destination=Destination(out=str(tmp_path / "a"))), "--batch"),
        (BuildRequest(Source(checkpoint=str(checkpoint)), precision="int8", int8=Int8(calib="synthetic-instances:4", max_miou_drop=1.0),
                      destination=Destination(out=str(tmp_path / "b"))), "--max-miou-drop"),
        (BuildRequest(Source(checkpoint=str(checkpoint)), int8=Int8(max_ap_drop=1.0), destination=Destination(out=str(tmp_path / "c"))), "--val"),
        (BuildRequest(Source(checkpoint=str(checkpoint)), precision="int8", destination=Destination(out=str(tmp_path / "d"))), "calibration"),
        (BuildRequest(Source(model="maskrcnn"), destination=Destination(out=str(tmp_path / "e"))), "ships no weights"),
    ]:
        with pytest.raises(EdgesegError, match=match):
            build_engine(request)
        assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_eval_scores_an_instance_engine_and_its_drop_and_refuses_the_wrong_data(ort_fp32, checkpoint, tmp_path, capsys):
    out = tmp_path / "ap.json"
    assert main(["eval", "--engine", str(ort_fp32), "--reference", str(checkpoint), "--data", DATA, "--no-progress",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["kind"] == "instances" and data["engine"]["images"] == 6
    assert data["box_ap_drop"] == pytest.approx(0.0, abs=0.05) and data["mask_ap_drop"] == pytest.approx(0.0, abs=0.05)
    assert "drop (reference - engine)" in capsys.readouterr().out
    assert main(["eval", "--engine", str(ort_fp32), "--data", "synthetic:4:val"]) == 2  # a semantic dataset
    assert "synthetic" in capsys.readouterr().err


def test_a_manifest_that_miscounts_an_instance_networks_classes_is_refused(ort_fp32_manifest_dir):
    from edgeseg.manifest import ManifestError

    with pytest.raises(ManifestError, match="background"):
        read_manifest(ort_fp32_manifest_dir)


@pytest.fixture
def ort_fp32_manifest_dir(tmp_path):
    """A copy of an instance manifest whose model.num_classes forgets the background class."""
    from edgeseg.manifest import SCHEMA_VERSION

    data = {"schema_version": SCHEMA_VERSION, "name": "x", "model": {"name": "maskrcnn", "num_classes": 3},
            "classes": ["car", "pedestrian", "bicyclist"], "palette": [[1, 2, 3]] * 3, "ignore_index": 255,
            "input": {"name": "frames", "shape": [1, 8, 8, 3], "dtype": "uint8", "layout": "NHWC"},
            "output": {"name": "boxes,labels,scores,masks", "kind": "instances", "dtype": "float32",
                       "shape": [None, 28, 28]},
            "precision": {"requested": "fp32", "as_run": "fp32", "note": ""},
            "backend": {"name": "onnxruntime", "engine": "model.onnx"}, "onnx": {}, "hardware": {},
            "files": {"model.onnx": "0" * 64}, "build_seconds": 0.0, "created": "", "command": "",
            "edgeseg_version": "0"}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return tmp_path


def test_a_semantic_engine_is_not_asked_for_instances(tmp_path):
    from edgeseg.manifest import Manifest
    from edgeseg.runtime.session import Session

    manifest = Manifest.from_dict({**json.loads(_semantic_manifest()), "extra": {}})
    with pytest.raises(BadInputError, match="finds no instances"):
        Session(manifest).detect(np.zeros((1, 8, 8, 3), np.uint8))


def _semantic_manifest() -> str:
    from edgeseg.manifest import SCHEMA_VERSION

    return json.dumps({"schema_version": SCHEMA_VERSION, "name": "s", "model": {"name": "fastscnn", "num_classes": 2},
                       "classes": ["a", "b"], "palette": [[0, 0, 0], [1, 1, 1]], "ignore_index": 255,
                       "input": {"name": "x", "shape": [1, 8, 8, 3], "dtype": "uint8", "layout": "NHWC"},
                       "output": {"name": "y", "kind": "labels", "dtype": "uint8", "shape": [1, 8, 8]},
                       "precision": {"requested": "fp32", "as_run": "fp32", "note": ""},
                       "backend": {"name": "onnxruntime", "engine": "model.onnx"}, "onnx": {}, "hardware": {},
                       "files": {"model.onnx": "0" * 64}, "build_seconds": 0.0, "created": "", "command": "",
                       "edgeseg_version": "0"})
