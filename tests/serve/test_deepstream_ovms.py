"""DeepStream and OpenVINO Model Server exports: the files each server reads, checked against their documented
keys and schema and against the graph; broken files caught (neither server runs here)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.serve import ServeRequest, check, export
from edgeseg.serve.deepstream import one_scale, read_config
from edgeseg.serve.onnx_graph import signature


def _ds(engine, out, **kw):
    return export(ServeRequest(engine, "deepstream", out, **kw))


def test_deepstream_gets_float_frames_and_scores_for_its_segmentation_parser(ort_engine, tmp_path):
    result = _ds(ort_engine, tmp_path)
    keys = read_config(result.model_dir / "config_infer_primary.txt")
    assert keys["network-type"] == "2" and keys["segmentation-threshold"] == "0.0"
    assert (keys["model-color-format"], keys["network-input-order"], keys["infer-dims"]) == ("1", "1", "3;64;96")
    assert (keys["net-scale-factor"], keys["offsets"], keys["network-mode"]) == ("1.0", "0;0;0", "0")
    sig = signature(result.model_dir / "model.onnx")
    assert sig.inputs[0].dtype == "float32" and sig.inputs[0].shape == (1, 64, 96, 3)
    assert sig.outputs[0].name == keys["output-blob-names"] == "probs" and sig.outputs[0].shape == (1, 11, 8, 12)
    assert result.parity["agreement"] >= 0.999  # the float-frames + softmax graph argmaxes as the engine's graph
    assert check(result.model_dir) == []
    # scores, not logits: every pixel's winner beats nvinfer's starting maximum of -1 and the 0.0 threshold
    import onnxruntime as ort

    session = ort.InferenceSession(str(result.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(1).integers(0, 256, (1, 64, 96, 3)).astype(np.float32)
    assert session.run(None, {"frames": frames})[0].max(axis=1).min() > 1 / 11 - 1e-6


def test_deepstream_label_maps_go_through_tensor_meta(ort_engine, tmp_path):
    result = _ds(ort_engine, tmp_path, tail="server")
    keys = read_config(result.model_dir / "config_infer_primary.txt")
    assert (keys["network-type"], keys["output-tensor-meta"]) == ("100", "1") and result.kind == "labels"
    out = signature(result.model_dir / "model.onnx").outputs[0]
    assert out.shape == (1, 64, 96) and out.dtype == "int32"  # nvinfer binds no uint8 tensor
    assert result.parity["agreement"] >= 0.999
    assert check(result.model_dir) == []
    triton = export(ServeRequest(ort_engine, "triton", tmp_path / "triton"))  # the same graph with uint8 labels
    graph = triton.model_dir / "1" / "model.onnx"
    assert signature(graph).outputs[0].dtype == "uint8"
    shutil.copyfile(graph, result.model_dir / "model.onnx")
    assert any("nvinfer binds float32, float16, int8 or int32" in p for p in check(result.model_dir))


def test_deepstream_refuses_a_graph_with_a_fixed_batch_above_one(batch2_engine, tmp_path):
    with pytest.raises(BadInputError, match="batch fixed at 2"):
        _ds(batch2_engine, tmp_path)
    assert not tmp_path.joinpath("batch2").exists()


def test_deepstream_normalized_input_is_exact_with_the_std_in_the_graph(host_preprocess_engine, tmp_path):
    result = _ds(host_preprocess_engine, tmp_path)
    keys = read_config(result.model_dir / "config_infer_primary.txt")
    assert keys["model-color-format"] == "0" and keys["network-input-order"] == "0"  # RGB NCHW as the engine takes
    offsets = [float(v) for v in keys["offsets"].split(";")]
    assert offsets == pytest.approx([255 * 0.485, 255 * 0.456, 255 * 0.406])
    assert float(keys["net-scale-factor"]) == pytest.approx(1 / 255)
    assert "1/std" in result.variant and not any(n.startswith("WARNING") for n in result.notes)
    assert result.parity["agreement"] >= 0.999  # fed (x - 255 mean) / 255, as nvinfer would
    assert check(result.model_dir) == []


def test_deepstream_one_scale_for_three_stds_is_warned_and_measured(host_preprocess_engine, tmp_path, capsys):
    scale, error = one_scale((0.229, 0.224, 0.225))
    assert 0.224 < scale < 0.229 and 0.010 < error < 0.012
    result = _ds(host_preprocess_engine, tmp_path, ds_std="scale")
    keys = read_config(result.model_dir / "config_infer_primary.txt")
    assert float(keys["net-scale-factor"]) == pytest.approx(1 / (255 * scale))
    warning = next(n for n in result.notes if n.startswith("WARNING"))
    assert re.search(r"measured on 4 frames: \d+\.\d+% of pixels keep their class", warning)
    assert "WARNING" in capsys.readouterr().err
    assert check(result.model_dir) == []


def test_deepstream_refuses_what_nvinfer_cannot_take(dynamic_engine, tmp_path):
    with pytest.raises(BadInputError, match="--input-size"):
        _ds(dynamic_engine, tmp_path)
    result = _ds(dynamic_engine, tmp_path, input_size=(64, 96), batch=2)
    keys = read_config(result.model_dir / "config_infer_primary.txt")
    assert (keys["infer-dims"], keys["batch-size"]) == ("3;64;96", "2") and check(result.model_dir) == []


DS_BREAKS = [
    ("\nnetwork-type=2", "\nnetwrk-type=2", r"netwrk-type is not a gst-nvinfer key \(did you mean network-type\?\)"),
    ("infer-dims=3;64;96", "infer-dims=3;96;64", r"infer-dims=3;96;64 \(c;h;w\) but the graph's input"),
    ("batch-size=1", "batch-size=4", r"batch-size=4 but the graph's batch is fixed at 1"),
    ("offsets=0;0;0", "offsets=0;0", r"offsets has 2 values for 3 channels"),
    ("network-mode=0", "network-mode=3", r"network-mode=3: expected one of 0, 1, 2"),
    ("\nnetwork-type=2", "\nnetwork-type=100", r"network-type=100 without output-tensor-meta=1"),
    ("output-blob-names=probs", "output-blob-names=logits", r"'logits' is not a graph output"),
    ("labelfile-path=labels.txt", "labelfile-path=classes.txt", r"labelfile-path=classes.txt: no such file"),
    ("num-detected-classes=11", "num-detected-classes=4", r"num-detected-classes=4 but the output has 11"),
    ("scaling-filter=1", "scaling-filter=bilinear", r"scaling-filter=bilinear: expected int"),
    ("model-color-format=1", "model-color-format=0", r"model-color-format=0, but the engine takes model-color-format=1"),
    ("net-scale-factor=1.0", "net-scale-factor=0.0039", r"net-scale-factor=0.0039, but the engine takes"),
    ("network-mode=0", "network-mode=1", r"network-mode=1 \(INT8\) without int8-calib-file, and the graph has no Q/DQ"),
]


@pytest.fixture(scope="module")
def ds_model(ort_engine, tmp_path_factory):
    return _ds(ort_engine, tmp_path_factory.mktemp("ds")).model_dir


@pytest.mark.parametrize("old,new,problem", DS_BREAKS)
def test_a_broken_deepstream_config_is_caught(ds_model, tmp_path, old, new, problem):
    model = tmp_path / "m"
    shutil.copytree(ds_model, model)
    path = model / "config_infer_primary.txt"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    problems = check(model)
    assert any(re.search(problem, p) for p in problems), problems


def test_deepstream_catches_a_uint8_graph_and_fewer_labels(ds_model, ort_engine, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(ds_model, model)
    shutil.copyfile(ort_engine / "model.onnx", model / "model.onnx")  # the engine's own uint8-frames graph
    (model / "labels.txt").write_text("sky\nroad\n")
    problems = check(model)
    assert any("is not float32: nvinfer writes float32" in p for p in problems), problems
    (model / "config_infer_primary.txt").write_text("")
    assert check(model) == [f"{model / 'config_infer_primary.txt'} has no [property] group"]


# -- OpenVINO Model Server ------------------------------------------------------------------------------------


def test_ovms_repository_collects_models_and_keeps_each_entry(ov_engine, ort_engine, trt_engine, tmp_path):
    ov = export(ServeRequest(ov_engine, "ovms", tmp_path))
    ort_result = export(ServeRequest(ort_engine, "ovms", tmp_path))
    trt = export(ServeRequest(trt_engine, "ovms", tmp_path, tail="client"))
    config = json.loads((tmp_path / "config.json").read_text())
    entries = {m["config"]["name"]: m["config"] for m in config["model_config_list"]}
    assert sorted(entries) == ["ort", "ov", "trt"]
    assert entries["ov"]["plugin_config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert entries["ov"]["layout"] == {"frames": "NHWC"} and entries["ov"]["base_path"] == "ov"
    assert (tmp_path / "ov" / "1" / "model.xml").is_file() and (tmp_path / "ort" / "1" / "model.onnx").is_file()
    assert ov.parity["agreement"] >= 0.999  # the tail appended to the IR, run by OpenVINO
    assert ort_result.parity["runtime"] == "openvino" and ort_result.parity["agreement"] > 0.5  # another library
    assert any("cannot load a TensorRT plan" in n for n in trt.notes)
    assert check(tmp_path) == []
    with pytest.raises(EdgesegError, match="already"):
        export(ServeRequest(ov_engine, "ovms", tmp_path))
    export(ServeRequest(ov_engine, "ovms", tmp_path, force=True, tail="client"))
    assert len(json.loads((tmp_path / "config.json").read_text())["model_config_list"]) == 3


OVMS_BREAKS = [
    (lambda c: c.update(mean=[0.5]), r"Additional properties are not allowed \('mean' was unexpected\)"),
    (lambda c: c.update(nireq=-1), r"nireq: -1 is less than the minimum of 0"),
    (lambda c: c.update(base_path="elsewhere"), r"has no version folder"),
    (lambda c: c.update(layout={"images": "NHWC"}), r"layout names 'images', which the model does not have"),
    (lambda c: c.update(layout={"frames": "NCHWD"}), r"layout 'NCHWD' has 5 dimensions"),
    (lambda c: c.update(layout={"frames": "NHHC"}), r"expected letters"),
    (lambda c: c.update(target_device="TPU"), r"target_device 'TPU' is not an OpenVINO device"),
    (lambda c: c.pop("name"), r"'name' is a required property"),
]


@pytest.mark.parametrize("mutate,problem", OVMS_BREAKS)
def test_a_broken_ovms_config_is_caught(ov_engine, tmp_path, mutate, problem):
    export(ServeRequest(ov_engine, "ovms", tmp_path))
    data = json.loads((tmp_path / "config.json").read_text())
    mutate(data["model_config_list"][0]["config"])
    (tmp_path / "config.json").write_text(json.dumps(data))
    problems = check(tmp_path)
    assert any(re.search(problem, p) for p in problems), problems


def test_ovms_lists_a_model_only_once_its_folder_is_in_place(ov_engine, ort_engine, tmp_path, monkeypatch):
    from edgeseg.serve import ovms

    export(ServeRequest(ort_engine, "ovms", tmp_path))
    before = (tmp_path / "config.json").read_text()

    def fails(*args, **kwargs):
        raise EdgesegError("disk full", "free space")

    monkeypatch.setattr(ovms, "publish_entry", fails)  # the config.json rewrite fails after the folder's rename
    with pytest.raises(EdgesegError, match="disk full"):
        export(ServeRequest(ov_engine, "ovms", tmp_path))
    assert (tmp_path / "config.json").read_text() == before and not (tmp_path / "ov").exists()
    assert check(tmp_path) == []


def test_ovms_force_never_replaces_an_entry_edgeseg_did_not_write(ov_engine, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [
        {"config": {"name": "ov", "base_path": "/models/someone-elses"}}]}))
    with pytest.raises(EdgesegError, match="only replaces what edgeseg wrote"):
        export(ServeRequest(ov_engine, "ovms", tmp_path, force=True))
    assert not (tmp_path / "ov").exists()


def test_ovms_catches_two_models_in_a_version_and_a_missing_bin(ov_engine, ort_engine, tmp_path):
    export(ServeRequest(ov_engine, "ovms", tmp_path))
    shutil.copyfile(ort_engine / "model.onnx", tmp_path / "ov" / "1" / "model.onnx")
    assert any("holds 2 models" in p for p in check(tmp_path))
    (tmp_path / "ov" / "1" / "model.onnx").unlink()
    (tmp_path / "ov" / "1" / "model.bin").unlink()
    assert any("model.bin is missing" in p for p in check(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert check(tmp_path) == ["(top): 'model_config_list' is a required property"]


def test_cli_exports_and_checks(ort_engine, tmp_path, capsys):
    from edgeseg.cli import main

    assert main(["serve-export", "--engine", str(ort_engine), "--to", "triton", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "checked: parsed by Triton's ModelConfig protobuf" in out and "tritonserver --model-repository" in out
    assert main(["serve-export", "--engine", str(ort_engine), "--to", "triton", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["serve-check", str(tmp_path)]) == 0
    config = tmp_path / "ort" / "config.pbtxt"
    config.write_text(config.read_text().replace("TYPE_UINT8", "TYPE_INT8", 1))
    assert main(["serve-check", str(tmp_path)]) == 1
    assert "data_type TYPE_INT8 but the graph's is uint8" in capsys.readouterr().out
