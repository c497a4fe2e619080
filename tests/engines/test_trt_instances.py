"""TensorRT instance (Mask R-CNN) engines: several outputs, the detections' count decided by the frame.

Two halves. The first runs everywhere: the output-allocator logic (outputs.py) over a fake CUDA device,
the session's buffers and copies (session.py) over a fake `tensorrt` module that behaves as NVIDIA
documents (data-dependent outputs report -1 until the run, get memory from the IOutputAllocator and their
shape through notify_shape), and the refusal of implicit INT8 for graphs whose heads stay float. The
second builds real engines from a small seeded Mask R-CNN and compares them with ONNX Runtime; it needs
TensorRT and an NVIDIA GPU, which these machines lack, so it skips here with the reason."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from edgeseg import backends
from edgeseg.backends.tensorrt import cuda as trt_cuda
from edgeseg.backends.tensorrt import int8 as trt_int8
from edgeseg.backends.tensorrt import session as trt_session
from edgeseg.backends.tensorrt.outputs import MIN_BYTES, DynamicOutputs, data_dependent, ordered_outputs
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.manifest import OutputSpec
from edgeseg.runtime.session import LoadOptions
from trt_instances_fakes import FakeCuda, FakeEngine, detections, fake_manifest, fake_tensorrt_module

STATUS = backends.availability("tensorrt")
needs_tensorrt = pytest.mark.skipif(not STATUS.ok, reason=f"TensorRT cannot run here: {STATUS.reason}")
INSTANCE_NAMES = "boxes,labels,scores,masks"


# -- outputs.py: which outputs need an allocator, their order, the allocator's buffers ------------------------
def test_outputs_with_a_dimension_left_open_need_an_allocator():
    shapes = {"boxes": (-1, 4), "labels": (-1,), "scores": (-1,), "masks": (-1, 28, 28), "logits": (1, 8, 60, 80)}
    assert data_dependent(shapes) == ["boxes", "labels", "scores", "masks"]
    assert data_dependent({"labels": (2, 64, 96)}) == []  # a semantic engine: every buffer fixed


def test_outputs_come_in_the_graphs_order_not_tensorrts():
    engine = ["scores", "masks", "boxes", "labels"]
    assert ordered_outputs(engine, INSTANCE_NAMES, instances=True) == ["boxes", "labels", "scores", "masks"]
    assert ordered_outputs(["out"], "labels", instances=False) == ["out"]  # a renamed semantic output: TensorRT's
    with pytest.raises(EdgesegError, match="manifest names") as err:
        ordered_outputs(["boxes", "scores"], INSTANCE_NAMES, instances=True)
    assert "rebuild" in err.value.fix


def test_buffers_grow_when_a_frame_needs_more_and_are_reused_otherwise():
    cuda = FakeCuda()
    outputs = DynamicOutputs(cuda)
    first = outputs.reallocate("masks", 3 * 28 * 28 * 4)
    assert first and cuda.mallocs == [3 * 28 * 28 * 4]
    assert outputs.reallocate("scores", 12) and cuda.mallocs[-1] == MIN_BYTES  # small outputs: one page-sized buffer
    assert outputs.reallocate("masks", 100) == first and len(cuda.mallocs) == 2  # fits: the same memory
    grown = outputs.reallocate("masks", 20 * 28 * 28 * 4)
    assert grown != first and cuda.freed == [first] and cuda.pinned_freed == 1
    assert cuda.mallocs[-1] >= 20 * 28 * 28 * 4 and cuda.mallocs[-1] >= 2 * cuda.mallocs[0]  # doubles at least
    outputs.close()
    assert cuda.memory == {} and cuda.pinned_freed == 3


def test_results_are_the_reported_shape_and_type_and_outlive_the_next_run():
    cuda = FakeCuda()
    outputs = DynamicOutputs(cuda)
    outputs.begin()
    pointer = outputs.reallocate("labels", 3 * 8)
    cuda.write(pointer, np.array([3, 1, 2], np.int64))
    outputs.notify("labels", (3,))
    outputs.copy_to_host("labels", np.dtype(np.int64))
    labels = outputs.result("labels", np.dtype(np.int64))
    assert labels.dtype == np.int64 and labels.tolist() == [3, 1, 2]
    outputs.begin()
    cuda.write(outputs.reallocate("labels", 8), np.array([7], np.int64))
    outputs.notify("labels", (1,))
    outputs.copy_to_host("labels", np.dtype(np.int64))
    assert outputs.result("labels", np.dtype(np.int64)).tolist() == [7] and labels.tolist() == [3, 1, 2]


def test_no_detections_give_empty_arrays_of_the_right_shape():
    outputs = DynamicOutputs(FakeCuda())
    outputs.begin()
    outputs.reallocate("boxes", 0)
    outputs.notify("boxes", (0, 4))
    outputs.copy_to_host("boxes", np.dtype(np.float32))
    boxes = outputs.result("boxes", np.dtype(np.float32))
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32


def test_a_shape_tensorrt_did_not_report_is_an_error_not_stale_data():
    outputs = DynamicOutputs(FakeCuda())
    outputs.reallocate("scores", 16)
    outputs.notify("scores", (4,))
    outputs.begin()  # the next run reports nothing
    with pytest.raises(EdgesegError, match="did not report the shape of output scores"):
        outputs.copy_to_host("scores", np.dtype(np.float32))


def test_an_allocation_that_fails_inside_the_callback_is_raised_after_the_run():
    cuda = FakeCuda(limit=1000)
    outputs = DynamicOutputs(cuda)
    outputs.begin()
    assert outputs.reallocate("masks", 10_000) == 0  # what TensorRT's binding gets: no memory
    with pytest.raises(EdgesegError, match="out of memory") as err:
        outputs.check()
    assert "nvidia-smi" in err.value.fix


def test_device_memory_is_given_back_when_the_pinned_twin_cannot_be_had():
    cuda = FakeCuda()
    cuda.pinned = lambda shape, dtype: (_ for _ in ()).throw(EdgesegError("CUDA call failed: host", "x"))
    outputs = DynamicOutputs(cuda)
    assert outputs.reallocate("boxes", 64) == 0 and cuda.memory == {} and outputs.error is not None


# -- int8.py: implicit INT8 cannot keep an instance network's heads float ----------------------------------
def test_implicit_int8_is_refused_for_graphs_quantized_only_in_part():
    with pytest.raises(BadInputError, match="outside '/backbone/'") as err:
        trt_int8.check_mode("implicit", 10, int8_only="/backbone/")
    assert "--trt-int8 explicit" in err.value.fix
    trt_int8.check_mode("explicit", 10, int8_only="/backbone/")
    trt_int8.check_mode("explicit", 11, int8_only="/backbone/body/")
    trt_int8.check_mode("implicit", 10)  # a semantic graph: as before


# -- session.py over a fake tensorrt -----------------------------------------------------------------------
@pytest.fixture
def fake_tensorrt(monkeypatch, tmp_path):
    """Open a TensorRtSession over a fake engine: (tensors, compute, output spec) -> (session, cuda, trt)."""
    opened = []

    def open_session(tensors, compute, output: OutputSpec, cuda: FakeCuda | None = None):
        cuda = cuda or FakeCuda()
        trt = fake_tensorrt_module(lambda trt: FakeEngine(trt, tensors, compute, cuda))
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(trt_cuda, "open_device", lambda device=0: cuda)
        monkeypatch.setattr(trt_session, "_PLUGINS", {})
        (tmp_path / trt_session.ENGINE_FILE).write_bytes(b"fake plan")
        session = trt_session.TensorRtSession(fake_manifest(output), tmp_path, LoadOptions())
        opened.append(session)
        return session, cuda, trt

    yield open_session
    for session in opened:
        session.close()


# TensorRT lists the outputs in its own order, labels as int32 (the parser casts INT64 where it must)
INSTANCE_TENSORS = {"frames": ("in", np.uint8, (1, 32, 48, 3)), "scores": ("out", np.float32, (-1,)),
                    "masks": ("out", np.float32, (-1, 28, 28)), "boxes": ("out", np.float32, (-1, 4)),
                    "labels": ("out", np.int32, (-1,))}


def test_an_instance_engine_returns_its_four_outputs_in_the_graphs_order(fake_tensorrt):
    session, cuda, trt = fake_tensorrt(INSTANCE_TENSORS, detections,
                                       OutputSpec(INSTANCE_NAMES, "instances", "float32", (None, 28, 28)))
    assert trt.plugins_registered == [""]  # before deserializing: RoiAlign is a plugin
    frame = np.full((1, 32, 48, 3), 3, np.uint8)
    boxes, labels, scores, masks = session._run_all(frame)
    expected = detections(frame)
    assert boxes.shape == (3, 4) and np.array_equal(boxes, expected["boxes"])
    assert labels.dtype == np.int32 and labels.tolist() == [1, 2, 1]  # as TensorRT gives it: the host converts
    assert scores.dtype == np.float32 and np.allclose(scores, [0.9, 0.7, 0.5])
    assert masks.shape == (3, 28, 28) and np.all(masks == np.float32(0.9))
    assert set(session.context.allocators) == {"boxes", "labels", "scores", "masks"}  # none has a fixed buffer
    found = session.detect(frame)
    assert len(found) == 1 and len(found[0]) == 3 and found[0].masks.shape == (3, 32, 48)
    assert found[0].labels.dtype == np.int64 and found[0].masks[0, 10, 10]


def test_the_count_changes_from_frame_to_frame_and_may_be_zero(fake_tensorrt):
    session, cuda, _ = fake_tensorrt(INSTANCE_TENSORS, detections,
                                     OutputSpec(INSTANCE_NAMES, "instances", "float32", (None, 28, 28)))
    counts = []
    for value in (5, 1, 0, 4, 5):
        boxes, labels, scores, masks = session._run_all(np.full((1, 32, 48, 3), value, np.uint8))
        counts.append((len(boxes), len(labels), len(scores), len(masks)))
        assert boxes.shape[1:] == (4,) and masks.shape[1:] == (28, 28)
    assert counts == [(5,) * 4, (1,) * 4, (0,) * 4, (4,) * 4, (5,) * 4]
    assert len(cuda.mallocs) == 1 + 4  # the input's buffer and one per output: five detections fit from the start
    assert session.detect(np.zeros((32, 48, 3), np.uint8))[0].masks.shape == (0, 32, 48)
    session.close()
    assert cuda.memory == {} and cuda.closed


def test_an_output_allocation_that_fails_stops_the_run_with_the_cause(fake_tensorrt):
    session, _, _ = fake_tensorrt(INSTANCE_TENSORS, detections,
                                  OutputSpec(INSTANCE_NAMES, "instances", "float32", (None, 28, 28)),
                                  cuda=FakeCuda(limit=MIN_BYTES * 3))
    session._run_all(np.full((1, 32, 48, 3), 1, np.uint8))  # one detection: every output fits in 4 KiB
    with pytest.raises(EdgesegError, match="allocating an output of the TensorRT engine failed: .*out of memory"):
        session._run_all(np.full((1, 32, 48, 3), 5, np.uint8))  # 5 masks need 15 KiB: past the 12 KiB limit


def test_a_semantic_engine_still_runs_on_fixed_buffers(fake_tensorrt):
    tensors = {"frames": ("in", np.uint8, ("N", 32, 48, 3)), "labels": ("out", np.uint8, ("N", 32, 48))}
    session, cuda, _ = fake_tensorrt(tensors, lambda frames: {"labels": frames[..., 1] % 3},
                                     OutputSpec("labels", "labels", "uint8", (None, 32, 48)))
    frames = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    assert np.array_equal(session.infer(frames), frames[..., 1] % 3)
    assert session.context.allocators == {} and set(session.context.addresses) == {"frames", "labels"}
    batch = np.concatenate([frames, frames[:, ::-1]])
    out = session._run(batch)  # another batch size: buffers made again
    assert out.shape == (2, 32, 48) and np.array_equal(out, batch[..., 1] % 3)
    with pytest.raises(BadInputError, match="labels pixels"):
        session.detect(frames)


def test_plugins_are_registered_once_and_their_absence_is_named(monkeypatch, tmp_path):
    trt = fake_tensorrt_module(lambda trt: None)  # an engine TensorRT cannot deserialize
    monkeypatch.setattr(trt_session, "_PLUGINS", {})
    assert trt_session.init_plugins(trt) and trt_session.init_plugins(trt) and trt.plugins_registered == [""]
    monkeypatch.setattr(trt_session, "_PLUGINS", {})
    trt.init_libnvinfer_plugins = lambda logger, namespace: (_ for _ in ()).throw(OSError("libnvinfer_plugin.so.10"))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_cuda, "open_device", lambda device=0: FakeCuda())
    (tmp_path / trt_session.ENGINE_FILE).write_bytes(b"fake plan")
    output = OutputSpec(INSTANCE_NAMES, "instances", "float32", (None, 28, 28))
    with pytest.raises(EdgesegError, match="cannot deserialize") as err:
        trt_session.TensorRtSession(fake_manifest(output), tmp_path, LoadOptions())
    assert "libnvinfer_plugin" in err.value.fix


# -- real TensorRT: a small seeded Mask R-CNN, built and compared with ONNX Runtime --------------------------
SIZE = (120, 160)


@pytest.fixture(scope="module")
def maskrcnn_onnx(tmp_path_factory):
    from detection_weights import seeded_state_dict

    from edgeseg.models import build
    from edgeseg.models.maskrcnn.deploy import export_maskrcnn

    model = build("maskrcnn", 4, backbone="mobilenetv3_large", min_size=min(SIZE), max_size=max(SIZE),
                  rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=300, detections_per_img=30)
    model.load_state_dict(seeded_state_dict({k: list(v.shape) for k, v in model.state_dict().items()}))
    return export_maskrcnn(model.eval(), tmp_path_factory.mktemp("onnx") / "maskrcnn.onnx", SIZE)


def _frame() -> np.ndarray:
    from detection_weights import seeded_image

    image = seeded_image(*SIZE)
    return (image.permute(1, 2, 0).flip(-1) * 255).round().byte().numpy()[None]  # 1 x H x W x 3 BGR


def _engine(onnx_path, out_dir, precision: str, **spec_fields):
    from edgeseg.backends.tensorrt.build import build
    from edgeseg.build.spec import BackendOptions, BuildSpec

    out_dir.mkdir(parents=True, exist_ok=True)
    spec = BuildSpec(precision=precision, input_shape=(1, *SIZE, 3), input_name="frames",
                     options=BackendOptions(timing_cache=str(out_dir.parent / "timing.cache"), input_size=SIZE),
                     **spec_fields)
    built = build(onnx_path, out_dir, spec)
    output = OutputSpec(INSTANCE_NAMES, "instances", "float32", (None, 28, 28))
    manifest = dataclasses.replace(fake_manifest(output, SIZE),
                                   backend={"name": "tensorrt", "version": built.version, "options": built.options})
    return built, trt_session.load(manifest, out_dir)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def _matched(reference, ours, iou: float = 0.9) -> float:
    """The share of the reference's detections that ours has too: same label, boxes overlapping by `iou`."""
    (rb, rl, _, _), (ob, ol, _, _) = reference, ours
    if len(rb) == 0:
        return 1.0 if len(ob) == 0 else 0.0
    overlap = _iou(rb, ob) * (rl[:, None] == ol[None, :].astype(np.int64)) if len(ob) else np.zeros((len(rb), 1))
    return float((overlap.max(axis=1) >= iou).mean())


def _onnxruntime(path, frame):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"frames": frame})


@needs_tensorrt
@pytest.mark.slow
def test_fp32_instance_engine_gives_onnxruntimes_detections(maskrcnn_onnx, tmp_path):
    frame = _frame()
    reference = _onnxruntime(maskrcnn_onnx, frame)
    built, session = _engine(maskrcnn_onnx, tmp_path / "fp32", "fp32")
    with session:
        out = session._run_all(frame)
        again = session._run_all(np.zeros_like(frame))  # another count, then the first frame again
        repeat = session._run_all(frame)
        found = session.detect(frame)
    assert [o.dtype.kind for o in out] == ["f", "i", "f", "f"] and out[3].shape[1:] == (28, 28)
    assert len(reference[0]) > 0 and abs(len(out[0]) - len(reference[0])) <= max(1, len(reference[0]) // 10)
    assert _matched(reference, out) >= 0.9  # TF32 convolutions may reorder near-equal scores, not change them
    assert all(a.shape[1:] == b.shape[1:] for a, b in zip(out, again))
    assert all(np.array_equal(a, b) for a, b in zip(out, repeat))  # buffers reused, nothing stale
    assert len(found) == 1 and found[0].masks.shape[1:] == SIZE


@needs_tensorrt
@pytest.mark.slow
def test_fp16_instance_engine_builds_and_detects(maskrcnn_onnx, tmp_path):
    frame = _frame()
    _, session = _engine(maskrcnn_onnx, tmp_path / "fp16", "fp16")
    with session:
        boxes, labels, scores, masks = session._run_all(frame)
    assert boxes.shape == (len(labels), 4) and masks.shape == (len(labels), 28, 28)
    assert np.all(np.diff(scores) <= 1e-3) and np.all((scores >= 0) & (scores <= 1))  # highest first
    assert _matched(_onnxruntime(maskrcnn_onnx, frame), [boxes, labels, scores, masks], iou=0.5) >= 0.5


@needs_tensorrt
@pytest.mark.slow
def test_int8_instance_engine_quantizes_the_backbone_only(maskrcnn_onnx, tmp_path):
    from edgeseg.build.calibration import open_calibration

    calib = open_calibration("synthetic:2:train", SIZE, progress=False)
    built, session = _engine(maskrcnn_onnx, tmp_path / "int8", "int8", calibration=calib, calib_method="minmax",
                             int8_only="/backbone/")
    assert built.options["int8_mode"] == "explicit"
    heads = [name for name in built.not_int8 if not name.startswith("/backbone/")]
    assert heads  # the RPN, box and mask heads are reported as left in float
    frame = _frame()
    with session:
        out = session._run_all(frame)
    reference = _onnxruntime(maskrcnn_onnx, frame)
    assert out[3].shape[1:] == (28, 28) and abs(float(out[2][0]) - float(reference[2][0])) < 0.1


@needs_tensorrt
def test_implicit_int8_of_an_instance_graph_is_refused_before_building(maskrcnn_onnx, tmp_path):
    from edgeseg.backends.tensorrt.build import build
    from edgeseg.build.spec import BackendOptions, BuildSpec

    spec = BuildSpec(precision="int8", input_shape=(1, *SIZE, 3), input_name="frames", int8_only="/backbone/",
                     options=BackendOptions(int8_mode="implicit", input_size=SIZE))
    with pytest.raises((BadInputError, EdgesegError), match="implicit|TensorRT 11"):
        build(maskrcnn_onnx, tmp_path, spec)
