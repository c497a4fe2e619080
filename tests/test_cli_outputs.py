"""Result files are never replaced without --force and are checked before the work; flags that do not
apply to a build, and counts that would time or calibrate nothing, are refused with the flag named."""

from __future__ import annotations

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
    (["--checkpoint", "ckpt.pt", "--backbone", "resnet50"], "--backbone applies to --random-weights"),
    (["--checkpoint", "ckpt.pt", "--num-classes", "5"], "--num-classes applies to --random-weights"),
    (["--model", "fastscnn", "--random-weights", "--backend", "onnxruntime", "--device", "GPU"],
     "--device applies to openvino builds"),
    (["--model", "fastscnn", "--random-weights", "--backend", "onnxruntime", "--workspace", "512"],
     "--workspace applies to tensorrt builds"),
    (["--model", "fastscnn", "--random-weights", "--backend", "openvino", "--precision", "int8", "--int8-vnni-only"],
     "--int8-vnni-only applies to ONNX Runtime int8 builds"),
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
