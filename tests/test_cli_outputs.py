"""Result files are never replaced without --force and are checked before the work; flags that do not
apply to a build, and counts that would time or calibrate nothing, are refused with the flag named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeseg.cli.main import main


@pytest.fixture
def existing(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("keep me")
    return path


@pytest.mark.parametrize("argv", [
    ["bench", "no-such-engine", "--data", "synthetic:2", "--json", "{out}"],
    ["bench", "no-such-engine", "--data", "synthetic:2", "--summary", "{out}"],
    ["eval", "--engine", "no-such-engine", "--data", "synthetic:2", "--json", "{out}"],
    ["compare", "new.json", "base.json", "--junit", "{out}"],
    ["report", "bench.json", "--out", "{out}"],
], ids=["bench-json", "bench-summary", "eval-json", "compare-junit", "report-out"])
def test_result_files_are_not_replaced_without_force(argv, existing, capsys):
    code = main([a.replace("{out}", str(existing)) for a in argv])
    err = capsys.readouterr().err
    # refused before the engine, the data or the input JSONs were even looked at
    assert code == 2 and "already exists" in err and "--force" in err
    assert existing.read_text() == "keep me"


def test_a_result_file_under_something_that_is_not_a_folder_is_refused_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    code = main(["bench", "no-such-engine", "--data", "synthetic:2", "--json", str(blocker / "bench.json")])
    err = capsys.readouterr().err
    assert code == 2 and "not a writable folder" in err and "no-such-engine" not in err


def test_a_result_path_that_is_a_folder_is_refused(tmp_path, capsys):
    assert main(["eval", "--engine", "x", "--data", "synthetic:2", "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    (["--checkpoint", "ckpt.pt", "--calib", "synthetic:train"], "--calib applies to int8 builds"),
    (["--checkpoint", "ckpt.pt", "--preset", "smp"], "--preset describes a foreign graph"),
    (["--model", "fastscnn", "--random-weights", "--classes", "voc"], "--classes describes a foreign graph"),
    (["--checkpoint", "ckpt.pt", "--num-classes", "5"], "--num-classes applies to --random-weights"),
    (["--model", "fastscnn", "--random-weights", "--backend", "onnxruntime", "--device", "GPU"],
     "--device applies to openvino builds"),
    (["--model", "fastscnn", "--random-weights", "--backend", "onnxruntime", "--workspace", "512"],
     "--workspace applies to tensorrt builds"),
    (["--model", "fastscnn", "--random-weights", "--backend", "torch", "--precision", "int8", "--int8-vnni-only"],
     "--int8-vnni-only applies to ONNX Runtime and OpenVINO int8 builds"),
    (["--model", "fastscnn", "--random-weights", "--backend", "openvino", "--int8-vnni-only"],
     "--int8-vnni-only applies to ONNX Runtime and OpenVINO int8 builds"),
    (["--model", "fastscnn", "--random-weights", "--backend", "onnxruntime", "--precision", "int8",
      "--calib-size", "0"], "--calib-size 0 must be at least 1"),
    (["--model", "fastscnn", "--random-weights", "--backend", "onnxruntime", "--batch", "0"], "--batch 0 must be at least 1"),
    # a zero is a value given: 0 == False must not make these pass unrefused
    (["--model", "fastscnn", "--random-weights", "--backend", "onnxruntime", "--dla-core", "0"],
     "--dla-core applies to tensorrt builds"),
    (["--checkpoint", "ckpt.pt", "--max-float-layers", "0"], "--max-float-layers applies to int8 builds"),
])
def test_build_refuses_flags_that_do_not_apply(argv, named, tmp_path, capsys):
    assert main(["build", *argv, "--out", str(tmp_path / "e")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("flags, named", [
    (["--iterations", "0"], "--iterations 0 must be at least 1"),
    (["--rounds", "0"], "--rounds 0 must be at least 1"),
    (["--iterations", "3", "--rounds", "5"], "fewer than --rounds"),
    (["--warmup", "-1"], "--warmup -1 must be at least 0"),
])
def test_bench_refuses_counts_that_would_time_nothing(flags, named, capsys):
    assert main(["bench", "no-such-engine", "--data", "synthetic:2", *flags]) == 2
    assert named in capsys.readouterr().err


def test_eval_refuses_a_limit_that_evaluates_nothing(capsys):
    assert main(["eval", "--engine", "x", "--data", "synthetic:2", "--limit", "-3"]) == 2
    assert "--limit -3 evaluates nothing" in capsys.readouterr().err


# -- destinations that cannot be written: refused before any weights are read or any work is done --------------
# Each command names an input that does not exist: the destination's error must come first.
DESTINATIONS = {
    "build-out": ["build", "--checkpoint", "missing.pt", "--backend", "onnxruntime", "--out", "{dest}/engine"],
    "eval-save-predictions": ["eval", "--checkpoint", "missing.pt", "--data", "synthetic:2",
                              "--save-predictions", "{dest}/preds"],
    "eval-engine-save-predictions": ["eval", "--engine", "no-such-engine", "--data", "synthetic:2",
                                     "--save-predictions", "{dest}/preds"],
    "eval-json": ["eval", "--engine", "no-such-engine", "--data", "synthetic:2", "--json", "{dest}/eval.json"],
    "bench-json": ["bench", "no-such-engine", "--data", "synthetic:2", "--json", "{dest}/bench.json"],
    "report-out": ["report", "missing-bench.json", "--out", "{dest}/report.html"],
    "export-out": ["export", "--checkpoint", "missing.pt", "--out", "{dest}/model.onnx"],
    "train-out": ["train", "--model", "fastscnn", "--data", "camvid:missing-camvid", "--out", "{dest}/run"],
    "demo-out": ["demo", "--data", "folder:missing-frames", "--out", "{dest}/demo"],
}


def _refused(argv, dest, capsys) -> str:
    code = main([a.replace("{dest}", str(dest)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and "fix:" in err, err
    assert "missing" not in err and "no-such-engine" not in err, err  # nothing was looked at before
    return err


@pytest.mark.parametrize("argv", DESTINATIONS.values(), ids=DESTINATIONS.keys())
def test_a_read_only_destination_is_refused_before_the_work(argv, read_only_folder, capsys):
    err = _refused(argv, read_only_folder, capsys)
    assert f"in {read_only_folder}" in err and ("read-only" in err or "permission denied" in err)
    assert not any(read_only_folder.iterdir())


@pytest.mark.parametrize("argv", DESTINATIONS.values(), ids=DESTINATIONS.keys())
def test_a_destination_under_a_file_is_refused_before_the_work(argv, tmp_path, capsys):
    blocker = tmp_path / "plain-file"
    blocker.write_text("keep")
    err = _refused(argv, blocker / "deeper", capsys)  # a missing folder under a file: neither can be made
    assert f"{blocker} is a file, not a writable folder" in err
    assert blocker.read_text() == "keep"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
@pytest.mark.parametrize("key", ["build-out", "eval-save-predictions", "bench-json"])
def test_a_destination_on_a_virtual_file_system_is_refused_as_root_too(key, capsys):
    err = _refused(DESTINATIONS[key], "/proc/edgeseg-no-such-folder", capsys)
    assert "in /proc: it takes no new files" in err


def test_a_full_disk_is_refused_before_the_work(full_disk, capsys):
    err = _refused(DESTINATIONS["build-out"], full_disk, capsys)
    assert "its disk is full" in err and "free space on that disk" in err


def test_missing_folders_under_a_writable_one_are_fine_and_the_probe_leaves_nothing(tmp_path):
    from edgeseg.io import require_writable_parent

    assert require_writable_parent(tmp_path / "a" / "b" / "engine", "the engine directory", "fix") == tmp_path
    assert list(tmp_path.iterdir()) == []  # no folder made, no probe file left
    assert require_writable_parent("relative.json", "--json", "fix") == Path(".")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    from edgeseg.errors import EdgesegError
    from edgeseg.io import require_writable_parent

    tmp_path.joinpath("locked").mkdir(mode=0o555)
    with pytest.raises(EdgesegError, match="permission denied"):
        require_writable_parent(tmp_path / "locked" / "x.json", "--json", "fix")


def test_a_prediction_that_cannot_be_saved_is_an_error_not_a_silent_loss(full_disk):
    import numpy as np

    from edgeseg.errors import EdgesegError
    from edgeseg.measure.evaluate import label_writer

    folder = full_disk.parent / "preds"
    write = label_writer(folder)
    os.symlink(full_disk, folder)  # the folder's disk fills up after the check, as during a long evaluation
    sample = type("S", (), {"name": "frame0"})()
    with pytest.raises(EdgesegError, match="cannot save the prediction .*frame0.png"):
        write(sample, np.random.default_rng(0).integers(0, 11, (256, 256), dtype=np.uint8))


def test_an_engine_that_cannot_be_staged_says_why(read_only_folder):
    from edgeseg.errors import EdgesegError
    from edgeseg.io import staged_dir

    with pytest.raises(EdgesegError, match=f"cannot write the engine directory in {read_only_folder}"), \
            staged_dir(read_only_folder / "sub" / "engine"):
        pass
