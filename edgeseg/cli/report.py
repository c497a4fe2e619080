"""`edgeseg report`: Markdown and HTML from bench, eval and stream JSONs."""

from __future__ import annotations

import argparse

from edgeseg.cli.common import add_force, check_outputs


def run_report(args: argparse.Namespace) -> int:
    from edgeseg.measure.gate import parse_evals
    from edgeseg.measure.report import collect, markdown, write_report
    from edgeseg.measure.report_stream import read_stream

    check_outputs(args.force, args.out, args.markdown)
    rows, runs = collect(args.results, parse_evals(args.eval))
    streams = [read_stream(p) for p in args.stream or ()]
    print(markdown(rows, runs, streams), end="")
    if args.out:
        text = write_report(args.out, rows, runs, args.title, streams, overwrite=args.force)
        print(f"wrote {args.out} ({len(text.encode()) / 1024:.1f} KiB)")
    if args.markdown:
        write_report(args.markdown, rows, runs, args.title, streams, overwrite=args.force)
        print(f"wrote {args.markdown}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("report", help="Markdown and HTML (inline SVG plots) from bench and eval JSONs")
    p.add_argument("results", nargs="+", help="bench JSON files (edgeseg bench --json), schema version 2")
    p.add_argument("--eval", action="append", metavar="[ENGINE=]FILE",
                   help="accuracy from `edgeseg eval --engine ... --json` for the accuracy-vs-latency chart")
    p.add_argument("--stream", action="append", metavar="FILE",
                   help="statistics from `edgeseg stream ... --stats FILE.json`: end-to-end vs engine-only (repeatable)")
    p.add_argument("--out", help="report.html (self-contained HTML) or report.md")
    p.add_argument("--markdown", metavar="FILE.md", help="also write the Markdown table")
    p.add_argument("--title", default="edgeseg benchmark report")
    add_force(p, "existing --out/--markdown files")
    p.set_defaults(func=run_report)
