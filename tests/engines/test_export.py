"""Every zoo network exports, simplifies, passes the checker and matches PyTorch in ONNX Runtime and
OpenVINO (true f32). Small inputs whose sizes PSPNet's bins do not divide (72x104 -> 9x13 at stride 8)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edgeseg.build.export import DeployModel, ExportOptions, compare, export_onnx, load_onnx, parity, torch_runner
from edgeseg.errors import BadInputError
from edgeseg.models import build, names

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = (72, 104)


def _frames(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _openvino_runner(path):
    ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install 'edgeseg[openvino]')")
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    return lambda x: compiled({0: x})[0]


@pytest.mark.slow  # exports every zoo network (12-65 s each)
@pytest.mark.parametrize("name", names("semantic"))
def test_every_zoo_network_exports_and_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    model = build(name, 11).eval()
    options = ExportOptions(SIZE, fuse_argmax=False)  # logits out, so the numbers can be compared
    result = export_onnx(model, tmp_path / "m.onnx", 11, MEAN, STD, options)
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    assert result.opset >= 17 and result.simplified and result.nodes_simplified <= result.nodes_exported
    assert result.input_shape == [1, *SIZE, 3] and result.input_dtype == "uint8"
    assert result.output_shape == [1, 11, *SIZE]
    reference = torch_runner(DeployModel(model, 11, MEAN, STD, fuse_argmax=False))
    frames = _frames()
    for runner in (lambda x: parity(DeployModel(model, 11, MEAN, STD, fuse_argmax=False), result.path, x),
                   lambda x: compare(reference, _openvino_runner(result.path), x)):
        match = runner(frames)
        assert match.label_agreement >= 0.999, match.line()
        assert match.max_abs_logit_diff is not None and match.max_abs_logit_diff < 1e-2, match.line()


@pytest.mark.slow  # two exports (25 s)
def test_fused_argmax_gives_uint8_labels_and_unfused_preprocess_takes_floats(tmp_path):
    model = build("lraspp", 11).eval()
    labels = export_onnx(model, tmp_path / "labels.onnx", 11, MEAN, STD, ExportOptions(SIZE))
    assert (labels.output_name, labels.output_dtype, labels.output_shape) == ("labels", "uint8", [1, *SIZE])
    match = parity(DeployModel(model, 11, MEAN, STD), labels.path, _frames())
    assert match.label_agreement >= 0.999 and match.max_abs_logit_diff is None
    floats = export_onnx(model, tmp_path / "floats.onnx", 11, MEAN, STD, ExportOptions(SIZE, fuse_preprocess=False))
    assert (floats.input_name, floats.input_dtype, floats.input_shape) == ("images", "float32", [1, 3, *SIZE])
    from edgeseg.runtime.session import normalize

    deploy = DeployModel(model, 11, MEAN, STD, fuse_preprocess=False)
    assert parity(deploy, floats.path, normalize(_frames(), MEAN, STD)).label_agreement >= 0.999


def test_host_normalize_equals_the_fused_preprocess():
    from edgeseg.models.preprocess import Preprocess
    from edgeseg.runtime.session import normalize

    frames = _frames()
    expected = Preprocess(MEAN, STD)(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(normalize(frames, MEAN, STD), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.slow  # dynamic export with both exporters (15-32 s)
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_dynamic_export_runs_at_other_sizes_and_batches(exporter, tmp_path):
    torch.manual_seed(0)
    model = build("pspnet", 11, backbone="resnet50").eval() if exporter == "torchscript" else build("lraspp", 11).eval()
    result = export_onnx(model, tmp_path / "d.onnx", 11, MEAN, STD,
                         ExportOptions((64, 96), dynamic=True, exporter=exporter))
    assert result.exporter == exporter and result.opset == (18 if exporter == "dynamo" else 17)
    assert result.input_shape[0] is None and result.input_shape[1] is None
    deploy = DeployModel(model, 11, MEAN, STD)
    for n, size in ((1, (64, 96)), (2, (80, 120))):
        assert parity(deploy, result.path, _frames(n, size), batch=n).label_agreement >= 0.999


@pytest.mark.slow  # exports (20 s)
def test_export_refuses_bad_sizes_and_never_overwrites(tmp_path):
    model = build("fastscnn", 11).eval()
    with pytest.raises(BadInputError, match="too small"):
        export_onnx(model, tmp_path / "x.onnx", 11, MEAN, STD, ExportOptions((16, 16)))
    export_onnx(model, tmp_path / "x.onnx", 11, MEAN, STD, ExportOptions((64, 64)))
    before = (tmp_path / "x.onnx").read_bytes()
    with pytest.raises(Exception, match="already exists"):
        export_onnx(model, tmp_path / "x.onnx", 11, MEAN, STD, ExportOptions((64, 96)))
    assert (tmp_path / "x.onnx").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.onnx"]  # no partial files left behind


def test_corrupt_or_truncated_onnx_is_named(tmp_path):
    model = build("fastscnn", 11).eval()
    export_onnx(model, tmp_path / "x.onnx", 11, MEAN, STD, ExportOptions((64, 64)))
    data = (tmp_path / "x.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cut.onnx is not a valid ONNX model"):
        load_onnx(tmp_path / "cut.onnx")


@pytest.mark.slow  # export and FP16 conversion (10 s)
def test_fp16_graph_keeps_float32_io(tmp_path):
    from edgeseg.build.export import fp16_onnx

    model = build("lraspp", 11).eval()
    export_onnx(model, tmp_path / "m.onnx", 11, MEAN, STD, ExportOptions((64, 64), fuse_argmax=False))
    fp16_onnx(tmp_path / "m.onnx", tmp_path / "h.onnx")
    half = onnx.load(str(tmp_path / "h.onnx"))
    kinds = {init.data_type for init in half.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
