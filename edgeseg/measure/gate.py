"""The CI gate: latency regression against a baseline bench, and accuracy floors, with CI-friendly output.

The rule (docs/benchmarks.md): for each engine, the ratio new/base of the
median of per-round median latencies, with a 95% percentile-bootstrap interval over rounds. A
regression is called only when the whole interval lies above 1 + threshold, i.e. its lower end
exceeds it; an interval that straddles the threshold is "inconclusive" and passes (the noise of this
machine cannot tell), so a noisy runner does not page anyone for a slowdown it cannot show.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.measure.results import BenchResult, BenchRun
from edgeseg.measure.stats import bootstrap_ratio, positive_medians

CONFIDENCE = 0.95


@dataclass
class LatencyCheck:
    engine: str
    baseline: str
    base_ms: float  # median of the baseline's per-round medians
    new_ms: float
    ratio: float
    low: float
    high: float
    paired: bool
    threshold: float  # fraction: 0.10 = 10% slower
    verdict: str  # "regression" | "inconclusive" | "ok" | "faster"

    @property
    def failed(self) -> bool:
        return self.verdict == "regression"


@dataclass
class AccuracyCheck:
    engine: str
    miou: float | None  # percent
    drop: float | None  # points, against the eval's --reference
    rule: str
    failed: bool
    message: str = ""


@dataclass
class GateResult:
    threshold: float | None
    latency: list[LatencyCheck] = field(default_factory=list)
    accuracy: list[AccuracyCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.latency) or any(c.failed for c in self.accuracy)


def parse_threshold(text: str) -> float:
    """'10%' or '0.1' -> 0.10; a bare number of 1 or more is read as percent ('10' -> 0.10)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", str(text))
    if not match:
        raise BadInputError(f"cannot read regression threshold '{text}'", "write it as 10% (or 0.1)")
    value = float(match.group(1))
    return value / 100.0 if match.group(2) or value >= 1 else value


def verdict(low: float, high: float, threshold: float) -> str:
    if low > 1.0 + threshold:
        return "regression"
    if high > 1.0 + threshold:
        return "inconclusive"
    return "faster" if high < 1.0 - threshold else "ok"


def check_latency(new: BenchResult, base: BenchResult, threshold: float, paired: bool = False) -> LatencyCheck:
    """One engine against its baseline; both sides' round medians must be positive, finite latencies
    (a zero, negative or NaN median turns every comparison into "ok")."""
    positive_medians(new.round_medians_ms, f"the round medians of {new.engine} (new run)")
    positive_medians(base.round_medians_ms, f"the round medians of baseline {base.engine}")
    ci = bootstrap_ratio(new.round_medians_ms, base.round_medians_ms, paired=paired, confidence=CONFIDENCE)
    return LatencyCheck(new.engine, base.engine, float(np.median(base.round_medians_ms)),
                        float(np.median(new.round_medians_ms)), ci.ratio, ci.low, ci.high, ci.paired, threshold,
                        verdict(ci.low, ci.high, threshold))


Pair = tuple[BenchResult, BenchResult]


def pair_results(new: list[BenchResult], base: list[BenchResult]) -> tuple[list[Pair], list[str]]:
    """Match engines by name; one engine on each side is matched whatever the names. Returns (pairs, notes)."""
    if len(new) == 1 and len(base) == 1:
        return [(new[0], base[0])], []
    by_name = {b.engine: b for b in base}
    pairs, notes = [], []
    for r in new:
        if r.engine in by_name:
            pairs.append((r, by_name[r.engine]))
        else:
            notes.append(f"{r.engine}: not in the baseline, not gated")
    return pairs, notes


BASELINE_SUFFIX = " [baseline]"


def gate_checks(new: BenchRun, base: BenchRun | None, threshold: float) -> GateResult:
    """Latency checks of the new run's engines.

    Preferred: the baseline engine was re-timed in the new run (role "baseline": --baseline-engine, or
    --baseline FILE whose engine directory is still there, byte-identical), so both took turns in the
    same rounds and the paired interval cancels machine drift. Otherwise the new rounds are compared
    with the baseline file's rounds (cross-run, unpaired): drift between the two runs is not in that
    interval, which the notes say.
    """
    news = [r for r in new.results if r.role == "engine"]
    timed = [r for r in new.results if r.role == "baseline"]
    result = GateResult(threshold)
    if base is None:
        if not timed:
            raise EdgesegError("nothing to compare with", "pass --baseline BENCH.json or --baseline-engine DIR")
        result.latency = [check_latency(n, timed[min(i, len(timed) - 1)], threshold, paired=True)
                          for i, n in enumerate(news)]
        return result
    pairs, result.notes = pair_results(news, [r for r in base.results if r.role == "engine"])
    if not pairs:
        raise EdgesegError("no engine of the new run is in the baseline",
                           "bench the same engine directories as the baseline, or pass one engine on each side")
    rerun = {r.engine.removesuffix(BASELINE_SUFFIX): r for r in timed}
    for n, b in pairs:
        if b.engine in rerun:
            again = rerun[b.engine]
            result.latency.append(check_latency(n, again, threshold, paired=True))
            result.notes.append(f"{b.engine}: baseline re-timed in this run ({np.median(again.round_medians_ms):.2f} "
                                f"ms now, {np.median(b.round_medians_ms):.2f} ms in the baseline file)")
        else:
            result.latency.append(check_latency(n, b, threshold, paired=False))
            result.notes.append(f"{b.engine}: compared across runs with the baseline file (its engine was not "
                                "re-timed): drift of the machine between the runs is not in the interval")
    _warn_environment(new, base, result)
    return result


def _warn_environment(new: BenchRun, base: BenchRun, result: GateResult) -> None:
    from edgeseg.measure.envinfo import short

    a, b = short(new.environment), short(base.environment)
    if a != b:
        result.notes.append(f"environments differ: new '{a}' vs baseline '{b}'")


EVAL_FIX = "pass a file written by `edgeseg eval --engine ... --json FILE`"


class EvalFile(dict):
    """An eval JSON's content, knowing the file it was read from (`path`): its strip of frames is named
    relative to it."""

    path: Path | None = None


def read_eval(path: str | Path) -> EvalFile:
    """An `edgeseg eval --engine ... --json` file (EngineEval.to_dict), checked where it is read: the
    accuracy rules compare its numbers, and a NaN mIoU is under no floor, so it would pass every one.
    The report's fields too: the reference's per-class IoU, the drops, the strip of frames (`samples`,
    absent from files written before it)."""
    from edgeseg.inputs import read_json

    data = read_json(path, "eval JSON", EVAL_FIX)
    if not isinstance(data, dict) or "miou" not in data:
        raise EdgesegError(f"{path} is not an eval result (no \"miou\")", EVAL_FIX)
    _check_fraction(data["miou"], "miou", path, "an mIoU between 0 and 1")
    drop = data.get("miou_drop_points")
    if drop is not None:
        _check_number(drop, "miou_drop_points", path, "a finite number of points")
    for key in ("per_class_iou", "per_class_acc"):
        per_class = data.get(key, {})
        if not isinstance(per_class, dict):
            _refuse_eval(path, key, per_class, "an object of class -> IoU")
        for name, value in per_class.items():
            if value is not None:
                _check_fraction(value, f"{key}.{name}", path, "null or a fraction between 0 and 1")
    if "reference" in data and not (isinstance(data["reference"], dict) and "miou" in data["reference"]):
        _refuse_eval(path, "reference", data["reference"], "the reference's metrics")
    _check_per_class(data.get("reference", {}).get("per_class_iou", {}), "reference.per_class_iou", path,
                     _check_fraction, "null or a fraction between 0 and 1")
    _check_per_class(data.get("per_class_iou_drop_points", {}), "per_class_iou_drop_points", path, _check_number,
                     "null or a finite number of points")
    if "samples" in data:
        _check_samples(data["samples"], path)
    out = EvalFile(data)
    out.path = Path(path)
    return out


def _check_per_class(values: object, key: str, path: str | Path, check, should: str) -> None:
    if not isinstance(values, dict):
        _refuse_eval(path, key, values, "an object of class -> value")
    for name, value in values.items():
        if value is not None:
            check(value, f"{key}.{name}", path, should)


def _check_samples(samples: object, path: str | Path) -> None:
    """The strip's file name (relative to the eval JSON), its columns, and each frame's disagreement."""
    if not isinstance(samples, dict) or not isinstance(samples.get("strip"), str) or not samples["strip"]:
        _refuse_eval(path, "samples", samples, "the strip of frames (an object with a \"strip\" file name)")
    columns = samples.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        _refuse_eval(path, "samples.columns", columns, "a list of column names")
    frames = samples.get("frames", [])
    if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
        _refuse_eval(path, "samples.frames", frames, "a list of frames")
    for i, frame in enumerate(frames):
        if frame.get("disagreement") is not None:
            _check_fraction(frame["disagreement"], f"samples.frames[{i}].disagreement", path,
                            "null or a fraction between 0 and 1")


def _check_fraction(value: object, key: str, path: str | Path, should: str) -> None:
    from edgeseg.inputs import is_finite_number

    if not (is_finite_number(value) and 0.0 <= value <= 1.0):
        _refuse_eval(path, key, value, should)


def _check_number(value: object, key: str, path: str | Path, should: str) -> None:
    from edgeseg.inputs import is_finite_number

    if not is_finite_number(value):
        _refuse_eval(path, key, value, should)


def _refuse_eval(path: str | Path, key: str, value: object, should: str) -> None:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise EdgesegError(f"{path}: {key} is {shown}, not {should}",
                       f"{EVAL_FIX} (a NaN mIoU means no labelled pixel was scored: check --data)")


def parse_evals(specs: list[str] | None) -> dict[str | None, dict]:
    """'ENGINE=FILE' or 'FILE' (applies to every engine) -> {engine or None: eval dict}."""
    out: dict[str | None, dict] = {}
    for spec in specs or []:
        name, sep, path = spec.rpartition("=")
        out[name if sep else None] = read_eval(path if sep else spec)
    return out


def check_accuracy(engines: list[str], evals: dict[str | None, dict], min_miou: float | None,
                   max_drop: float | None) -> list[AccuracyCheck]:
    """mIoU floor (percent) and maximum drop against the eval's reference (points) for each evaluated engine."""
    if min_miou is None and max_drop is None:
        return []
    if not evals:
        raise BadInputError("--min-miou / --max-miou-drop need accuracy results",
                            "pass --eval [ENGINE=]FILE.json from `edgeseg eval --engine ... --json`")
    checks = []
    for engine in engines:
        data = evals.get(engine, evals.get(None))
        if data is not None:
            checks.append(_accuracy_check(engine, data, min_miou, max_drop))
    return checks


def _accuracy_check(engine: str, data: dict, min_miou: float | None, max_drop: float | None) -> AccuracyCheck:
    miou = 100.0 * data["miou"]
    drop = data.get("miou_drop_points")
    problems, rules = [], []
    if min_miou is not None:
        rules.append(f"mIoU >= {min_miou:g}%")
        if miou < min_miou:
            problems.append(f"mIoU {miou:.2f}% is under the floor {min_miou:g}%")
    if max_drop is not None:
        rules.append(f"drop <= {max_drop:g} points")
        if drop is None:
            problems.append("the eval has no reference, so no drop (run eval with --reference)")
        elif drop > max_drop:
            problems.append(f"mIoU drop {drop:.2f} points exceeds {max_drop:g}")
    return AccuracyCheck(engine, miou, drop, ", ".join(rules), bool(problems), "; ".join(problems))


def rule_text(threshold: float | None) -> str:
    if threshold is None:
        return "no latency threshold"
    return (f"a latency regression is called when the lower end of the {CONFIDENCE:.0%} bootstrap interval of "
            f"the new/base latency ratio (median over rounds) exceeds {1 + threshold:.2f} (more than {threshold:.0%} "
            "slower)")


def markdown_summary(result: GateResult) -> str:
    """A pull-request comment: verdict, rule, one row per check, notes."""
    failures = sum(c.failed for c in result.latency) + sum(c.failed for c in result.accuracy)
    head = f"## edgeseg gate: {'FAIL' if result.failed else 'PASS'}" + (f" ({failures} failed)" if failures else "")
    lines = [head, "", f"Rule: {rule_text(result.threshold)}.", ""]
    if result.latency:
        lines += ["| engine | baseline | base ms | new ms | new/base | 95% CI | verdict |",
                  "| --- | --- | ---: | ---: | ---: | --- | --- |"]
        for c in result.latency:
            mark = "**regression**" if c.failed else c.verdict
            lines.append(f"| `{c.engine}` | `{c.baseline}` | {c.base_ms:.2f} | {c.new_ms:.2f} | {c.ratio:.3f} | "
                         f"[{c.low:.3f}, {c.high:.3f}]{' paired' if c.paired else ''} | {mark} |")
        lines.append("")
    if result.accuracy:
        lines += ["| engine | mIoU % | drop (points) | rule | verdict |", "| --- | ---: | ---: | --- | --- |"]
        for a in result.accuracy:
            drop = "-" if a.drop is None else f"{a.drop:.2f}"
            lines.append(f"| `{a.engine}` | {a.miou:.2f} | {drop} | {a.rule} | "
                         f"{'**fail**: ' + a.message if a.failed else 'ok'} |")
        lines.append("")
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines).rstrip() + "\n"


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testcase per check, a <failure> for each regression or accuracy miss."""
    cases = [(f"latency.{c.engine}", c.failed, f"new/base {c.ratio:.3f}, {CONFIDENCE:.0%} CI [{c.low:.3f}, "
              f"{c.high:.3f}] vs limit {1 + (c.threshold or 0):.2f}: {c.verdict}") for c in result.latency]
    cases += [(f"accuracy.{a.engine}", a.failed, a.message or f"mIoU {a.miou:.2f}% ({a.rule})")
              for a in result.accuracy]
    suite = ET.Element("testsuite", name="edgeseg-gate", tests=str(len(cases)),
                       failures=str(sum(f for _, f, _ in cases)), errors="0")
    for name, failed, message in cases:
        case = ET.SubElement(suite, "testcase", classname="edgeseg.measure.gate", name=name)
        if failed:
            ET.SubElement(case, "failure", message=message).text = message
        else:
            ET.SubElement(case, "system-out").text = message
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def format_lines(result: GateResult) -> str:
    """Terminal lines: one per check."""
    lines = []
    for c in result.latency:
        lines.append(f"gate {c.engine}: new/base {c.ratio:.3f} [{c.low:.3f}, {c.high:.3f}] ({c.new_ms:.2f} vs "
                     f"{c.base_ms:.2f} ms) limit {1 + c.threshold:.2f}: {c.verdict.upper()}")
    for a in result.accuracy:
        lines.append(f"gate {a.engine}: mIoU {a.miou:.2f}% ({a.rule}): {'FAIL ' + a.message if a.failed else 'OK'}")
    return "\n".join(lines + [f"note: {n}" for n in result.notes])
