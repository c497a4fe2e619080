"""Reports: Markdown table, HTML with inline SVG, escaping, evals on the accuracy-vs-latency chart."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from bench_helpers import make_result, noisy_rounds, write_run

from edgeseg.cli.main import main


def test_report_html_and_markdown(tmp_path, capsys):
    nasty = "<script>alert(1)</script>&net"
    bench = write_run(tmp_path / "b.json", [make_result("fp32", noisy_rounds(20.0, 1)),
                                            make_result(nasty, noisy_rounds(12.0, 2))])
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"miou": 0.55, "miou_drop_points": 0.42}))
    out, md = tmp_path / "report.html", tmp_path / "report.md"
    assert main(["report", bench, "--eval", f"fp32={ev}", "--out", str(out), "--markdown", str(md)]) == 0
    page = out.read_text()
    assert page.count("<svg") == 3  # latency distribution, stages, accuracy vs latency
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp;net" in page
    assert "mIoU drop 0.42 pts" in page and "Test CPU" in page
    for svg in page.split("<svg")[1:]:  # each chart is well-formed XML
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")
    table = md.read_text()
    assert table.startswith("| engine | backend |") and "| fp32 |" in table and "55.00 (drop 0.42)" in table
    assert "Run 1: Test CPU" in table
    assert "| engine |" in capsys.readouterr().out


def test_report_without_evals_explains_the_missing_chart(tmp_path):
    bench = write_run(tmp_path / "b.json", [make_result("a", noisy_rounds(5.0, 1))])
    out = tmp_path / "r.html"
    assert main(["report", bench, "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<svg") == 2 and "No eval results given" in page


def test_report_refuses_unknown_schema(tmp_path, capsys):
    path = tmp_path / "future.json"
    path.write_text(json.dumps({"schema_version": 99, "kind": "edgeseg-bench", "results": []}))
    assert main(["report", str(path), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "schema_version 99" in err and "fix:" in err
    assert not (tmp_path / "r.html").exists()


def test_report_refuses_a_file_that_is_not_stream_statistics(tmp_path):
    from edgeseg.errors import EdgesegError
    from edgeseg.measure.report_stream import read_stream

    path = tmp_path / "bench.json"
    path.write_text('{"kind": "edgeseg-bench", "schema_version": 2}')
    with pytest.raises(EdgesegError, match="not stream statistics") as info:
        read_stream(path)
    assert "edgeseg stream" in info.value.fix
