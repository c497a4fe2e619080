"""edgeseg build -> engine directory -> runtime.load -> infer, on the backends this machine has."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg import backends
from edgeseg.build.orchestrator import HOST_TAIL_BACKENDS, BuildRequest, Destination, Graph, Source, build_engine
from edgeseg.errors import BadInputError, CheckpointError, EdgesegError
from edgeseg.manifest import ManifestError, read_manifest
from edgeseg.models import build
from edgeseg.runtime import load, resize_to_input
from edgeseg.runtime.session import LoadOptions
from edgeseg.train.checkpoint import save

SIZE = (64, 96)
CPU_BACKENDS = [b for b in ("onnxruntime", "openvino", "torch") if backends.availability(b).ok]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build("lraspp", 11)
    path = tmp_path_factory.mktemp("ckpt") / "lraspp.pt"
    from edgeseg.data.synthetic import SYNTHETIC_INFO

    save(path, model, {"dataset": SYNTHETIC_INFO.to_dict(), "train_crop": list(SIZE)})
    return path


@pytest.fixture(scope="module")
def reference(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("engines") / "ref"
    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="torch",
                              destination=Destination(out=str(out))))
    return out


def _frames(n=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *SIZE, 3), dtype=np.uint8)


@pytest.mark.slow  # a build per backend and precision, and the torch reference (15-31 s each)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_load_infer_matches_the_torch_reference(backend, precision, checkpoint, reference, tmp_path):
    request = BuildRequest(Source(checkpoint=str(checkpoint)), backend=backend, precision=precision,
                           destination=Destination(out=str(tmp_path / "e")))
    if precision == "fp16" and backend != "openvino":
        with pytest.raises(BadInputError, match="fp32"):
            build_engine(request)
        assert not (tmp_path / "e").exists()  # nothing half-built is left
        return
    result = build_engine(request)
    m = result.manifest
    assert m.backend["name"] == backend and m.precision["requested"] == precision
    # CPU backends end the graph at the low-resolution logits; the session upsamples and argmaxes
    tail = "lowres-logits" if backend in HOST_TAIL_BACKENDS else "labels"
    assert m.input.shape == (1, *SIZE, 3) and m.input.dtype == "uint8" and m.output.kind == tail
    assert set(m.files) >= {"model.onnx", m.backend["engine"]} and len(m.classes) == 11
    assert m.model["checkpoint"]["sha256"] and not m.random_weights
    frames = _frames()
    with load(result.path) as session, load(reference) as ref:
        labels = session.infer(frames)
        assert labels.shape == (1, *SIZE) and labels.dtype == np.uint8
        agreement = (labels == ref.infer(frames)).mean()
        described = session.describe()
    if precision == "fp32":
        assert agreement >= 0.999 and described["precision_as_run"] == "fp32"
    else:  # FP16 IR on a CPU: the manifest says what ran (bf16 on AVX512-BF16, f32 elsewhere)
        assert described["precision_as_run"] == m.precision["as_run"] and agreement >= 0.9


ASKED_SIZE = (64, 128)  # not the checkpoint's training crop: the request's size must win


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _graph_io(value_info) -> tuple[str, tuple[int, ...], str]:
    """(name, shape, numpy dtype name) of an ONNX graph input or output, read with the onnx package."""
    import onnx

    tensor = value_info.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return value_info.name, tuple(d.dim_value for d in tensor.shape.dim), dtype


# onnxruntime's build stays in the fast lane; each other backend adds a build (5-25 s)
@pytest.mark.parametrize("backend", [b if b == "onnxruntime" else pytest.param(b, marks=pytest.mark.slow)
                                     for b in CPU_BACKENDS])
def test_manifest_on_disk_says_what_was_asked_and_what_was_built(backend, checkpoint, tmp_path):
    """manifest.json, read back raw, against independent sources: the request, the ONNX graph in the
    directory, the checkpoint the engine came from, the files' own sha256, and the runtime's view."""
    import onnx

    out = tmp_path / "engine"
    result = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend=backend, precision="fp32",
                                       graph=Graph(input_size=ASKED_SIZE), destination=Destination(out=str(out))))
    written = json.loads((out / "manifest.json").read_text())
    assert written["schema_version"] == 1 and written["name"] == "engine"
    assert read_manifest(out) == result.manifest  # what build_engine returned is what it wrote

    # the input and output, as the exported graph declares them (the graph ends at the low-resolution
    # logits where the session finishes on the host, else at the class ids)
    exported = onnx.load(str(out / "model.onnx"))
    graph = exported.graph
    in_name, in_shape, in_dtype = _graph_io(graph.input[0])
    out_name, out_shape, out_dtype = _graph_io(graph.output[0])
    assert in_shape == (1, *ASKED_SIZE, 3) and in_dtype == "uint8"  # fused preprocessing: uint8 NHWC frames
    described = {key: written["input"][key] for key in ("name", "shape", "dtype", "layout", "color", "preprocess")}
    assert described == {"name": in_name, "shape": list(in_shape), "dtype": in_dtype, "layout": "NHWC",
                         "color": "BGR", "preprocess": "fused"}
    kind = "lowres-logits" if backend in HOST_TAIL_BACKENDS else "labels"
    assert written["output"] == {"name": out_name, "kind": kind, "dtype": out_dtype, "shape": list(out_shape)}
    if kind == "labels":
        assert out_shape == (1, *ASKED_SIZE)
    else:
        assert out_dtype == "float32" and out_shape[:2] == (1, 11) and out_shape[2] < ASKED_SIZE[0]

    # the network, its labels and normalization: the checkpoint's, read with torch directly
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    dataset = payload["metadata"]["dataset"]
    recorded = written["model"]["checkpoint"]
    assert written["model"] == {"name": payload["model"], "options": payload["options"],
                                "num_classes": payload["num_classes"], "checkpoint": recorded}
    assert Path(recorded["path"]).is_absolute() and Path(recorded["path"]).resolve() == checkpoint.resolve()
    assert recorded["sha256"] == _sha256(checkpoint)
    assert written["classes"] == list(dataset["classes"]) and len(written["classes"]) == 11
    assert written["palette"] == [list(c) for c in dataset["palette"]]
    assert written["ignore_index"] == dataset["ignore_index"]
    assert written["input"]["mean"] == list(dataset["mean"]) and written["input"]["std"] == list(dataset["std"])
    assert written["random_weights"] is False

    # every file in the directory is named with its own sha256, and nothing named is missing
    on_disk = {p.name for p in out.iterdir() if p.name != "manifest.json"}
    assert set(written["files"]) == on_disk and "model.onnx" in on_disk
    assert written["files"] == {name: _sha256(out / name) for name in on_disk}

    # the backend asked for, its library's version, its engine file; the precision asked for and as run
    library = {"onnxruntime": lambda: __import__("onnxruntime").__version__,
               "openvino": lambda: __import__("openvino").get_version().split("-")[0],
               "torch": lambda: torch.__version__}[backend]()
    engine = {"onnxruntime": "model.onnx", "openvino": "model.xml", "torch": "model.pt"}[backend]
    assert written["backend"]["name"] == backend and written["backend"]["version"] == library
    assert written["backend"]["engine"] == engine and engine in written["files"]
    if backend == "openvino":
        assert "model.bin" in written["files"]
    if backend == "torch":  # the reference's engine is the checkpoint itself
        assert written["files"]["model.pt"] == _sha256(checkpoint)
    assert written["precision"]["requested"] == "fp32" and written["precision"]["as_run"] == "fp32"
    assert written["onnx"]["file"] == "model.onnx"
    assert written["onnx"]["opset"] == next(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx"))
    with load(out) as session:  # what the runtime finds when it opens the engine
        assert session.describe()["precision_as_run"] == written["precision"]["as_run"]
        assert session.manifest.input.size == ASKED_SIZE
        assert session.infer(np.zeros((1, *ASKED_SIZE, 3), np.uint8)).shape == (1, *ASKED_SIZE)


@pytest.mark.slow  # an OpenVINO build (31 s)
@pytest.mark.skipif("openvino" not in CPU_BACKENDS, reason="openvino is not installed")
def test_openvino_fp32_runs_true_f32_and_second_load_uses_the_cache(checkpoint, tmp_path):
    result = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="openvino",
                                       destination=Destination(out=str(tmp_path / "e"))))
    assert result.manifest.precision == {"requested": "fp32", "as_run": "fp32", "note": ""}
    with load(result.path, LoadOptions(cache_dir=str(tmp_path / "cache"))) as session:
        session.infer(_frames())
    assert any((tmp_path / "cache").iterdir())  # compiled blob written for the next load


@pytest.mark.slow  # a build (17 s)
@pytest.mark.skipif("onnxruntime" not in CPU_BACKENDS, reason="onnxruntime is not installed")
def test_onnxruntime_sessions_take_the_threads_asked_and_do_not_spin(checkpoint, tmp_path):
    """Spinning workers of one session starve the host tail, the stream's threads and other sessions."""
    result = build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="onnxruntime",
                                       destination=Destination(out=str(tmp_path / "e"))))
    with load(result.path, LoadOptions(threads=2)) as session:
        described = session.describe()
    assert described["threads"] == 2 and described["spinning"] is False
    with load(result.path, LoadOptions(spin=True)) as session:  # opt-in, for one engine alone on its cores
        assert session.describe()["spinning"] is True


@pytest.mark.slow  # a build (13 s)
def test_build_refuses_without_checkpoint_and_stamps_random_weights(tmp_path):
    with pytest.raises(EdgesegError, match="no --checkpoint") as err:
        build_engine(BuildRequest(Source(model="lraspp"), backend="onnxruntime", graph=Graph(input_size=SIZE),
                                  destination=Destination(out=str(tmp_path / "a"))))
    assert "--random-weights" in err.value.fix
    result = build_engine(BuildRequest(Source(model="fastscnn", random_weights=True), backend="onnxruntime",
                                       graph=Graph(input_size=SIZE), destination=Destination(out=str(tmp_path / "b"))))
    assert result.manifest.random_weights and "RANDOM WEIGHTS" in result.summary()
    with load(result.path) as session:
        assert session.describe()["random_weights"] is True


@pytest.mark.slow  # two builds (31 s)
def test_build_refuses_overwrite_and_a_checkpoint_for_another_model(checkpoint, tmp_path):
    out = tmp_path / "e"
    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="onnxruntime",
                              destination=Destination(out=str(out))))
    stamp = (out / "manifest.json").read_text()
    first_directory = out.stat().st_ino
    with pytest.raises(EdgesegError, match="already exists"):
        build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="onnxruntime",
                                  destination=Destination(out=str(out))))
    assert (out / "manifest.json").read_text() == stamp
    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="onnxruntime",
                              destination=Destination(out=str(out), force=True)))
    # --force published a new directory in place of the first one, with a manifest of its own
    assert out.stat().st_ino != first_directory
    assert read_manifest(out).created >= json.loads(stamp)["created"]
    with pytest.raises(CheckpointError, match="holds a 'lraspp', not a 'pspnet'"):
        build_engine(BuildRequest(Source(checkpoint=str(checkpoint), model="pspnet"), backend="onnxruntime",
                                  destination=Destination(out=str(tmp_path / "f"))))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no staging directories left


def test_load_verifies_hashes_and_schema(checkpoint, tmp_path):
    out = tmp_path / "e"
    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="onnxruntime",
                              destination=Destination(out=str(out))))
    onnx_file = out / "model.onnx"
    data = onnx_file.read_bytes()
    onnx_file.write_bytes(data[: len(data) // 2])  # truncated in transit
    with pytest.raises(ManifestError, match="changed since it was built"):
        load(out)
    onnx_file.write_bytes(data)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ManifestError, match="schema_version 99"):
        load(out)
    with pytest.raises(ManifestError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_session_names_wrong_frames(checkpoint, tmp_path):
    out = tmp_path / "e"
    build_engine(BuildRequest(Source(checkpoint=str(checkpoint)), backend="onnxruntime",
                              destination=Destination(out=str(out))))
    with load(out) as session:
        with pytest.raises(BadInputError, match="dtype float32"):
            session.infer(_frames().astype(np.float32))
        with pytest.raises(BadInputError, match=r"resize_to_input"):
            session.infer(np.zeros((1, 32, 32, 3), np.uint8))
        with pytest.raises(BadInputError, match="batch 1"):
            session.infer(_frames(2))
        frame = np.zeros((360, 480, 3), np.uint8)
        assert session.infer(resize_to_input(frame, session.manifest.input.size)).shape == (1, *SIZE)


def test_auto_backend_picks_the_best_usable_one():
    chosen, why = backends.resolve("auto")
    assert chosen in ("tensorrt", "openvino", "onnxruntime") and backends.availability(chosen).ok and why
    if not backends.availability("tensorrt").ok:
        assert chosen != "tensorrt" and "tensorrt" in why
