"""`edgeseg bench` (latency, FPS and stages, side by side) and the regression gate it shares with
`edgeseg compare`. Exit status: 0 pass, 1 gate failed, 2 user error (as every command)."""

from __future__ import annotations

import argparse
import sys
import time

from edgeseg.cli.common import SPIN_HELP, check_outputs, write_output

REGRESSION_EXIT = 1
DEFAULT_THRESHOLD = "10%"  # verdicts are shown with this when only --baseline is given; exit stays 0


def bench_frames(spec: str):
    """--data: a semantic dataset spec, or an instance one (synthetic-instances:16, coco:..., whose frames
    suit an instance engine best); only the images are used."""
    from edgeseg.data import parse_spec
    from edgeseg.data.instances import INSTANCE_KINDS, parse_instance_spec

    if spec.partition(":")[0] in INSTANCE_KINDS:
        return parse_instance_spec(spec, "val")
    return parse_spec(spec, "val")


def run_bench(args: argparse.Namespace) -> int:
    from edgeseg.measure.bench import (
        INSTANCE_ENGINES,
        BenchConfig,
        bench_engines,
        encoded_frames,
        format_table,
        specs_for,
    )
    from edgeseg.measure.envinfo import short
    from edgeseg.measure.results import read_json, to_json
    from edgeseg.runtime.session import LoadOptions

    engines = list(args.engines or []) + list(args.engine or [])
    if not engines:  # the newest under engines/, named on the first line
        from edgeseg.runtime.engines import default_engine

        engines = [str(default_engine())]
    check_outputs(args.force, args.json, args.summary, args.junit)  # before minutes of timing, not after
    base = read_json(args.baseline) if args.baseline else None  # read first: a bad file fails before any load
    frames = encoded_frames(bench_frames(args.data), 16)
    options = LoadOptions(threads=args.threads or 0, performance_hint=args.hint, spin=args.spin)
    config = BenchConfig(args.iterations, args.duration or 0.0, args.warmup, args.rounds, args.throughput_seconds,
                         not args.no_stages, not args.no_progress)
    context = {"data": args.data, "command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    specs = timed_baselines(args, base, options) + specs_for(engines, options)
    refuse_mixed_gate(args, base, specs)
    run = bench_engines(specs, frames, options, config, args.baseline_torch, context)
    print(format_table(run.results, run.context.get(INSTANCE_ENGINES, ())))
    print(f"{short(run.environment)}; peak RSS {run.peak_rss_mb:.0f} MB (whole process)")
    if args.json:
        write_output(args.json, to_json(run), args.force)
    return gate_after_bench(run, args, base)


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
    p.add_argument("--force", action="store_true", help="replace existing --json/--summary/--junit files")


def finish_gate(result, args: argparse.Namespace) -> int:
    """Print the verdicts, write --summary/--junit, and turn the result into the exit status."""
    from edgeseg.measure.gate import format_lines, junit_xml, markdown_summary

    print(format_lines(result))
    if args.summary:
        write_output(args.summary, markdown_summary(result), args.force)
    if args.junit:
        write_output(args.junit, junit_xml(result), args.force)
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


def wants_gate(args: argparse.Namespace, base) -> bool:
    return bool(base is not None or args.baseline_engine or args.fail_on_regression or args.min_miou is not None
                or args.max_miou_drop is not None)


def refuse_mixed_gate(args: argparse.Namespace, base, specs) -> None:
    """Semantic and instance engines may be timed side by side, but a gate between them would call the
    difference in their work a regression: refused before the timing, naming the engines of each kind.
    An engine whose manifest does not read is left to the load, which names the problem."""
    from edgeseg.errors import BadInputError, EdgesegError
    from edgeseg.manifest import read_manifest
    from edgeseg.measure.bench import INSTANCE_ENGINES

    if base is None and not args.baseline_engine:  # no latency gate (accuracy rules compare nothing here)
        return
    finds: dict[str, bool] = {}  # engine -> whether it is an instance engine
    for spec in specs:
        try:
            finds[spec.name] = read_manifest(spec.path).output.kind == "instances"
        except EdgesegError:
            continue
    if base is not None:
        named = set(base.context.get(INSTANCE_ENGINES, ()))
        for r in base.results:
            finds.setdefault(f"{r.engine} ({args.baseline})", r.engine in named)
    if len(set(finds.values())) > 1:
        instances = ", ".join(n for n, kind in finds.items() if kind)
        semantic = ", ".join(n for n, kind in finds.items() if not kind)
        raise BadInputError(f"a latency gate compares an engine with a baseline doing the same work, but "
                            f"instance engines ({instances}) and semantic ones ({semantic}) do different work",
                            "time them side by side without a gate (drop --baseline, --baseline-engine and "
                            "--fail-on-regression), or gate each kind against a baseline of its own kind")


def gate_after_bench(run, args: argparse.Namespace, base) -> int:
    """`edgeseg bench --baseline FILE | --baseline-engine DIR ...`: gate the run just measured."""
    from edgeseg.errors import BadInputError

    if not wants_gate(args, base):
        return 0
    if args.fail_on_regression and base is None and not args.baseline_engine:
        raise BadInputError("--fail-on-regression needs something to compare with",
                            "pass --baseline BENCH.json (an earlier run) or --baseline-engine DIR (timed in this run)")
    return finish_gate(gate_runs(run, None if args.baseline_engine else base, args), args)


def run_compare(args: argparse.Namespace) -> int:
    from edgeseg.measure.results import read_json

    check_outputs(args.force, args.summary, args.junit)
    new, base = read_json(args.new), read_json(args.base)
    return finish_gate(gate_runs(new, base, args), args)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency, FPS and stages of engines, side by side; the CI latency gate")
    p.add_argument("engines", nargs="*",
                   help="engine directories written by `edgeseg build` (default: the newest under engines/)")
    p.add_argument("--engine", action="append", metavar="DIR", help="an engine directory (repeatable)")
    p.add_argument("--data", default="synthetic:16",
                   help="frames to time on (default synthetic:16; instance specs such as synthetic-instances:16 too)")
    p.add_argument("--iterations", type=int, default=50, help="timed calls per engine (default 50)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="time each engine this long instead of --iterations")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5, help="engines take turns this many times (the gate's trials)")
    p.add_argument("--threads", type=int)
    p.add_argument("--hint", choices=("latency", "throughput"), default="latency")
    p.add_argument("--spin", action="store_true", help=SPIN_HELP)
    p.add_argument("--throughput-seconds", type=float, default=2.0,
                   help="seconds of throughput mode per engine after the rounds (0 skips it)")
    p.add_argument("--no-stages", action="store_true", help="skip colorize and the per-stage table")
    p.add_argument("--baseline-torch", action="store_true",
                   help="also time PyTorch eager FP32 of the engine's checkpoint (the only path that imports torch)")
    p.add_argument("--baseline", metavar="BENCH.json", help="gate against this earlier bench JSON")
    p.add_argument("--no-rerun-baseline", action="store_true",
                   help="with --baseline: compare with the file's numbers only, even where its engine is still here")
    p.add_argument("--baseline-engine", action="append", metavar="DIR",
                   help="gate against this engine, timed in the same interleaved run (paired rounds; repeatable)")
    add_gate_options(p)
    p.add_argument("--json", metavar="FILE", help="write the results (schema version 2)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_bench)


def add_commands(sub) -> None:
    _add_bench(sub)
    p = sub.add_parser("compare", help="gate a bench JSON against a baseline bench JSON (exit 1 on regression)")
    p.add_argument("new", help="bench JSON of the change under test")
    p.add_argument("base", help="bench JSON of the baseline")
    add_gate_options(p)
    p.set_defaults(func=run_compare)
