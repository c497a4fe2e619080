"""Mask R-CNN as one static ONNX graph: uint8 BGR frame in, boxes/labels/scores/28x28 masks out, NMS and
RoIAlign as ONNX operators; ONNX Runtime and OpenVINO run it and agree with PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detection_weights import seeded_image, seeded_state_dict
from edgeseg.errors import BadInputError
from edgeseg.models import build
from edgeseg.models.maskrcnn.deploy import DeployMaskRCNN, export_maskrcnn

SIZE = (120, 160)


def _network(size=SIZE, **options):
    model = build("maskrcnn", 4, backbone="mobilenetv3_large", min_size=min(size), max_size=max(size),
                  rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=300, detections_per_img=30, **options)
    model.load_state_dict(seeded_state_dict({k: list(v.shape) for k, v in model.state_dict().items()}))
    return model.eval()


def _frame(size=SIZE) -> torch.Tensor:
    image = seeded_image(*size)
    return (image.permute(1, 2, 0).flip(-1) * 255).round().to(torch.uint8)[None]  # 1 x H x W x 3 BGR


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _network()
    path = export_maskrcnn(model, tmp_path_factory.mktemp("onnx") / "maskrcnn.onnx", SIZE)
    with torch.no_grad():
        reference = [t.numpy() for t in DeployMaskRCNN(model, SIZE)(_frame())]
    return model, path, reference


@pytest.mark.slow
def test_the_deploy_graph_computes_the_networks_detections(exported):
    model, _, reference = exported
    frame = _frame()
    image = frame[0].flip(-1).permute(2, 0, 1).float() / 255  # what the eager network takes: RGB 0..1
    with torch.no_grad():
        eager = model([image])[0]
    assert not model.training  # the export leaves the network as it found it
    boxes, labels, scores, masks = reference
    assert len(scores) == len(eager["scores"]) > 0 and masks.shape[1:] == (28, 28)
    assert np.allclose(boxes, eager["boxes"].numpy(), atol=1e-3)
    assert np.array_equal(labels, eager["labels"].numpy()) and np.allclose(scores, eager["scores"].numpy(), atol=1e-6)


def _run_onnxruntime(path, frame):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames"] and session.get_inputs()[0].type == "tensor(uint8)"
    return session.run(None, {"frames": frame})


def _run_openvino(path, frame):
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({"frames": frame})
    return [result[compiled.output(i)] for i in range(4)]


@pytest.mark.slow
@pytest.mark.parametrize("runner", [_run_onnxruntime, _run_openvino], ids=["onnxruntime", "openvino"])
def test_onnxruntime_and_openvino_run_the_graph_as_pytorch_does(exported, runner):
    _, path, reference = exported
    out = runner(path, _frame().numpy())
    for name, ours, theirs in zip(("boxes", "labels", "scores", "masks"), reference, out):
        assert ours.shape == theirs.shape, name
    assert np.array_equal(out[1], reference[1])
    assert np.abs(out[0] - reference[0]).max() < 1e-2 and np.abs(out[2] - reference[2]).max() < 1e-5
    assert np.abs(out[3] - reference[3]).max() < 1e-4


def test_a_network_that_would_resize_the_frame_is_refused():
    with pytest.raises(BadInputError, match="resizes 120x160 frames"):
        DeployMaskRCNN(_network(size=(240, 320)), SIZE)


@pytest.mark.slow
def test_no_count_of_the_export_frame_is_frozen_into_the_graph(exported):
    """Proposals and detections vary by frame: a Split by the export frame's counts (which a Python split
    traces into) breaks on any frame with other counts, as a trained network's frames have."""
    import onnx

    from onnx import numpy_helper

    _, path, _ = exported
    graph = onnx.load(str(path)).graph
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"
                 and n.attribute and n.attribute[0].name == "value"}
    frozen = [(n.name, constants[n.input[1]].tolist()) for n in graph.node if n.op_type == "Split"
              and len(n.input) > 1 and n.input[1] in constants and (constants[n.input[1]] > 1).any()]
    assert frozen == []  # only unit splits (an axis of one image) remain
