"""The `edgeseg` command line: output a machine can read, errors a person can act on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeseg.cli.main import main, parse_size
from edgeseg.errors import BadInputError
from edgeseg.models import build, names


def test_models_json_lists_every_model_with_params_and_gmacs(capsys):
    assert main(["models", "--json", "--input-size", "64x96", "--num-classes", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_size"] == [64, 96] and report["num_classes"] == 5
    assert {row["name"] for row in report["models"]} == set(names())
    assert all(row["params"] > 0 and row["gmacs"] > 0 for row in report["models"])
    lraspp = next(r for r in report["models"] if r["name"] == "lraspp")
    assert lraspp["params"] == sum(p.numel() for p in build("lraspp", 5).parameters())


def test_gmacs_scale_with_input_area(capsys):
    main(["models", "lraspp", "--json", "--input-size", "64x64"])
    small = json.loads(capsys.readouterr().out)["models"][0]["gmacs"]
    main(["models", "lraspp", "--json", "--input-size", "128x128"])
    large = json.loads(capsys.readouterr().out)["models"][0]["gmacs"]
    assert 3.5 < large / small < 4.5  # convolutions dominate: four times the pixels, about four times the work


def test_models_table_is_readable(capsys):
    assert main(["models", "deeplabv3plus"]) == 0
    out = capsys.readouterr().out
    assert "mobilenetv2" in out and "xception65" in out and "GMACs at 360x480" in out


def test_unknown_model_exits_2_with_problem_and_fix(capsys):
    assert main(["models", "deeplab3"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'deeplab3'" in err and "fix:" in err


@pytest.mark.parametrize("text", ["360", "axb", "0x10", "360x480x3"])
def test_bad_size_is_refused(text):
    with pytest.raises(BadInputError):
        parse_size(text)


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "edgeseg", "models", "lraspp", "--input-size", "64x64"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "lraspp" in result.stdout


def test_models_markdown_is_a_table(capsys):
    assert main(["models", "fastscnn", "lraspp", "--markdown", "--input-size", "64x64"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| model |") and len(lines) == 4
    assert all(line.startswith("| `") for line in lines[2:])


def test_train_refuses_bad_arguments_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "lraspp", "--scale-range", "2,1"])
    assert "must satisfy 0 < MIN <= MAX" in capsys.readouterr().err
    assert main(["train", "--model", "lraspp", "--class-weights", "a,b"]) == 2
    assert "cannot read class weights" in capsys.readouterr().err
