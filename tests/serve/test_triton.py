"""Triton exports: written from the graph, parsed by Triton's own ModelConfig schema, checked against the graph,
and a broken configuration caught by those checks (none of Triton's servers runs here)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.serve import ServeRequest, check, export
from edgeseg.serve.triton_check import parse_config

pytest.importorskip("tritonclient", reason="Triton's ModelConfig schema comes with tritonclient (pip install 'edgeseg[serve]')")


def _export(engine, out, **kw):
    return export(ServeRequest(engine, "triton", out, **kw))


def test_onnxruntime_engine_serves_label_maps_with_the_host_tail_appended(ort_engine, tmp_path):
    result = _export(ort_engine, tmp_path / "repo")
    model = tmp_path / "repo" / "ort"
    assert result.model_dir == model and result.kind == "labels" and not result.client_tail
    config = parse_config((model / "config.pbtxt").read_text())
    assert (config.name, config.backend, config.max_batch_size) == ("ort", "onnxruntime", 0)
    assert [(t.name, list(t.dims)) for t in config.input] == [("frames", [1, 64, 96, 3])]
    assert [(t.name, list(t.dims), t.label_filename) for t in config.output] == [("labels", [1, 64, 96], "")]
    assert not config.HasField("dynamic_batching")  # a fixed batch-1 graph: nothing to batch
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert json.loads(params["edgeseg.classes"])[:2] == ["sky", "building"] and params["edgeseg.output"] == "labels"
    assert params["edgeseg.labels_file"] == "labels.txt"  # not label_filename: that is Triton's classification
    assert (model / "labels.txt").read_text().splitlines()[0] == "sky"
    # the served graph, run as Triton's onnxruntime backend would, gives the engine's labels
    assert result.parity["agreement"] >= 0.999 and result.parity["frames"] == 4
    record = json.loads((model / "edgeseg-export.json").read_text())
    assert record["files"]["1/model.onnx"] and record["signature"]["outputs"][0]["dtype"] == "uint8"
    assert check(tmp_path / "repo") == []


def test_client_tail_keeps_the_logits_and_says_what_the_client_does(ort_engine, tmp_path):
    result = _export(ort_engine, tmp_path, tail="client")
    config = parse_config((result.model_dir / "config.pbtxt").read_text())
    assert result.kind == "lowres-logits" and config.output[0].data_type == 11  # TYPE_FP32
    assert "argmax" in config.parameters["edgeseg.client_tail"].string_value
    assert (result.model_dir / "1" / "model.onnx").read_bytes() == (ort_engine / "model.onnx").read_bytes()
    assert result.parity["skipped"]  # a byte copy run by its own library needs no run


def test_openvino_engine_gets_its_ir_the_tail_and_batch_padding_only_when_batching(ov_engine, tmp_path):
    result = _export(ov_engine, tmp_path)
    model = result.model_dir
    config = parse_config((model / "config.pbtxt").read_text())
    assert config.backend == "openvino" and (model / "1" / "model.xml").is_file() and (model / "1" / "model.bin").is_file()
    assert config.instance_group[0].kind == 2  # KIND_CPU
    assert "ENABLE_BATCH_PADDING" not in config.parameters and config.parameters["TARGET_DEVICE"].string_value == "CPU"
    assert result.kind == "labels" and result.parity["agreement"] >= 0.999 and result.parity["runtime"] == "openvino"
    assert check(model) == []


def test_dynamic_engine_batches_on_the_server(dynamic_engine, tmp_path):
    result = _export(dynamic_engine, tmp_path, triton=__import__("edgeseg.serve.triton", fromlist=["x"]).TritonOptions(4, 500))
    config = parse_config((result.model_dir / "config.pbtxt").read_text())
    assert config.max_batch_size == 4 and config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.input[0].dims) == [-1, -1, 3] and config.input[0].format == 1  # FORMAT_NHWC
    assert list(config.output[0].dims) == [-1, -1]
    assert check(result.model_dir) == []
    # the served graph takes what the configuration promises: any batch up to 4 at any size
    session = ort.InferenceSession(str(result.model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 128, 3), dtype=np.uint8)
    assert session.run(None, {"frames": frames})[0].shape == (3, 64, 128)


def test_tensorrt_engine_on_paper(trt_engine, tmp_path):
    result = _export(trt_engine, tmp_path)
    model = result.model_dir
    config = parse_config((model / "config.pbtxt").read_text())
    assert config.backend == "tensorrt" and config.instance_group[0].kind == 1  # KIND_GPU
    assert (model / "1" / "model.plan").read_bytes() == (trt_engine / "model.engine").read_bytes()
    assert [(t.name, list(t.dims)) for t in config.output] == [("labels", [1, 64, 96])]
    assert "engine's file" in result.parity["skipped"]  # a byte copy: nothing to run (and no TensorRT here)
    assert check(model) == []  # against the graph recorded at export (the plan cannot be read here)


def test_a_compiled_plan_cannot_get_the_tail(ort_engine, tmp_path):
    from conftest import paper_tensorrt_engine

    plan = paper_tensorrt_engine(ort_engine, tmp_path / "trt-lowres")
    with pytest.raises(EdgesegError, match="--tail engine"):
        _export(plan, tmp_path / "repo")
    assert not (tmp_path / "repo" / "trt-lowres").exists()
    result = _export(plan, tmp_path / "repo", tail="client")
    assert result.kind == "lowres-logits" and check(result.model_dir) == []


BREAKS = [
    ("dims: [ 1, 64, 96, 3 ]", "dims: [ 1, 64, 97, 3 ]", r"input 'frames': dimension 2 is 97 but the graph's is 96"),
    ("data_type: TYPE_UINT8\n    dims: [ 1, 64, 96, 3 ]", "data_type: TYPE_FP32\n    dims: [ 1, 64, 96, 3 ]",
     r"input 'frames': data_type TYPE_FP32 but the graph's is uint8"),
    ("dims: [ 1, 64, 96 ]", "dims: [ 64, 96 ]", r"output 'labels': dims \[64, 96\] have 2 dimensions; the graph's"),
    ("dims: [ 1, 64, 96, 3 ]", "dims: [ 1, -1, -1, 3 ]", r"dimension 1 is -1 but the graph's is 64"),
    ([("max_batch_size: 0", "max_batch_size: 4"), ("dims: [ 1, 64, 96, 3 ]", "dims: [ 64, 96, 3 ]"),
      ("dims: [ 1, 64, 96 ]", "dims: [ 64, 96 ]")], None, r"max_batch_size 4 needs an open batch dimension"),
    ('name: "frames"', 'name: "images"', r"graph input 'frames' is not configured"),
    ("dims: [ 1, 64, 96, 3 ]", "format: FORMAT_NHWC\n    dims: [ 1, 64, 96, 3 ]", r"FORMAT_NHWC needs exactly 3 dims"),
    ('name: "ort"', 'name: "other"', r"not the folder's name"),
    ("dims: [ 1, 64, 96 ]", 'dims: [ 1, 64, 96 ]\n    label_filename: "classes.txt"', r"label_filename 'classes.txt' is not in"),
    ("kind: KIND_CPU", "kind: KIND_GPU", None),  # Triton's ORT backend runs on GPUs too: not a problem
    ("max_batch_size: 0", "max_batch: 0", r"not a valid Triton ModelConfig"),  # unknown field: the schema
    ("TYPE_UINT8", "TYPE_UINT9", r"not a valid Triton ModelConfig"),  # unknown enum value: the schema
    ('backend: "onnxruntime"', 'backend: "onnx"', r"expected onnxruntime, openvino or tensorrt"),
]


@pytest.fixture(scope="module")
def exported(ort_engine, tmp_path_factory):
    return _export(ort_engine, tmp_path_factory.mktemp("repo")).model_dir


@pytest.mark.parametrize("old,new,problem", BREAKS)
def test_a_broken_config_is_caught(exported, tmp_path, old, new, problem):
    model = tmp_path / "ort"
    shutil.copytree(exported, model)
    text = (model / "config.pbtxt").read_text()
    for before, after in (old if isinstance(old, list) else [(old, new)]):
        assert before in text
        text = text.replace(before, after, 1)
    (model / "config.pbtxt").write_text(text)
    problems = check(model)
    if problem is None:
        assert problems == []
    else:
        assert any(re.search(problem, p) for p in problems), problems


def test_an_empty_or_missing_config_or_model_is_not_a_pass(exported, tmp_path):
    model = tmp_path / "ort"
    shutil.copytree(exported, model)
    (model / "config.pbtxt").write_text("")
    assert check(model)  # parses (every field is optional), names no backend: refused
    shutil.copyfile(exported / "config.pbtxt", model / "config.pbtxt")
    (model / "1" / "model.onnx").unlink()
    assert any("model.onnx is missing" in p for p in check(model))


def test_tensorrt_on_cpu_instances_is_caught(trt_engine, tmp_path):
    model = _export(trt_engine, tmp_path).model_dir
    text = (model / "config.pbtxt").read_text().replace("KIND_GPU", "KIND_CPU")
    (model / "config.pbtxt").write_text(text)
    assert any("runs on KIND_GPU" in p for p in check(model))


def test_openvino_on_auto_instances_is_caught(ov_engine, tmp_path):
    """KIND_AUTO becomes KIND_GPU on a server with GPUs, which Triton's openvino backend refuses."""
    model = _export(ov_engine, tmp_path).model_dir
    (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text().replace("KIND_CPU", "KIND_AUTO"))
    assert any("runs on KIND_CPU" in p for p in check(model))


def test_a_plan_that_cannot_be_read_is_not_passed_unchecked(trt_engine, tmp_path):
    model = _export(trt_engine, tmp_path).model_dir
    assert check(model) == []  # the plan exported, compared with the graph recorded from its ONNX
    (model / "1" / "model.plan").write_bytes(b"another plan")
    assert any("is not the file edgeseg exported" in p for p in check(model))
    (model / "edgeseg-export.json").unlink()
    assert any("were not checked" in p for p in check(model))


def test_exports_are_atomic_and_never_overwrite(ort_engine, tmp_path):
    first = _export(ort_engine, tmp_path)
    with pytest.raises(EdgesegError, match="already exists"):
        _export(ort_engine, tmp_path)
    replaced = _export(ort_engine, tmp_path, force=True, tail="client")
    assert replaced.model_dir == first.model_dir and replaced.kind == "lowres-logits"
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("not edgeseg's")
    with pytest.raises(EdgesegError, match="not an edgeseg export"):
        _export(ort_engine, tmp_path, name="mine", force=True)
    assert (other / "notes.txt").read_text() == "not edgeseg's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "ort"]  # no staging folder left


def test_batching_openvino_engine_pads_smaller_batches(ov_dynamic_engine, tmp_path):
    """Triton's openvino backend sets the model's batch to max_batch_size and refuses smaller batches unless
    ENABLE_BATCH_PADDING is YES."""
    result = _export(ov_dynamic_engine, tmp_path)
    config = parse_config((result.model_dir / "config.pbtxt").read_text())
    assert config.max_batch_size == 8 and config.parameters["ENABLE_BATCH_PADDING"].string_value == "YES"
    assert result.parity["agreement"] >= 0.999 and check(result.model_dir) == []
