"""Commands without --engine run the newest engine under engines/ (by the manifest's `created`), say which on
their first line, skip broken manifests with a note, and name the build command when there is none."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edgeseg.cli.main import main
from edgeseg.errors import EdgesegError
from edgeseg.runtime.engines import BUILD_COMMAND, engine_candidates, newest_engine

QUIET_STREAM = ["--engine-fps", "0", "--report-every", "0"]


def _copy(engine_dir, root, name, created):
    """A copy of the tiny engine under root/name with the manifest's `created` set (not a hashed file)."""
    target = root / name
    shutil.copytree(engine_dir, target, ignore=shutil.ignore_patterns(".cache"))
    manifest = target / "manifest.json"
    data = json.loads(manifest.read_text())
    data["created"] = created
    manifest.write_text(json.dumps(data, indent=2))
    return target


def test_the_newest_by_created_is_chosen_not_the_last_name_or_file_time(engine_dir, tmp_path):
    root = tmp_path / "engines"
    _copy(engine_dir, root, "b-old", "2026-12-01T09:00:00+00:00")
    _copy(engine_dir, root, "a-new", "2026-12-02T04:10:00+00:00")
    _copy(engine_dir, root, "c-offset", "2026-12-02T05:00:00+02:00")  # 03:00 UTC: older than a-new
    os.utime(root / "b-old" / "manifest.json", (2e9, 2e9))  # the newest file time must not matter
    assert newest_engine(root) == root / "a-new"
    assert [c.path.name for c in engine_candidates(root)] == ["a-new", "c-offset", "b-old"]
    assert newest_engine(str(root)) == root / "a-new"  # a str works as well as a Path
    import edgeseg.runtime as runtime

    assert runtime.newest_engine is newest_engine


def test_an_unreadable_created_falls_back_to_the_manifest_file_time(engine_dir, tmp_path):
    root = tmp_path / "engines"
    _copy(engine_dir, root, "x", "yesterday")
    _copy(engine_dir, root, "y", "sometime")
    os.utime(root / "x" / "manifest.json", (1.9e9, 1.9e9))
    os.utime(root / "y" / "manifest.json", (1.8e9, 1.8e9))
    (newest,) = engine_candidates(root)[:1]
    assert newest.path == root / "x" and not newest.from_manifest and newest.built.year == 2030


def test_broken_manifests_are_skipped_with_a_note_and_other_folders_in_silence(engine_dir, tmp_path, capsys):
    root = tmp_path / "engines"
    _copy(engine_dir, root, "good", "2026-12-01T00:00:00+00:00")
    _copy(engine_dir, root, "broken-json", "2027-01-01T00:00:00+00:00")
    (root / "broken-json" / "manifest.json").write_text("{ not json")
    _copy(engine_dir, root, "broken-field", "2027-01-01T00:00:00+00:00")
    data = json.loads((root / "broken-field" / "manifest.json").read_text())
    del data["classes"]
    (root / "broken-field" / "manifest.json").write_text(json.dumps(data))
    _copy(engine_dir, root, ".good.partial", "2027-01-01T00:00:00+00:00")  # a build being published
    (root / "no-manifest").mkdir()
    (root / "stray-file.json").write_text("{}")
    assert newest_engine(root) == root / "good"
    err = capsys.readouterr().err
    assert f"skipped {root / 'broken-json'}" in err and f"skipped {root / 'broken-field'}" in err
    assert "no-manifest" not in err and ".good.partial" not in err and "stray" not in err


@pytest.mark.parametrize("make", ["missing", "empty", "only-broken"])
def test_no_engine_is_an_error_naming_the_folder_and_the_build_command(tmp_path, make, capsys):
    root = tmp_path / "engines"
    if make != "missing":
        root.mkdir()
    if make == "only-broken":
        (root / "x").mkdir()
        (root / "x" / "manifest.json").write_text("[]")
    with pytest.raises(EdgesegError) as info:
        newest_engine(root)
    assert str(root) in info.value.problem and "manifest.json" in info.value.problem
    assert BUILD_COMMAND == "edgeseg build --model deeplabv3plus --precision int8"
    assert BUILD_COMMAND in info.value.fix and "--engine" in info.value.fix


def test_stream_without_engine_names_the_newest_on_its_first_line_and_runs_it(engine_dir, video, tmp_path,
                                                                             monkeypatch, capsys):
    _copy(engine_dir, tmp_path / "engines", "fastscnn-old", "2026-11-30T10:00:00+00:00")
    _copy(engine_dir, tmp_path / "engines", "fastscnn-new", "2026-12-02T04:10:09+00:00")
    monkeypatch.chdir(tmp_path)
    assert main(["stream", "--video", str(video), "--max-frames", "5", *QUIET_STREAM]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("engine: engines/fastscnn-new (newest under engines/, built 2026-12-02 04:10 UTC; "
                        "pass --engine to choose)")
    assert "through engines/fastscnn-new" in lines[1]
    assert any("processed" in line or "frames" in line for line in lines[2:])


def test_stream_with_engine_prints_no_default_line(engine_dir, video, tmp_path, monkeypatch, capsys):
    _copy(engine_dir, tmp_path / "engines", "other", "2026-12-02T04:10:09+00:00")
    monkeypatch.chdir(tmp_path)
    assert main(["stream", "--engine", str(engine_dir), "--video", str(video), "--max-frames", "2",
                 *QUIET_STREAM]) == 0
    assert capsys.readouterr().out.startswith("streaming video")


def test_stream_without_any_engine_says_how_to_build_one(video, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["stream", "--video", str(video)]) == 2
    err = capsys.readouterr().err
    assert "no engine given and none under engines/" in err and BUILD_COMMAND in err


def test_eval_without_checkpoint_or_engine_evaluates_the_newest_engine(engine_dir, tmp_path, monkeypatch, capsys):
    _copy(engine_dir, tmp_path / "engines", "fastscnn", "2026-12-02T04:10:09+00:00")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--data", "synthetic:2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("engine: engines/fastscnn (newest under engines/, built 2026-12-02 04:10 UTC")
    assert "engines/fastscnn: onnxruntime" in out


def test_eval_without_anything_to_evaluate_names_both_ways(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--data", "synthetic:2"]) == 2
    err = capsys.readouterr().err
    assert "nothing to evaluate" in err and "--checkpoint" in err and BUILD_COMMAND in err
    assert main(["eval", "--data", "synthetic:2", "--tta"]) == 2  # a checkpoint was meant: no engine is guessed
    err = capsys.readouterr().err
    assert "--tta applies to --checkpoint, and none was given" in err and "newest" not in err


def test_the_lookup_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, edgeseg.runtime.engines as e; e.engine_candidates('nowhere'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
