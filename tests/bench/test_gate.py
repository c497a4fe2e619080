"""The gate and compare: exit codes, Markdown summary, JUnit XML, accuracy rules, and refused inputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from bench_helpers import make_result, noisy_rounds, write_run

from edgeseg.cli.main import main


@pytest.fixture()
def runs(tmp_path):
    base = write_run(tmp_path / "base.json", [make_result("net", noisy_rounds(20.0, 1))])
    same = write_run(tmp_path / "same.json", [make_result("net", noisy_rounds(20.0, 2))])
    slow = write_run(tmp_path / "slow.json", [make_result("net", noisy_rounds(30.0, 3))])
    return base, same, slow


def test_compare_passes_same_and_fails_regression(runs, tmp_path, capsys):
    base, same, slow = runs
    assert main(["compare", same, base, "--fail-on-regression", "10%"]) == 0
    assert "gate: PASS" in capsys.readouterr().out
    summary, junit = tmp_path / "s.md", tmp_path / "j.xml"
    assert main(["compare", slow, base, "--fail-on-regression", "10%", "--summary", str(summary),
                 "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "gate: FAIL" in out
    text = summary.read_text()
    assert text.startswith("## edgeseg gate: FAIL") and "| `net` |" in text and "**regression**" in text
    assert "lower end of the 95% bootstrap interval" in text
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    assert suite.find("testcase/failure") is not None


def test_regression_shown_but_not_enforced_without_flag(runs, capsys):
    base, _, slow = runs
    assert main(["compare", slow, base]) == 0
    assert "not enforced" in capsys.readouterr().out


def test_junit_of_a_pass_has_no_failure(runs, tmp_path):
    base, same, _ = runs
    junit = tmp_path / "j.xml"
    assert main(["compare", same, base, "--fail-on-regression", "10", "--junit", str(junit)]) == 0
    root = ET.parse(junit).getroot()
    assert root.find("testsuite").get("failures") == "0" and root.find(".//failure") is None


def write_eval(path, miou: float, drop: float | None = None) -> str:
    data = {"miou": miou, "per_class_iou": {}}
    if drop is not None:
        data["miou_drop_points"] = drop
    path.write_text(json.dumps(data))
    return str(path)


def test_accuracy_floor_and_drop(runs, tmp_path, capsys):
    base, same, _ = runs
    good = write_eval(tmp_path / "good.json", 0.56, 0.3)
    bad = write_eval(tmp_path / "bad.json", 0.50, 1.5)
    assert main(["compare", same, base, "--eval", f"net={good}", "--min-miou", "55", "--max-miou-drop", "0.5"]) == 0
    capsys.readouterr()
    summary = tmp_path / "acc.md"
    assert main(["compare", same, base, "--eval", bad, "--min-miou", "55", "--max-miou-drop", "0.5",
                 "--summary", str(summary)]) == 1
    text = summary.read_text()
    assert "under the floor 55%" in text and "exceeds 0.5" in text


def test_drop_rule_needs_a_reference(runs, tmp_path, capsys):
    base, same, _ = runs
    plain = write_eval(tmp_path / "plain.json", 0.56)
    assert main(["compare", same, base, "--eval", plain, "--max-miou-drop", "0.5"]) == 1
    assert "no reference" in capsys.readouterr().out


def test_unknown_schema_version_is_refused(runs, tmp_path, capsys):
    base, _, _ = runs
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": 1, "kind": "edgeseg-bench", "results": []}))
    assert main(["compare", str(old), base]) == 2
    err = capsys.readouterr().err
    assert "schema_version 1" in err and "re-run `edgeseg bench" in err


@pytest.mark.parametrize("content,message", [(None, "does not exist"), ("{", "is not JSON"),
                                             ('{"miou": 0.5}', "is not an edgeseg bench result")])
def test_bad_files_are_explained(runs, tmp_path, capsys, content, message):
    base, _, _ = runs
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    assert main(["compare", str(path), base]) == 2
    assert message in capsys.readouterr().err


def test_fail_on_regression_without_baseline_is_explained(tiny_engine, capsys):
    assert main(["bench", "--engine", str(tiny_engine), "--fail-on-regression", "10%", "--no-progress"]) == 2
    assert "needs something to compare with" in capsys.readouterr().err
