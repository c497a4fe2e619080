"""`edgeseg build --onnx`: foreign graphs of every convention build into engines whose labels are the
graph's own, and what the graph cannot say is declared or refused."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from foreign_graphs import CLASSES, CONVENTIONS, Convention, export, reference_labels

from edgeseg import backends
from edgeseg.build.onnx_import import Declared, open_foreign
from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Int8, Source, build_engine
from edgeseg.errors import BadInputError, UnknownNameError
from edgeseg.runtime import load, resize_to_input
from edgeseg.weights import CALIBRATION

OPENVINO = backends.availability("openvino").ok


def _frames(size, n=3):
    """Real road frames (the CamVid train frames shipped with edgeseg) at `size`."""
    import cv2

    paths = sorted(CALIBRATION.glob("*.jpg"))[:n]
    return np.stack([resize_to_input(cv2.imread(str(p)), size) for p in paths])


def _build(path, convention: Convention, tmp_path, backend="onnxruntime", precision="fp32", **int8):
    request = BuildRequest(Source(onnx=str(path), declared=Declared(**convention.flags)), precision=precision,
                           backend=backend, graph=Graph(input_size=convention.flags.get("input_size"),
                                                        dynamic=convention.dynamic),
                           int8=Int8(**int8), destination=Destination(out=str(tmp_path / f"{backend}-{precision}")))
    return build_engine(request)


def _agreement(a, b) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


@pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: c.name)
def test_each_convention_builds_an_onnxruntime_engine_with_the_graphs_own_labels(convention, tmp_path):
    path = export(tmp_path / f"{convention.name}.onnx", convention)
    result = build_engine_and_check(path, convention, tmp_path, "onnxruntime")
    record = result.manifest.model["onnx_import"]
    assert record["sha256"] and record["parity"]["engine"]["agreement"] >= 0.9995
    assert result.manifest.classes == CLASSES


def build_engine_and_check(path, convention, tmp_path, backend, precision="fp32", **int8):
    result = _build(path, convention, tmp_path, backend, precision, **int8)
    frames = _frames(convention.size)
    expected = reference_labels(path, convention, frames)
    with load(result.path) as session:
        got = np.concatenate([session.infer(f[None]) for f in frames])
    if precision == "fp32":
        assert _agreement(got, expected) >= 0.9995  # pixel for pixel, float ties aside
    else:
        assert _agreement(got, expected) >= 0.80  # INT8 of an untrained toy: close, not equal
    return result


@pytest.mark.slow  # an OpenVINO build per convention, and INT8 builds on both CPU backends (5-15 s each)
@pytest.mark.skipif(not OPENVINO, reason="OpenVINO is not installed")
@pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: c.name)
def test_each_convention_builds_for_openvino_and_int8(convention, tmp_path):
    path = export(tmp_path / f"{convention.name}.onnx", convention)
    build_engine_and_check(path, convention, tmp_path, "openvino")
    for backend in ("onnxruntime", "openvino"):
        result = build_engine_and_check(path, convention, tmp_path, backend, "int8",
                                        calib=f"folder:{CALIBRATION}", calib_size=8, speed_guard=False)
        assert result.manifest.precision["requested"] == "int8"


def test_detected_fields_are_recorded(tmp_path):
    quarter = next(c for c in CONVENTIONS if c.name == "quarter_res")
    foreign = open_foreign(export(tmp_path / "q.onnx", quarter), Declared(**quarter.flags), None)
    assert (foreign.output.kind, foreign.output.layout, foreign.output.size) == ("logits", "NCHW", (16, 24))
    assert foreign.facts.input.layout == "NCHW" and foreign.facts.input.static_size == (64, 96)
    declared = foreign.record()["declared"]
    assert declared["mean"]["from"] == "preset segformer" and declared["classes"]["from"] == "--classes"
    keras = next(c for c in CONVENTIONS if c.name == "nhwc_keras")
    foreign = open_foreign(export(tmp_path / "k.onnx", keras), Declared(**keras.flags), None)
    assert foreign.facts.input.layout == "NHWC" and foreign.output.layout == "NHWC"
    assert foreign.dataset()["mean"] == [0.5, 0.5, 0.5]  # the manifest's canonical RGB 0-1 form
    soft = next(c for c in CONVENTIONS if c.name == "softmax")
    assert open_foreign(export(tmp_path / "s.onnx", soft), Declared(**soft.flags), None).output.kind == "probabilities"


def test_metadata_props_need_no_flags(tmp_path):
    convention = next(c for c in CONVENTIONS if c.name == "metadata_props")
    foreign = open_foreign(export(tmp_path / "m.onnx", convention), Declared(), None)
    assert foreign.labels.classes == CLASSES
    assert foreign.resolved.sources["mean"] == "metadata_props"


def test_edgeseg_exports_reimport_without_flags(tmp_path):
    from edgeseg.build.export import ExportOptions, export_onnx
    from edgeseg.data.camvid import CAMVID_INFO
    from edgeseg.models import build

    for name, options in (("fused", ExportOptions((64, 96), host_tail=True)),
                          ("float", ExportOptions((64, 96), fuse_preprocess=False, fuse_argmax=False))):
        path = tmp_path / f"{name}.onnx"
        export_onnx(build("fastscnn", 11).eval(), path, 11, CAMVID_INFO.mean, CAMVID_INFO.std, options,
                    labels=CAMVID_INFO.to_dict())
        foreign = open_foreign(path, Declared(), None)
        assert foreign.labels.classes == CAMVID_INFO.classes and foreign.labels.ignore_index == 11
        assert foreign.pre.channel_order == ("bgr" if name == "fused" else "rgb")


def test_size_divisor_pads_and_crops_back(tmp_path):
    convention = Convention("padded", {"stride": 4}, size=(64, 96),
                            flags={"preset": "smp", "classes": ",".join(CLASSES)}, dynamic=True)
    path = export(tmp_path / "p.onnx", convention)
    request = BuildRequest(Source(onnx=str(path), declared=Declared(**convention.flags)), backend="onnxruntime",
                           graph=Graph(input_size=(60, 90)), destination=Destination(out=str(tmp_path / "e")))
    result = build_engine(request)
    assert result.manifest.input.size == (60, 90)
    assert any("64x96" in step for step in result.manifest.model["onnx_import"]["added"])
    assert result.manifest.model["onnx_import"]["parity"]["engine"]["agreement"] >= 0.9995


def test_auxiliary_outputs_are_left_out(tmp_path):
    convention = Convention("aux", {"aux": True}, flags={"preset": "torchvision", "classes": ",".join(CLASSES)})
    foreign = open_foreign(export(tmp_path / "a.onnx", convention), Declared(**convention.flags), None)
    assert foreign.facts.output == "out" and foreign.facts.other_outputs == ("aux",)
    wrapped = foreign.write_wrapped(tmp_path / "w.onnx", 1, False, True)
    assert [o.name for o in onnx.load(wrapped.path).graph.output] == ["labels"]


def test_sidecar_yaml_and_json_declare_the_same_fields(tmp_path):
    convention = next(c for c in CONVENTIONS if c.name == "nchw_logits")
    path = export(tmp_path / "n.onnx", convention)
    fields = {"channel_order": "rgb", "value_range": 1, "mean": list(convention.mean), "std": list(convention.std),
              "classes": list(CLASSES)}
    (tmp_path / "meta.json").write_text(json.dumps(fields))
    (tmp_path / "meta.yaml").write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in fields.items()))
    for meta in ("meta.json", "meta.yaml"):
        foreign = open_foreign(path, Declared(meta=str(tmp_path / meta)), None)
        assert foreign.labels.classes == CLASSES and foreign.pre.mean == tuple(convention.mean)
    (tmp_path / "bad.yaml").write_text("means: [1, 2, 3]\n")
    with pytest.raises(BadInputError, match="unknown fields: means"):
        open_foreign(path, Declared(meta=str(tmp_path / "bad.yaml")), None)


def test_mmdeploy_pipeline_beside_the_file_is_read(tmp_path):
    convention = next(c for c in CONVENTIONS if c.name == "nchw_logits")
    path = export(tmp_path / "end2end.onnx", convention)
    (tmp_path / "pipeline.json").write_text(json.dumps({"pipeline": {"tasks": [{"type": "Task", "transforms": [
        {"type": "LoadImageFromFile"}, {"type": "Resize", "keep_ratio": True, "size": [2048, 1024]},
        {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True},
        {"type": "ImageToTensor", "keys": ["img"]}]}]}}))
    foreign = open_foreign(path, Declared(classes=",".join(CLASSES)), None)
    assert foreign.pre.channel_order == "rgb" and foreign.pre.value_range == 255
    assert foreign.resolved.sources["mean"] == "mmdeploy pipeline.json"
    assert foreign.dataset()["mean"] == pytest.approx([0.485, 0.456, 0.406], abs=1e-6)


def _refused(tmp_path, convention, match, **declared):
    path = export(tmp_path / "g.onnx", convention)
    request = BuildRequest(Source(onnx=str(path), declared=Declared(**{**convention.flags, **declared})),
                           backend="onnxruntime", graph=Graph(input_size=declared.pop("input_size", None)),
                           destination=Destination(out=str(tmp_path / "engines" / "e")))
    with pytest.raises(BadInputError, match=match):
        build_engine(request)
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())


NCHW = CONVENTIONS[0]


@pytest.mark.parametrize("change, match", [
    ({"preset": None, "mean": None}, "RGB or BGR"),
    ({"preset": None, "channel_order": "rgb", "value_range": 1}, "--mean and --std missing"),
    ({"preset": None, "channel_order": "rgb", "mean": (0.4,) * 3, "std": (0.2,) * 3}, "0-1 or 0-255"),
    ({"classes": None}, "does not name its 5 classes"),
    ({"classes": "a,b,c"}, "outputs 5 classes but --classes names 3"),
    ({"preset": None, "channel_order": "rgb", "value_range": 1, "mean": (120, 110, 100), "std": (50,) * 3},
     "0-255 scale but the value range is 1"),
])
def test_what_the_graph_cannot_say_is_refused_not_guessed(tmp_path, change, match):
    _refused(tmp_path, NCHW, match, **change)


def test_an_input_size_the_graph_cannot_take_is_refused(tmp_path):
    path = export(tmp_path / "g.onnx", NCHW)
    request = BuildRequest(Source(onnx=str(path), declared=Declared(**NCHW.flags)), backend="onnxruntime",
                           graph=Graph(input_size=(128, 128)), destination=Destination(out=str(tmp_path / "e")))
    with pytest.raises(BadInputError, match="takes 64x96 images only"):
        build_engine(request)
    dynamic = next(c for c in CONVENTIONS if c.name == "dynamic_hw")
    with pytest.raises(BadInputError, match="--input-size"):
        open_foreign(export(tmp_path / "d.onnx", dynamic), replace(Declared(**dynamic.flags), input_size=None), None)


def test_metadata_that_contradicts_the_graph_is_refused(tmp_path):
    convention = replace(CONVENTIONS[-1], metadata={**CONVENTIONS[-1].metadata, "names": "{0: 'road', 1: 'car'}"})
    with pytest.raises(BadInputError, match="outputs 5 classes but metadata_props names 2"):
        open_foreign(export(tmp_path / "m.onnx", convention), Declared(), None)


def _graph_with(tmp_path, module, x, outputs=("out",)):
    import torch

    path = tmp_path / "odd.onnx"
    torch.onnx.export(module.eval(), x, str(path), dynamo=False, opset_version=17,
                      input_names=[f"in{i}" for i in range(len(x))], output_names=list(outputs))
    return path


def test_graphs_that_are_not_segmentation_networks_are_refused(tmp_path):
    import torch
    from torch import nn

    classifier = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1000))
    path = _graph_with(tmp_path, classifier, (torch.randn(1, 3, 32, 32),))
    with pytest.raises(BadInputError, match="classifier"):
        open_foreign(path, Declared(preset="imagenet", classes="a,b"), None)

    class Detector(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    path = _graph_with(tmp_path, Detector(), (torch.randn(1, 3, 32, 32),), ("boxes", "scores"))
    with pytest.raises(BadInputError, match="(?s)2 outputs .* --output NAME"):
        open_foreign(path, Declared(preset="imagenet", classes="a,b"), None)

    class TwoInputs(nn.Module):
        def forward(self, a, b):
            return a + b

    path = _graph_with(tmp_path, TwoInputs(), (torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)))
    with pytest.raises(BadInputError, match="2 inputs"):
        open_foreign(path, Declared(preset="imagenet", classes="a,b"), None)


def test_truncated_and_missing_files_are_refused(tmp_path):
    path = export(tmp_path / "g.onnx", NCHW)
    data = path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="not a readable ONNX model"):
        open_foreign(tmp_path / "cut.onnx", Declared(**NCHW.flags), None)
    with pytest.raises(BadInputError, match="missing"):
        open_foreign(tmp_path / "nope.onnx", Declared(**NCHW.flags), None)
    with pytest.raises(UnknownNameError, match="preset"):
        open_foreign(path, Declared(preset="keras", classes="a,b,c,d,e"), None)


def test_cli_builds_benches_and_refuses_flags_without_onnx(tmp_path, monkeypatch, capsys):
    from edgeseg.cli import main

    path = export(tmp_path / "seg.onnx", CONVENTIONS[5])
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--onnx", str(path), "--preset", "segformer", "--classes",
                 ",".join(CLASSES), "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "preset segformer filled: channel_order, mean, std, value_range" in out
    assert "engines/seg-fp32-onnxruntime" in out and "100.000% of pixels agree" in out
    assert main(["bench", "--engine", "engines/seg-fp32-onnxruntime", "--iterations", "5", "--warmup", "1"]) == 0
    capsys.readouterr()
    assert main(["build", "--model", "fastscnn", "--random-weights", "--preset", "smp"]) == 2
    assert "--preset describes a foreign graph" in capsys.readouterr().err
    assert main(["build", "--onnx", str(path), "--model", "fastscnn", "--preset", "segformer", "--classes",
                 "a,b,c,d,e", "--backend", "onnxruntime", "--out", "x"]) == 2
    assert "--onnx brings its own network" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_huggingface_configs_beside_the_file_are_read(tmp_path):
    convention = next(c for c in CONVENTIONS if c.name == "quarter_res")
    path = export(tmp_path / "model.onnx", convention)
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {str(i): n for i, n in enumerate(CLASSES)}}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"do_rescale": True, "rescale_factor": 1 / 255, "image_mean": [0.485, 0.456, 0.406],
         "image_std": [0.229, 0.224, 0.225]}))
    foreign = open_foreign(path, Declared(), None)
    assert foreign.labels.classes == CLASSES and foreign.pre.value_range == 1 and foreign.pre.channel_order == "rgb"
    assert foreign.resolved.sources["classes"] == "config.json id2label"


def test_a_foreign_engine_streams_a_video(tmp_path, monkeypatch, capsys):
    import cv2

    from edgeseg.cli import main

    path = export(tmp_path / "seg.onnx", CONVENTIONS[1])  # NHWC in and out
    result = _build(path, CONVENTIONS[1], tmp_path)
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for frame in _frames((64, 96), n=6):
        writer.write(frame)
    writer.release()
    stats = tmp_path / "stats.json"
    assert main(["stream", "--engine", str(result.path), "--video", str(video), "--output", str(tmp_path / "o.mp4"),
                 "--stats", str(stats)]) == 0
    record = json.loads(stats.read_text())
    assert record["frames"]["processed"] == 6 and (tmp_path / "o.mp4").stat().st_size > 0


@pytest.mark.slow  # an INT8 build with the mIoU budget (two quantizations and a val pass)
def test_int8_budget_of_a_foreign_network_through_a_class_map(tmp_path):
    from edgeseg.data.synthetic import SYNTHETIC_INFO

    path = export(tmp_path / "five.onnx", NCHW)
    mapping = tmp_path / "five-to-camvid.json"
    mapping.write_text(json.dumps({"map": {"road": "road", "car": "car", "sky": "sky", "tree": "tree",
                                           "person": "pedestrian"}}))
    assert "pedestrian" in SYNTHETIC_INFO.classes
    result = _build(path, NCHW, tmp_path, "onnxruntime", "int8", calib=f"folder:{CALIBRATION}", calib_size=8,
                    val="synthetic:val", val_size=4, max_miou_drop=50.0, class_map=str(mapping))
    budget = result.manifest.extra["miou_budget"]
    assert budget["drop"] <= 50.0 and "speed_guard" in result.manifest.extra


def test_a_dynamic_graph_builds_a_dynamic_engine(tmp_path):
    dynamic = next(c for c in CONVENTIONS if c.name == "dynamic_hw")
    path = export(tmp_path / "d.onnx", dynamic)
    result = build_engine(BuildRequest(Source(onnx=str(path), declared=Declared(**dynamic.flags)),
                                       backend="onnxruntime", graph=Graph(input_size=(64, 96), dynamic=True),
                                       destination=Destination(out=str(tmp_path / "e"))))
    assert result.manifest.input.shape == (None, None, None, 3)
    frames = _frames((48, 80), n=2)
    with load(result.path) as session:
        got = session.infer(frames)
    assert got.shape == (2, 48, 80)
    assert _agreement(got, reference_labels(path, dynamic, frames)) >= 0.9995


def test_a_sidecar_names_a_preset_and_flags_win_over_it(tmp_path):
    path = export(tmp_path / "n.onnx", NCHW)
    (tmp_path / "meta.yaml").write_text("preset: mmseg\nclasses: [road, car, sky, tree, person]\n")
    foreign = open_foreign(path, Declared(meta=str(tmp_path / "meta.yaml")), None)
    assert foreign.pre.value_range == 255 and foreign.resolved.sources["mean"] == "preset mmseg"
    foreign = open_foreign(path, Declared(meta=str(tmp_path / "meta.yaml"), preset="imagenet", value_range=1,
                                          mean=(0.5,) * 3, std=(0.25,) * 3), None)
    assert foreign.resolved.sources["mean"] == "--mean" and "preset" not in foreign.resolved.values
