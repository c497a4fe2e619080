"""What an engine directory must prove before it runs, and what a build must never do to one.

Faults from the bad-input battery, one class per section: the OpenVINO compiled-model cache, the
manifest's hashes, paths and schema, Ctrl+C during a build, two builds to one --out, and the modes
of published files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgeseg import backends
from edgeseg.cli.main import main
from edgeseg.errors import EdgesegError, reraise_interrupt
from edgeseg.io import atomic_path, sha256_file, staged_dir
from edgeseg.manifest import ManifestError, load_manifest
from edgeseg.runtime import LoadOptions, load

SIZE = (64, 96)
HAS_OPENVINO = backends.availability("openvino").ok


def _checkpoint(path: Path, seed: int) -> Path:
    import torch

    from edgeseg.data.synthetic import SYNTHETIC_INFO
    from edgeseg.models import build
    from edgeseg.train.checkpoint import save

    torch.manual_seed(seed)
    save(path, build("fastscnn", 11), {"dataset": SYNTHETIC_INFO.to_dict(), "train_crop": list(SIZE)})
    return path


def _build(out: Path, *args: str) -> None:
    assert main(["build", "--out", str(out), *args]) == 0


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return _checkpoint(root / "a.pt", 0), _checkpoint(root / "b.pt", 1)


@pytest.fixture(scope="module")
def ort_pristine(checkpoints, tmp_path_factory):
    old = os.umask(0o022)  # a build published under a deployment umask: see test_published_engine_modes
    try:
        out = tmp_path_factory.mktemp("ort") / "engine"
        _build(out, "--checkpoint", str(checkpoints[0]), "--backend", "onnxruntime")
    finally:
        os.umask(old)
    return out


@pytest.fixture
def engine(ort_pristine, tmp_path) -> Path:
    """A private copy of the ONNX Runtime engine, for a test to damage."""
    return Path(shutil.copytree(ort_pristine, tmp_path / "engine"))


def _frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, *SIZE, 3), dtype=np.uint8)


def _edit(root: Path, change) -> None:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _rehash(root: Path, *names: str) -> None:
    def change(data):
        for name in names:
            data["files"][name] = sha256_file(root / name)
    _edit(root, change)


# ---- 1. the OpenVINO compiled-model cache ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ov_pair(checkpoints, tmp_path_factory):
    if not HAS_OPENVINO:
        pytest.skip("openvino is not installed")
    root = tmp_path_factory.mktemp("ov")
    # one process each: OpenVINO numbers its constants per process, and the fault needs the same model.xml
    procs = [subprocess.Popen([sys.executable, "-m", "edgeseg", "build", "--checkpoint", str(checkpoint),
                               "--backend", "openvino", "--out", str(root / name)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for name, checkpoint in zip("ab", checkpoints)]
    for proc in procs:
        assert proc.wait(600) == 0, proc.stderr.read()
    return root / "a", root / "b"


def _raw(engine: Path, options: LoadOptions) -> np.ndarray:
    with load(engine, options) as session:
        return session.infer_raw(_frames())


@pytest.mark.slow  # two OpenVINO builds, one process each
@pytest.mark.parametrize("user_cache", [False, True])
def test_openvino_cache_never_runs_a_replaced_model(ov_pair, tmp_path, user_cache):
    """Replacing model.bin and manifest.json by another valid engine's passes every hash; the cached
    blob of the old weights must not run (OpenVINO keys its cache by the .xml path and text only)."""
    a, b = (Path(shutil.copytree(p, tmp_path / p.name)) for p in ov_pair)
    options = LoadOptions(cache_dir=str(tmp_path / "shared-cache")) if user_cache else LoadOptions()
    first_a, first_b = _raw(a, options), _raw(b, options)
    assert not np.allclose(first_a, first_b)  # two seeds: the swap is visible
    assert (a / "model.xml").read_bytes() == (b / "model.xml").read_bytes()  # same graph, other weights
    for name in ("model.bin", "model.onnx", "manifest.json"):  # every file but the same model.xml
        shutil.copyfile(b / name, a / name)
    np.testing.assert_allclose(_raw(a, options), first_b, rtol=1e-4, atol=1e-4)
    cache = tmp_path / "shared-cache" if user_cache else a / ".cache"
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2  # one folder per verified model.xml + model.bin


# ---- 2. the manifest: hashes, paths, external data, schema -----------------------------------------------


def test_a_manifest_that_lists_nothing_is_refused(engine):
    _edit(engine, lambda d: d.update(files={}))
    with pytest.raises(ManifestError, match="'files' is empty"):
        load(engine)


@pytest.mark.parametrize("section,key,name", [
    ("files", None, "../other/model.onnx"),
    ("files", None, "{other}/model.onnx"),
    ("backend", "engine", "../other/model.onnx"),
    ("backend", "engine", "{other}/model.onnx"),
    ("onnx", "file", "../other/model.onnx"),
    ("backend", "engine", "sub/../../other/model.onnx"),
])
def test_paths_outside_the_engine_directory_are_refused(engine, section, key, name):
    """A valid engine beside this one is what the path reaches; it used to be hashed (or not even
    that, for backend.engine and onnx.file) and then run."""
    other = Path(shutil.copytree(engine, engine.parent / "other"))
    name = name.format(other=other)

    def change(data):
        data["files"][name] = sha256_file(other / "model.onnx")
        if section != "files":
            data[section][key] = name
    _edit(engine, change)
    with pytest.raises(ManifestError, match="inside the engine directory"):
        load(engine)


def test_the_engine_file_must_be_hashed(engine):
    shutil.copyfile(engine / "model.onnx", engine / "model.int8.onnx")  # e.g. an unverified graph
    _edit(engine, lambda d: d["backend"].update(engine="model.int8.onnx"))
    with pytest.raises(ManifestError, match="'backend.engine' names 'model.int8.onnx', which 'files' does not hash"):
        load(engine)


def test_an_engine_file_reached_through_a_symlink_is_refused(engine, tmp_path):
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.move(engine / "model.onnx", elsewhere)
    (engine / "model.onnx").symlink_to(elsewhere)  # same bytes, same hash, but swappable from outside
    with pytest.raises(ManifestError, match="symbolic link"):
        load(engine)


def test_unlisted_files_in_the_engine_directory_are_refused(engine):
    (engine / ".cache").mkdir()  # OpenVINO's compiled-model cache may be there
    (engine / ".cache" / "blob").write_bytes(b"x")
    with load(engine) as session:
        session.infer(_frames())
    (engine / "weights.bin").write_bytes(b"not hashed")
    with pytest.raises(ManifestError, match="weights.bin is in the engine directory but not in its manifest"):
        load(engine)


def _externalize(engine: Path, location: str) -> Path:
    """Rewrite model.onnx with its weights in `location` (relative to the engine), rehashing model.onnx only."""
    import onnx

    model = onnx.load(str(engine / "model.onnx"))
    onnx.save_model(model, str(engine / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=4096)
    data = engine / location
    if location != "weights.bin":
        os.replace(engine / "weights.bin", data)
        model = onnx.load(str(engine / "model.onnx"), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(model, str(engine / "model.onnx"))
    _rehash(engine, "model.onnx")
    return data


def test_onnx_external_data_must_be_hashed(engine):
    weights = _externalize(engine, "weights.bin")
    with pytest.raises(ManifestError, match="not in its manifest"):
        load(engine)  # an unhashed weights file beside the graph
    _rehash(engine, "weights.bin")
    with load(engine) as session:  # listed and hashed: it loads and runs
        session.infer(_frames())
    weights.write_bytes(weights.read_bytes()[::-1])
    with pytest.raises(ManifestError, match="weights.bin changed since it was built"):
        load(engine)


def test_onnx_external_data_outside_the_directory_is_refused(engine):
    _externalize(engine, "../weights.bin")
    with pytest.raises(ManifestError, match="external file '../weights.bin'"):
        load(engine)


def _set(path: str, value):
    def change(data):
        *parents, key = path.split(".")
        target = data
        for part in parents:
            target = target[part]
        target[key] = value
    return change


def _delete(path: str):
    def change(data):
        *parents, key = path.split(".")
        target = data
        for part in parents:
            target = target[part]
        del target[key]
    return change


@pytest.mark.parametrize("change,field", [
    (_set("output.kind", "probs"), "output.kind"),
    (_set("output.dtype", "uint8"), "output.dtype"),
    (_set("output.shape", [1, 5, 8, 12]), "output.shape"),
    (_set("output.shape", "1x11x8x12"), "output.shape"),
    (_delete("input"), "input"),
    (_delete("input.dtype"), "input.dtype"),
    (_set("input.dtype", "float64"), "input.dtype"),
    (_set("input.layout", "CHW"), "input.layout"),
    (_set("input.shape", "abc"), "input.shape"),
    (_set("input.shape", [1, 64, 96, 4]), "input.shape"),
    (_set("input.std", [0, 1, 1]), "input.std"),
    (_set("input.preprocess", "magic"), "input.preprocess"),
    (_set("input.extra_field", 1), "input.extra_field"),
    (_set("palette", [[0, 0, 0]]), "palette"),
    (lambda d: d["palette"].__setitem__(0, [0, 0, 300]), "palette[0]"),
    (_set("classes", []), "classes"),
    (_set("backend", []), "backend"),
    (_delete("backend.engine"), "backend.engine"),
    (_set("backend.options", "CPU"), "backend.options"),
    (_set("precision.requested", "int4"), "precision.requested"),
    (lambda d: d["files"].update({"model.onnx": "abc"}), "files['model.onnx']"),
    (_set("surprise", 1), "surprise"),
    (_set("ignore_index", "255"), "ignore_index"),
    (_set("model.num_classes", 12), "model.num_classes"),
])
def test_malformed_manifests_name_the_field(engine, change, field):
    """Most used to load (an unknown output kind made infer return logits) or end in a KeyError."""
    _edit(engine, change)
    with pytest.raises(ManifestError, match=re.escape(f"'{field}'")) as err:
        load(engine)
    assert err.value.fix


def test_an_unknown_backend_is_a_manifest_error(engine):
    _edit(engine, _set("backend.name", "caffe"))
    with pytest.raises(ManifestError, match="'backend.name' is 'caffe'"):
        load(engine)


def test_a_built_manifest_passes_validation(ort_pristine):
    manifest = load_manifest(ort_pristine)
    assert manifest.backend["engine"] in manifest.files and manifest.output.kind in ("labels", "lowres-logits")


# ---- 3. Ctrl+C during a build ---------------------------------------------------------------------------


def _wrapped_interrupt() -> Exception:
    """What torch's dynamo exporter raised on Ctrl+C here: cleanup failed while the KeyboardInterrupt
    unwound (AttributeError, context: KeyboardInterrupt), then TorchExportError from that."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise AttributeError("'NoneType' object has no attribute 'graph'")
    except AttributeError as exc:
        wrapped = RuntimeError("Failed to export the model with torch.export.")
        wrapped.__cause__ = exc
        return wrapped


def test_interrupt_during_export_stops_the_build(tmp_path, monkeypatch):
    """It used to fall back to the TorchScript exporter and publish the engine with exit status 0."""
    import edgeseg.build.export as export

    fallbacks = []

    def dynamo(*args, **kwargs):
        raise _wrapped_interrupt()

    real = export._export_torchscript
    monkeypatch.setattr(export, "_export_dynamo", dynamo)
    monkeypatch.setattr(export, "_export_torchscript", lambda *a, **k: fallbacks.append(1) or real(*a, **k))
    out = tmp_path / "e"
    rc = main(["build", "--model", "fastscnn", "--random-weights", "--input-size", "64x64", "--backend", "onnxruntime",
               "--out", str(out)])
    assert rc == 130 and not fallbacks
    assert list(tmp_path.iterdir()) == []  # nothing published, no staging directory left


def test_interrupt_inside_onnxsim_or_a_backend_probe_is_not_swallowed(monkeypatch):
    import onnx

    import edgeseg.backends.openvino as ov_backend
    from edgeseg.build.export import simplify

    onnxsim = pytest.importorskip("onnxsim")
    monkeypatch.setattr(onnxsim, "simplify", lambda model: (_ for _ in ()).throw(_wrapped_interrupt()))
    with pytest.raises(KeyboardInterrupt):
        simplify(onnx.ModelProto())  # used to warn "onnxsim failed" and keep building
    if HAS_OPENVINO:
        import openvino

        monkeypatch.setattr(openvino, "Core", lambda: (_ for _ in ()).throw(_wrapped_interrupt()))
        with pytest.raises(KeyboardInterrupt):
            ov_backend.availability()  # used to say "not available": --backend auto then built for another


def test_reraise_interrupt_finds_it_anywhere_in_the_chain():
    plain = ValueError("no interrupt")
    reraise_interrupt(plain)  # returns
    looped = RuntimeError("a cycle")
    looped.__context__ = RuntimeError("back")
    looped.__context__.__context__ = looped
    reraise_interrupt(looped)  # terminates
    with pytest.raises(KeyboardInterrupt):
        reraise_interrupt(_wrapped_interrupt())
    exiting = RuntimeError("wrapper")
    exiting.__cause__ = SystemExit(3)
    with pytest.raises(SystemExit):
        reraise_interrupt(exiting)


# ---- 4. two builds to one --out -------------------------------------------------------------------------


def _concurrent_publish(target: Path, overwrite: bool = False) -> list:
    """Two stagings of `target` that both pass the start check, then publish one after the other."""
    barrier, outcomes = threading.Barrier(2, timeout=60), []

    def build(tag: str) -> None:
        try:
            with staged_dir(target, overwrite=overwrite) as stage:
                (stage / "manifest.json").write_text(tag)
                (stage / "model.onnx").write_text(tag)
                barrier.wait()
                if tag == "second":
                    barrier.wait()  # publish after the first has
            outcomes.append((tag, "won"))
        except EdgesegError as exc:
            outcomes.append((tag, exc))
        finally:
            if tag == "first":
                barrier.wait()

    threads = [threading.Thread(target=build, args=(tag,)) for tag in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_two_builds_to_one_out_exactly_one_wins(tmp_path):
    target = tmp_path / "engine"
    outcomes = dict(_concurrent_publish(target))
    assert outcomes["first"] == "won"
    assert isinstance(outcomes["second"], EdgesegError) and "appeared while this build ran" in str(outcomes["second"])
    assert (target / "manifest.json").read_text() == "first" and (target / "model.onnx").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine"]  # no staging left behind


@pytest.mark.slow  # two real builds at once; test_two_builds_to_one_out_exactly_one_wins is the fast lane's
def test_two_cli_builds_to_one_out(tmp_path):
    out = tmp_path / "engine"
    command = [sys.executable, "-m", "edgeseg", "build", "--model", "fastscnn", "--random-weights", "--input-size",
               "64x64", "--backend", "onnxruntime", "--out", str(out)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert "appeared while this build ran" in loser or "already exists" in loser
    load_manifest(out)  # the winner's engine, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine"]


def test_a_file_written_meanwhile_is_not_replaced(tmp_path):
    """atomic_path without overwrite: a file another writer published while this one wrote stays."""
    target = tmp_path / "best.pt"
    with pytest.raises(EdgesegError, match="appeared while it was being written"):
        with atomic_path(target) as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")
    assert target.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_force_replaces_only_engines(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "precious.jpg").write_bytes(b"keep me")
    with pytest.raises(EdgesegError, match="not an engine directory"):
        with staged_dir(folder, overwrite=True) as stage:
            (stage / "manifest.json").write_text("{}")
    assert (folder / "precious.jpg").read_bytes() == b"keep me"
    single = tmp_path / "notes.txt"
    single.write_text("a file, not a directory")
    with pytest.raises(EdgesegError, match="not an engine directory"):
        with staged_dir(single, overwrite=True):
            pass
    assert single.read_text() == "a file, not a directory"
    engine = tmp_path / "engine"
    for version in ("old", "new"):  # an engine is replaced, and an empty folder is fine
        with staged_dir(engine, overwrite=True) as stage:
            (stage / "manifest.json").write_text(version)
    assert (engine / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine", "notes.txt", "photos"]


def test_force_refuses_a_folder_that_turned_into_a_non_engine_meanwhile(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(EdgesegError, match="not an engine directory"):
        with staged_dir(target, overwrite=True) as stage:
            (stage / "manifest.json").write_text("{}")
            target.mkdir()
            (target / "precious.txt").write_text("keep")
    assert (target / "precious.txt").read_text() == "keep"


# ---- 5. modes of what is published ----------------------------------------------------------------------


@pytest.mark.parametrize("umask,dirs,files", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640), (0o002, 0o775, 0o664)])
def test_published_files_follow_the_umask(tmp_path, umask, dirs, files):
    old = os.umask(umask)
    try:
        with staged_dir(tmp_path / "engine") as stage:
            (stage / "sub").mkdir()
            with atomic_path(stage / "model.onnx") as tmp:  # mkstemp: 0600 while written
                tmp.write_bytes(b"graph")
        with atomic_path(tmp_path / "report.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "engine") == dirs and _mode(tmp_path / "engine" / "sub") == dirs
    assert _mode(tmp_path / "engine" / "model.onnx") == files and _mode(tmp_path / "report.json") == files


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_published_engine_modes(ort_pristine):
    """A real build under umask 022: readable by the deployment group and others."""
    assert ort_pristine.stat().st_mode & 0o777 == 0o755
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in ort_pristine.iterdir())
