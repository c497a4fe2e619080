"""Subcommands after the bench: report (Markdown/HTML) and compare (the regression gate), plus the gate
options `edgeseg bench` shares. Exit status: 0 pass, 1 gate failed, 2 user error (as every command)."""

from __future__ import annotations

import argparse

REGRESSION_EXIT = 1
DEFAULT_THRESHOLD = "10%"  # verdicts are shown with this when only --baseline is given; exit stays 0


def add_gate_options(p: argparse.ArgumentParser) -> None:
    """The options bench and compare share: threshold, accuracy rules, and CI outputs."""
    p.add_argument("--fail-on-regression", metavar="PCT",
                   help="exit 1 when an engine is slower than the baseline by more than PCT (e.g. 10%%), "
                        "judged by the bootstrap interval of new/base median latency")
    p.add_argument("--eval", action="append", metavar="[ENGINE=]FILE",
                   help="accuracy results from `edgeseg eval --engine ... --json` (repeatable)")
    p.add_argument("--min-miou", type=float, metavar="PCT", help="fail when an evaluated engine's mIoU is below PCT")
    p.add_argument("--max-miou-drop", type=float, metavar="POINTS",
                   help="fail when an evaluated engine loses more than POINTS of mIoU against its eval reference")
    p.add_argument("--summary", metavar="FILE.md", help="write a Markdown summary for a pull-request comment")
    p.add_argument("--junit", metavar="FILE.xml", help="write JUnit XML for CI test reports")


def _write(path: str, text: str) -> None:
    from edgeseg.io import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text)


def finish_gate(result, args: argparse.Namespace) -> int:
    """Print the verdicts, write --summary/--junit, and turn the result into the exit status."""
    from edgeseg.measure.gate import format_lines, junit_xml, markdown_summary

    print(format_lines(result))
    if args.summary:
        _write(args.summary, markdown_summary(result))
    if args.junit:
        _write(args.junit, junit_xml(result))
    enforce = bool(args.fail_on_regression) or args.min_miou is not None or args.max_miou_drop is not None
    if result.failed and enforce:
        print("gate: FAIL")
        return REGRESSION_EXIT
    print("gate: PASS" if not result.failed else "gate: regressions shown, not enforced (no --fail-on-regression)")
    return 0


def gate_runs(new, base, args: argparse.Namespace):
    """The GateResult of a new run (against a base run or its own re-timed baselines), plus accuracy checks."""
    from edgeseg.measure.gate import GateResult, check_accuracy, gate_checks, parse_evals, parse_threshold

    threshold = parse_threshold(args.fail_on_regression or DEFAULT_THRESHOLD)
    timed = any(r.role == "baseline" for r in new.results)
    result = gate_checks(new, base, threshold) if base is not None or timed else GateResult(None)
    engines = [r.engine for r in new.results if r.role == "engine"]
    result.accuracy = check_accuracy(engines, parse_evals(args.eval), args.min_miou, args.max_miou_drop)
    return result


def baseline_specs(base, rerun: bool):
    """Engines of a baseline file to time again in this run: those whose directory still holds the same
    files (manifest hashes), loaded with the options the baseline ran with."""
    from pathlib import Path

    from edgeseg.manifest import read_manifest
    from edgeseg.measure.bench import EngineSpec, files_digest
    from edgeseg.measure.gate import BASELINE_SUFFIX
    from edgeseg.runtime.session import LoadOptions

    specs = []
    for r in base.results if rerun else []:
        if r.role != "engine" or not r.files_digest or not (Path(r.path) / "manifest.json").is_file():
            continue
        if files_digest(read_manifest(r.path).files) == r.files_digest:
            specs.append(EngineSpec(r.path, LoadOptions(**r.load_options), r.engine + BASELINE_SUFFIX, "baseline"))
    return specs


def timed_baselines(args: argparse.Namespace, base, options) -> list:
    """The baseline engines this bench also times: --baseline-engine DIRs, else the --baseline file's
    engines that are still here (unless --no-rerun-baseline)."""
    from edgeseg.measure.bench import EngineSpec, specs_for
    from edgeseg.measure.gate import BASELINE_SUFFIX

    if args.baseline_engine:
        return [EngineSpec(s.path, s.options, s.name + BASELINE_SUFFIX, "baseline")
                for s in specs_for(args.baseline_engine, options)]
    return baseline_specs(base, not args.no_rerun_baseline) if base is not None else []


def gate_after_bench(run, args: argparse.Namespace, base) -> int:
    """`edgeseg bench --baseline FILE | --baseline-engine DIR ...`: gate the run just measured."""
    from edgeseg.errors import BadInputError

    wants = base is not None or args.baseline_engine or args.fail_on_regression or args.min_miou is not None \
        or args.max_miou_drop is not None
    if not wants:
        return 0
    if args.fail_on_regression and base is None and not args.baseline_engine:
        raise BadInputError("--fail-on-regression needs something to compare with",
                            "pass --baseline BENCH.json (an earlier run) or --baseline-engine DIR (timed in this run)")
    return finish_gate(gate_runs(run, None if args.baseline_engine else base, args), args)


def run_compare(args: argparse.Namespace) -> int:
    from edgeseg.measure.bench import read_json

    new, base = read_json(args.new), read_json(args.base)
    return finish_gate(gate_runs(new, base, args), args)


def run_report(args: argparse.Namespace) -> int:
    from edgeseg.measure.gate import parse_evals
    from edgeseg.measure.report import collect, markdown, write_report
    from edgeseg.measure.report_stream import read_stream

    rows, runs = collect(args.results, parse_evals(args.eval))
    streams = [read_stream(p) for p in args.stream or ()]
    print(markdown(rows, runs, streams), end="")
    if args.out:
        text = write_report(args.out, rows, runs, args.title, streams)
        print(f"wrote {args.out} ({len(text.encode()) / 1024:.1f} KiB)")
    if args.markdown:
        write_report(args.markdown, rows, runs, args.title, streams)
        print(f"wrote {args.markdown}")
    return 0


def add_report_commands(sub) -> None:
    p = sub.add_parser("report", help="Markdown and HTML (inline SVG plots) from bench and eval JSONs")
    p.add_argument("results", nargs="+", help="bench JSON files (edgeseg bench --json), schema version 2")
    p.add_argument("--eval", action="append", metavar="[ENGINE=]FILE",
                   help="accuracy from `edgeseg eval --engine ... --json` for the accuracy-vs-latency chart")
    p.add_argument("--stream", action="append", metavar="FILE",
                   help="statistics from `edgeseg stream ... --stats FILE.json`: end-to-end vs engine-only (repeatable)")
    p.add_argument("--out", help="report.html (self-contained HTML) or report.md")
    p.add_argument("--markdown", metavar="FILE.md", help="also write the Markdown table")
    p.add_argument("--title", default="edgeseg benchmark report")
    p.set_defaults(func=run_report)

    p = sub.add_parser("compare", help="gate a bench JSON against a baseline bench JSON (exit 1 on regression)")
    p.add_argument("new", help="bench JSON of the change under test")
    p.add_argument("base", help="bench JSON of the baseline")
    add_gate_options(p)
    p.set_defaults(func=run_compare)

