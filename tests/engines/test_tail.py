"""The host tail (upsample + argmax of low-resolution logits) and the graph rewrites that make
INT8 pay on CPUs: the tail cut and the preprocessing folded into the first convolution."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeseg.build.calibration import open_calibration
from edgeseg.build.export import ExportOptions, export_onnx
from edgeseg.build.graph_rewrite import GREY, cut_upsample_tail, fold_preprocess
from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine
from edgeseg.build.qdq_rewrite import blocks_into_first_conv, share_concat_scales, widest_int8_weight
from edgeseg.build.quantize import qdq_from_onnx
from edgeseg.errors import BadInputError
from edgeseg.models import build
from edgeseg.runtime import load
from edgeseg.runtime.cpu import SATURATION_FREE_WEIGHT, VNNI_FLAGS, cpu_flags
from edgeseg.runtime.tail import first_argmax, upsample_argmax

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _torch_labels(logits: np.ndarray, size) -> np.ndarray:
    up = nn.functional.interpolate(torch.from_numpy(logits), size=size, mode="bilinear", align_corners=False)
    return up.argmax(1).numpy()


def _smooth_logits(rng, n, c, h, w, noise):
    """Class fields that vary slowly, as a trained network's do, plus per-pixel noise."""
    coarse = torch.from_numpy(rng.standard_normal((n, c, max(h // 6, 2), max(w // 6, 2))).astype(np.float32))
    smooth = nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).numpy() * 3
    return (smooth + noise * rng.standard_normal((n, c, h, w))).astype(np.float32)


@pytest.mark.parametrize("c,h,w,size,noise", [
    (11, 45, 60, (360, 480), 0.0),  # Fast-SCNN at 360x480: x8, the boundary-cell path
    (11, 90, 120, (360, 480), 0.3),  # DeepLabV3+ decoder: x4
    (19, 12, 15, (384, 480), 1.0),  # x32 x32, noisy
    (21, 16, 16, (32, 32), 5.0),  # x2, mostly noise: nearly every cell mixed
    (11, 23, 30, (360, 480), 0.2),  # not an integer factor: every pixel through OpenCV
    (5, 7, 9, (21, 27), 0.5),  # odd factor x3: every pixel
    (1, 8, 8, (64, 64), 0.0),  # one class
])
def test_host_tail_gives_the_labels_of_bilinear_upsampling_then_argmax(c, h, w, size, noise):
    rng = np.random.default_rng(c * 100 + h)
    logits = _smooth_logits(rng, 2, c, h, w, noise)
    ours = upsample_argmax(logits, size)
    assert ours.shape == (2, *size) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, _torch_labels(logits, size))


def test_host_tail_keeps_the_first_class_on_ties():
    logits = np.zeros((1, 4, 6, 8), np.float32)
    logits[0, 1:3, :, 4:] = 1.0  # classes 1 and 2 tied on the right half
    ours = upsample_argmax(logits, (48, 64))
    np.testing.assert_array_equal(ours, _torch_labels(logits, (48, 64)))
    assert set(np.unique(ours)) == {0, 1}


def test_first_argmax_is_numpys_argmax_with_ties():
    scores = np.random.default_rng(0).integers(0, 4, (11, 37, 53)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(first_argmax(scores), scores.argmax(0))
    assert first_argmax(np.random.default_rng(1).standard_normal((300, 5))).dtype == np.int32  # > 256 classes


def _fastscnn():
    torch.manual_seed(0)
    return build("fastscnn", 11).eval()


@pytest.mark.slow  # exports (12 s)
def test_tail_cut_ends_the_graph_at_the_logits(tmp_path):
    result = export_onnx(_fastscnn(), tmp_path / "m.onnx", 11, MEAN, STD,
                         ExportOptions((64, 96), host_tail=True))
    assert result.output_kind == "lowres-logits" and result.output_shape == [1, 11, 8, 12]
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert not {n.op_type for n in graph.node} & {"ArgMax"} and graph.output[0].name == "logits"
    full = export_onnx(_fastscnn(), tmp_path / "full.onnx", 11, MEAN, STD, ExportOptions((64, 96)))
    assert full.output_kind == "labels"
    frames = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"frames": frames})[0]
    np.testing.assert_array_equal(upsample_argmax(run(tmp_path / "m.onnx"), (64, 96)), run(tmp_path / "full.onnx"))


class _FullResolution(nn.Module):
    """A network with no upsampling at its end (as U-Net): there is no tail to move."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_graphs_without_a_bilinear_tail_keep_their_argmax(tmp_path):
    result = export_onnx(_FullResolution().eval(), tmp_path / "m.onnx", 4, MEAN, STD, ExportOptions((32, 32), host_tail=True))
    assert result.output_kind == "labels" and any("argmax stays" in note for note in result.warnings)
    assert cut_upsample_tail(onnx.load(str(tmp_path / "m.onnx"))) is None


def test_folded_preprocessing_is_exact_inside_and_pads_with_grey(tmp_path):
    torch.manual_seed(0)
    export_onnx(_FullResolution().eval(), tmp_path / "m.onnx", 4, MEAN, STD, ExportOptions((32, 48), fuse_argmax=False))
    model = onnx.load(str(tmp_path / "m.onnx"))
    folded = fold_preprocess(model)
    assert folded is not None and folded.zero_point == GREY
    assert {n.op_type for n in model.graph.node} == {"Transpose", "Cast", "Sub", "Conv"}  # no flip, no Mul
    frames = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    run = lambda m, x: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"frames": x})[0]
    original, rewritten = run(onnx.load(str(tmp_path / "m.onnx")), frames), run(model, frames)
    np.testing.assert_allclose(rewritten[..., 1:-1, 1:-1], original[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-4)
    # at the border the rewritten graph pads with the grey frame value, as if the frame had a grey frame
    bordered = np.pad(frames, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=GREY)
    export_onnx(_unpadded(), tmp_path / "valid.onnx", 4, MEAN, STD, ExportOptions((34, 50), fuse_argmax=False))
    np.testing.assert_allclose(rewritten, run(onnx.load(str(tmp_path / "valid.onnx")), bordered), rtol=1e-4, atol=1e-4)


def _unpadded() -> nn.Module:
    """The same convolution without padding, for frames that carry their own border."""
    torch.manual_seed(0)
    padded = _FullResolution()
    plain = _FullResolution()
    plain.conv = nn.Conv2d(3, 4, 3, padding=0)
    plain.conv.load_state_dict(padded.conv.state_dict())
    return plain.eval()


def test_u8_qdq_graph_reads_the_frame_directly(tmp_path, camvid_root):
    export_onnx(build("fastscnn", 11).eval(), tmp_path / "m.onnx", 11, MEAN, STD, ExportOptions((64, 96), host_tail=True))
    calib = open_calibration(f"camvid:{camvid_root}:train", (64, 96), count=2, progress=False)
    result = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", calib, "minmax", activations="u8",
                           cache_root=tmp_path / "cache")
    assert result.folded_input["frame_feeds_int8_directly"] and result.folded_input["zero_point"] == GREY
    assert result.folded_input["first_conv_on_2x2_blocks"]
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    transpose = next(n for n in graph.node if n.input and n.input[0] == "frame_blocks")
    assert transpose.op_type == "Transpose"
    readers = [n for n in graph.node if transpose.output[0] in n.input]
    assert [n.op_type for n in readers] == ["DequantizeLinear"]  # the uint8 frame, dequantized at scale 1
    assert not {"node_flip", "node_mul", "node_sub", "node__to_copy"} & {n.name for n in graph.node}
    assert set(result.excluded) == {"node_permute"}  # the rest of the preprocessing is gone
    s8 = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "s8.onnx", calib, "minmax", activations="s8",
                       cache_root=tmp_path / "cache")
    assert s8.folded_input is None  # TensorRT's symmetric graph keeps the exact preprocessing


@pytest.mark.slow  # two builds (13 s)
def test_build_tail_choice(int8_checkpoint, tmp_path):
    engine = build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="onnxruntime",
                                       graph=Graph(tail="engine"),
                                       destination=Destination(out=str(tmp_path / "e"))))
    host = build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="onnxruntime",
                                     destination=Destination(out=str(tmp_path / "h"))))
    assert engine.manifest.output.kind == "labels" and host.manifest.output.kind == "lowres-logits"
    frames = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    with load(engine.path) as a, load(host.path) as b:
        np.testing.assert_array_equal(a.infer(frames), b.infer(frames))
        assert b.infer_raw(frames).shape == (1, 11, 8, 12)
    with pytest.raises(BadInputError, match="torch backend"):
        build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="torch", graph=Graph(tail="host"),
                                  destination=Destination(out=str(tmp_path / "t"))))
    with pytest.raises(BadInputError, match="unknown tail"):
        build_engine(BuildRequest(Source(checkpoint=str(int8_checkpoint)), backend="onnxruntime",
                                  graph=Graph(tail="gpu"),
                                  destination=Destination(out=str(tmp_path / "x"))))


def _concat_graph(zero_points=(0, 0, 0)) -> onnx.ModelProto:
    """x -> Q/DQ at 0.01 -> a; 10x -> Q/DQ at 0.1 -> b; concat(a, b) -> Q/DQ at 0.1: a Q/DQ concat as
    ONNX Runtime's quantizer writes it, with inputs at different scales."""
    h = onnx.helper
    inits = [onnx.numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("sa", 0.01), ("sb", 0.1), ("sc", 0.1), ("ten", 10.0))]
    inits += [onnx.numpy_helper.from_array(np.array(z, np.uint8), n) for n, z in zip(("za", "zb", "zc"), zero_points)]
    nodes = [h.make_node("QuantizeLinear", ["x", "sa", "za"], ["qa"]), h.make_node("DequantizeLinear", ["qa", "sa", "za"], ["a"]),
             h.make_node("Mul", ["x", "ten"], ["x10"]),
             h.make_node("QuantizeLinear", ["x10", "sb", "zb"], ["qb"]), h.make_node("DequantizeLinear", ["qb", "sb", "zb"], ["b"]),
             h.make_node("Concat", ["a", "b"], ["c"], axis=1, name="cat"),
             h.make_node("QuantizeLinear", ["c", "sc", "zc"], ["qc"]), h.make_node("DequantizeLinear", ["qc", "sc", "zc"], ["y"])]
    graph = h.make_graph(nodes, "concat", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 4, 4])], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_concat_inputs_take_the_widest_scale_and_clip_nothing():
    model = _concat_graph()
    x = np.random.default_rng(0).uniform(0, 2.5, (1, 2, 4, 4)).astype(np.float32)
    before = _run(model, x)
    assert share_concat_scales(model) == 1
    scales = {t.name: float(onnx.numpy_helper.to_array(t)) for t in model.graph.initializer if t.name.startswith("s")}
    assert scales == {"sa": pytest.approx(0.1), "sb": pytest.approx(0.1), "sc": pytest.approx(0.1)}
    after = _run(model, x)
    np.testing.assert_array_equal(after[:, 2:], before[:, 2:])  # the widest input is unchanged
    assert np.abs(after[:, :2] - x).max() <= 0.05 + 1e-6  # the narrow one rounds at 0.1 now, unclipped
    assert share_concat_scales(model) == 0  # stable


def test_concat_with_different_zero_points_is_left_alone():
    model = _concat_graph(zero_points=(0, 3, 0))
    assert share_concat_scales(model) == 0
    assert float(onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "sa"))) == pytest.approx(0.01)


def test_concat_of_a_quantized_constant_is_left_alone():
    """Raising the scale of a dequantized constant would change its value, not only its rounding."""
    model = _concat_graph()
    graph = model.graph
    quantize_a = next(n for n in graph.node if n.output[0] == "qa")
    graph.node.remove(quantize_a)
    graph.initializer.append(onnx.numpy_helper.from_array(np.full((1, 2, 4, 4), 100, np.uint8), "qa"))
    assert share_concat_scales(model) == 0


@pytest.mark.slow  # DeepLabV3+ export and INT8 quantization (32 s)
def test_quantized_deeplab_decoder_concat_copies(camvid_root, tmp_path):
    torch.manual_seed(0)
    export_onnx(build("deeplabv3plus", 11).eval(), tmp_path / "m.onnx", 11, MEAN, STD, ExportOptions((64, 96), host_tail=True))
    calib = open_calibration(f"camvid:{camvid_root}:train", (64, 96), count=2, progress=False)
    result = qdq_from_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", calib, "minmax", activations="u8",
                           cache_root=tmp_path / "cache")
    assert result.shared_concats >= 1
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    init = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    for concat in (n for n in graph.node if n.op_type == "Concat"):
        scales = {float(onnx.numpy_helper.to_array(init[producer[i].input[1]])) for i in concat.input}
        assert len(scales) == 1, concat.name


def _first_conv_graph(height: int, width: int, seed: int = 0, widest: int = SATURATION_FREE_WEIGHT) -> onnx.ModelProto:
    """uint8 frame -> Transpose -> DQ(scale 1, zp GREY) -> Conv 3x3/2 (int8 per-channel) -> Q/DQ,
    the start of a folded U8 graph, its int8 weights in [-widest, widest]: [-64, 64] by default, as
    the quantizer writes them for ONNX Runtime (`qdq_from_onnx(..., activations="u8")`)."""
    h, rng = onnx.helper, np.random.default_rng(seed)
    weights = rng.integers(-widest, widest + 1, (8, 3, 3, 3))
    inits = [onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one"), onnx.numpy_helper.from_array(np.array(GREY, np.uint8), "grey"),
             onnx.numpy_helper.from_array(weights.astype(np.int8), "w_q"),
             onnx.numpy_helper.from_array(rng.uniform(1e-3, 1e-2, 8).astype(np.float32), "w_s"),
             onnx.numpy_helper.from_array(np.zeros(8, np.int8), "w_z"),
             onnx.numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
             onnx.numpy_helper.from_array(np.array(0.05, np.float32), "y_s"), onnx.numpy_helper.from_array(np.array(128, np.uint8), "y_z")]
    nodes = [h.make_node("Transpose", ["frames"], ["nchw"], perm=[0, 3, 1, 2]),
             h.make_node("DequantizeLinear", ["nchw", "one", "grey"], ["x"]),
             h.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
             h.make_node("Conv", ["x", "w", "b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             h.make_node("QuantizeLinear", ["conv", "y_s", "y_z"], ["y_q"]), h.make_node("DequantizeLinear", ["y_q", "y_s", "y_z"], ["y"])]
    graph = h.make_graph(nodes, "first_conv", [h.make_tensor_value_info("frames", onnx.TensorProto.UINT8, [1, height, width, 3])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


_VNNI = bool((cpu_flags() or frozenset()) & set(VNNI_FLAGS))


@pytest.mark.parametrize("height,width,widest", [
    (6, 8, SATURATION_FREE_WEIGHT), (360, 480, SATURATION_FREE_WEIGHT),
    # full-range weights are exact only where VNNI adds the products in int32 (AVX-512 VNNI, AVX-VNNI, AMX)
    pytest.param(360, 480, 127, marks=pytest.mark.skipif(not _VNNI, reason="full-range U8S8 saturates without VNNI")),
])
def test_first_conv_on_2x2_blocks_is_bit_identical(height, width, widest):
    """Bit-identical on every x86 CPU, by construction: ONNX Runtime's U8S8 kernels sum the same
    products in a different order (27 taps vs 48 with zeros), and integer sums do not depend on the
    order as long as nothing saturates. Without VNNI (AVX2, AVX-512 BW) vpmaddubsw adds products in
    pairs into a saturating int16: with weights within 64, a pair is at most 2*255*64 = 32640 < 32767,
    whatever pairs each layout forms; with full-range weights the two layouts clip different pairs
    (+6.35 became -5.70 on an AMD EPYC). VNNI and AMX add into int32 and are exact either way."""
    model = _first_conv_graph(height, width, widest=widest)
    frames = np.random.default_rng(1).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"frames": frames})[0]
    before = run(model)
    assert blocks_into_first_conv(model)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w_q")).shape == (8, 12, 2, 2)
    assert [list(a.ints) for a in conv.attribute if a.name in ("kernel_shape", "strides")] == [[2, 2], [1, 1]]
    assert widest_int8_weight(model) == widest  # the blocks rearrange the weights and add zeros: never wider
    np.testing.assert_array_equal(run(model), before)  # same int32 sums, edges padded with grey as before


def test_first_conv_blocks_need_symmetric_weights():
    model = _first_conv_graph(6, 8)
    zero = next(t for t in model.graph.initializer if t.name == "w_z")
    zero.CopyFrom(onnx.numpy_helper.from_array(np.full(8, 5, np.int8), "w_z"))  # the zero taps would read -5
    assert not blocks_into_first_conv(model)


def test_first_conv_blocks_need_an_even_frame():
    model = _first_conv_graph(7, 8)
    assert not blocks_into_first_conv(model)
    assert onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w_q")).shape == (8, 3, 3, 3)

