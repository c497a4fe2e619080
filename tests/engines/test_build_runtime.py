"""edgeseg build -> engine directory -> runtime.load -> infer, on the backends this machine has."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeseg import backends
from edgeseg.build.orchestrator import HOST_TAIL_BACKENDS, BuildRequest, build_engine
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
    build_engine(BuildRequest(checkpoint=str(checkpoint), backend="torch", out=str(out)))
    return out


def _frames(n=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *SIZE, 3), dtype=np.uint8)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_load_infer_matches_the_torch_reference(backend, precision, checkpoint, reference, tmp_path):
    request = BuildRequest(checkpoint=str(checkpoint), backend=backend, precision=precision, out=str(tmp_path / "e"))
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


@pytest.mark.skipif("openvino" not in CPU_BACKENDS, reason="openvino is not installed")
def test_openvino_fp32_runs_true_f32_and_second_load_uses_the_cache(checkpoint, tmp_path):
    result = build_engine(BuildRequest(checkpoint=str(checkpoint), backend="openvino", out=str(tmp_path / "e")))
    assert result.manifest.precision == {"requested": "fp32", "as_run": "fp32", "note": ""}
    with load(result.path, LoadOptions(cache_dir=str(tmp_path / "cache"))) as session:
        session.infer(_frames())
    assert any((tmp_path / "cache").iterdir())  # compiled blob written for the next load


@pytest.mark.skipif("onnxruntime" not in CPU_BACKENDS, reason="onnxruntime is not installed")
def test_onnxruntime_sessions_take_the_threads_asked_and_do_not_spin(checkpoint, tmp_path):
    """Spinning workers of one session starve the host tail, the stream's threads and other sessions."""
    result = build_engine(BuildRequest(checkpoint=str(checkpoint), backend="onnxruntime", out=str(tmp_path / "e")))
    with load(result.path, LoadOptions(threads=2)) as session:
        described = session.describe()
    assert described["threads"] == 2 and described["spinning"] is False
    with load(result.path, LoadOptions(spin=True)) as session:  # opt-in, for one engine alone on its cores
        assert session.describe()["spinning"] is True


def test_build_refuses_without_checkpoint_and_stamps_random_weights(tmp_path):
    with pytest.raises(EdgesegError, match="no --checkpoint") as err:
        build_engine(BuildRequest(model="lraspp", backend="onnxruntime", input_size=SIZE, out=str(tmp_path / "a")))
    assert "--random-weights" in err.value.fix
    result = build_engine(BuildRequest(model="fastscnn", random_weights=True, backend="onnxruntime",
                                       input_size=SIZE, out=str(tmp_path / "b")))
    assert result.manifest.random_weights and "RANDOM WEIGHTS" in result.summary()
    with load(result.path) as session:
        assert session.describe()["random_weights"] is True


def test_build_refuses_overwrite_and_a_checkpoint_for_another_model(checkpoint, tmp_path):
    out = tmp_path / "e"
    build_engine(BuildRequest(checkpoint=str(checkpoint), backend="onnxruntime", out=str(out)))
    stamp = (out / "manifest.json").read_text()
    with pytest.raises(EdgesegError, match="already exists"):
        build_engine(BuildRequest(checkpoint=str(checkpoint), backend="onnxruntime", out=str(out)))
    assert (out / "manifest.json").read_text() == stamp
    build_engine(BuildRequest(checkpoint=str(checkpoint), backend="onnxruntime", out=str(out), force=True))
    assert read_manifest(out).created >= read_manifest(tmp_path / "e").created
    with pytest.raises(CheckpointError, match="holds a 'lraspp', not a 'pspnet'"):
        build_engine(BuildRequest(checkpoint=str(checkpoint), model="pspnet", backend="onnxruntime",
                                  out=str(tmp_path / "f")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no staging directories left


def test_load_verifies_hashes_and_schema(checkpoint, tmp_path):
    out = tmp_path / "e"
    build_engine(BuildRequest(checkpoint=str(checkpoint), backend="onnxruntime", out=str(out)))
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
    build_engine(BuildRequest(checkpoint=str(checkpoint), backend="onnxruntime", out=str(out)))
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


def test_runtime_imports_no_torch():
    code = ("import sys, edgeseg.runtime, edgeseg.backends.onnxruntime, edgeseg.backends.openvino, "
            "edgeseg.backends.tensorrt, edgeseg.measure.bench; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
