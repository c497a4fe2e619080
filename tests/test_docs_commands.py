"""Every `edgeseg ...` command in the README and docs/ is one the CLI accepts as written.

Commands come from fenced code blocks (backslash continuations joined, `# comments` and a trailing
`; done` dropped) and from inline code spans that start with `edgeseg`. Each is parsed by the real
parser (edgeseg.cli.main.build_parser), with every flag spelt out in full (no abbreviations) and every
value converted as the command would. The notation the docs use for usage lines is understood:

- placeholders (`PATH`, `DIR`, `N`, `HxW`, `$1`, `...` after a flag) stand for any value; where the
  flag converts its value (an int, a size, a choice) a valid one is put in their place;
- `a|b|c` alternatives: each must parse;
- `[optional ...]` groups: the command must parse without them and with them;
- `...` anywhere else (more of the same) is dropped.

A fenced command must parse whole. An inline span often names a command or a flag in a sentence
(`edgeseg eval --checkpoint`, `edgeseg eval --output-stride 8`), so there the required arguments it
leaves out may be missing, and so may the value of a flag it only names; everything else must parse.

The cheap commands (`edgeseg doctor`, `edgeseg models`, `--help` of every subcommand the docs name)
also run for real, and every `make TARGET` the docs name is a target of the Makefile.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeseg.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *(p for p in (ROOT / d / "README.md" for d in ("tools", "engines", "calibration")) if p.is_file())]

PLACEHOLDER = re.compile(r"^(\$\w+|\$\{\w+\}|\$\(\w+\)|[A-Z][A-Za-z0-9_]*|\.\.\.)$")
SAMPLES = ("1", "360x480", "0.5", "0.5,2.0", "10%", "x")  # for a placeholder where the flag converts its value
FENCE = re.compile(r"^\s*(```|~~~)")
SPAN = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)*?)`(?!`)")  # inline code; may wrap lines, not paragraphs


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # as written, continuations joined
    inline: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


# -- extraction -------------------------------------------------------------------------------------------
def extract(text: str, name: str, prefix: str = "edgeseg") -> list[DocCommand]:
    """The `prefix ...` commands in a Markdown text: fenced lines first, then inline spans."""
    found, prose, fence = [], [], None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m and fence is None:
            fence = m.group(1)
            prose.append("")
        elif m and line.strip().startswith(fence):
            fence = None
            prose.append("")
        elif fence is not None:
            start, joined = i, line
            while joined.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                joined = joined.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            if joined.split()[:1] == [prefix]:
                found.append(DocCommand(f"{name}:{start + 1}", joined.strip(), inline=False))
            prose.extend([""] * (i - start + 1))
        else:
            prose.append(line)
        i += 1
    body = "\n".join(prose)
    for m in SPAN.finditer(body):
        span = " ".join(m.group(1).split())
        if span.split()[:1] == [prefix] and len(span.split()) > 1:  # not the program's name alone
            found.append(DocCommand(f"{name}:{body.count(chr(10), 0, m.start()) + 1}", span, inline=True))
    return found


def doc_commands(prefix: str = "edgeseg") -> list[DocCommand]:
    return [c for path in DOC_FILES for c in extract(path.read_text(), str(path.relative_to(ROOT)), prefix)]


def tokens(text: str) -> list[str]:
    """Shell words, up to the end of the command (`; done`, `&&`, `|`, `>`)."""
    words = []
    for word in shlex.split(text, comments=True):
        if word in ("&&", "||", "|", ";", ">", ">>"):
            break
        if word.endswith(";"):
            words.append(word[:-1])
            break
        words.append(word)
    return words


def variants(words: list[str]) -> list[list[str]]:
    """The concrete commands a usage line stands for: [optional] groups left out and put in, and each
    alternative of every a|b|c (the others at their first)."""
    shapes = []
    for include in (False, True):
        out, depth = [], 0
        for w in words:
            core = w.lstrip("[")
            depth += len(w) - len(core)
            closed = len(core) - len(core.rstrip("]"))
            core = core.rstrip("]")
            if core and (include or depth == 0):
                out.append(core)
            depth = max(0, depth - closed)
        if out not in shapes:
            shapes.append(out)
    result = []
    for shape in shapes:
        alts = [w.split("|") if "|" in w and " " not in w and not w.startswith("-") else [w] for w in shape]
        first = [a[0] for a in alts]
        for k, options in enumerate(alts):
            for option in options[1:]:
                result.append(first[:k] + [option] + first[k + 1:])
        result.append(first)
    unique = []
    for v in result:
        if v not in unique:
            unique.append(v)
    return unique


# -- checking against the parser -----------------------------------------------------------------------------
class ParseFailed(Exception):
    pass


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _sample_for(action: argparse.Action, value: str) -> str:
    """A placeholder value made concrete where the flag checks it: its first choice, or a sample its type takes."""
    if not PLACEHOLDER.match(value):
        return value
    if action.choices:
        return str(list(action.choices)[0])
    if action.type in (None, str):
        return value
    for sample in SAMPLES:
        try:
            action.type(sample)
            return sample
        except Exception:  # noqa: BLE001 - any failure means: try the next sample
            continue
    return value


def concrete(words: list[str], sub: argparse.ArgumentParser) -> list[str]:
    """Placeholders given valid values; `...` kept as the value of a flag, dropped elsewhere. Unknown
    flags and abbreviations are refused here (argparse would accept a unique prefix)."""
    options = sub._option_string_actions
    out, i = [], 0
    while i < len(words):
        w = words[i]
        if w.startswith("-") and w != "-" and not re.match(r"^-\d", w):
            flag = w.split("=", 1)[0]
            if flag not in options:
                raise ParseFailed(f"unknown flag {flag} for `edgeseg {sub.prog.split()[-1]}`")
            action = options[flag]
            out.append(w)
            i += 1
            if "=" in w or action.nargs == 0:
                continue
            count = 0  # the values it takes: one, or (nargs + / *) up to the next flag, `...` after the first dropped
            while i < len(words) and not (words[i].startswith("-") and not re.match(r"^-\d", words[i])):
                if words[i] != "..." or count == 0:
                    out.append(_sample_for(action, words[i]))
                i += 1
                count += 1
                if action.nargs in (None, "?") or isinstance(action.nargs, int) and count >= action.nargs:
                    break
            continue
        if w != "...":
            out.append(w)
        i += 1
    return out


def parse(text: str, lenient: bool = False) -> list[argparse.Namespace]:
    """Parse every variant of a documented command; raise ParseFailed with argparse's message.
    `lenient` (inline spans): missing required arguments pass, and so does a missing value where the span
    names one flag (`edgeseg eval --checkpoint`)."""
    words = tokens(text)
    assert words[0] == "edgeseg", text
    parser = build_parser()
    subs = subparsers(parser)
    results = []
    for variant in variants(words[1:]):
        if not variant or variant[0].startswith("-"):
            args = variant
        else:
            if variant[0] not in subs:
                raise ParseFailed(f"no subcommand {variant[0]!r} (there are: {', '.join(subs)})")
            args = [variant[0], *concrete(variant[1:], subs[variant[0]])]
        try:
            results.append(_parse_raising(parser, args))
        except ParseFailed as exc:
            msg = str(exc)
            missing = "arguments are required" in msg or "is required" in msg
            flags = [a for a in args if a.startswith("--")]
            named = msg.endswith("expected one argument") and flags == args[-1:]  # `edgeseg eval --checkpoint`
            if not (lenient and (missing or named)):
                raise ParseFailed(f"{' '.join(shlex.quote(a) for a in args)}: {msg}") from None
    return results


def _parse_raising(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    def error(self, message):  # every (sub)parser: raise instead of printing usage and exiting
        raise ParseFailed(message)

    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        return parser.parse_args(args)
    finally:
        argparse.ArgumentParser.error = original


# -- the tests --------------------------------------------------------------------------------------------
COMMANDS = doc_commands()


def test_the_docs_hold_the_commands_this_test_is_for():
    texts = [c.text for c in COMMANDS]
    assert len(COMMANDS) > 40, texts
    assert {t.split()[1] for t in texts if len(t.split()) > 1} >= {"models", "train", "eval", "demo", "export",
                                                                  "build", "doctor", "bench", "compare",
                                                                  "report", "stream"}
    assert any(not c.inline for c in COMMANDS) and any(c.inline for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(command):
    try:
        parse(command.text, lenient=command.inline)
    except ParseFailed as exc:
        pytest.fail(f"{command.where}: `{command.text}` does not run as written: {exc}", pytrace=False)


@pytest.mark.parametrize("text", [
    "edgeseg build --model deeplabv3plus --precision int8",  # the README's first two commands (issue #18)
    "edgeseg stream --camera 0",
])
def test_the_readme_quick_start_commands_parse(text):
    (args,) = parse(text)
    assert args.command == text.split()[1]


def test_the_checker_catches_what_it_is_for():
    """A wrong flag, a bad choice, an abbreviation, a missing value, an unknown subcommand, a missing
    required argument (in a fenced block) all fail; the notation passes."""
    for bad in ["edgeseg stream --engin E --camera 0", "edgeseg build --precision int4",
                "edgeseg bench --iter 5", "edgeseg eval --data", "edgeseg serve --port 1",
                "edgeseg eval --json x.json", "edgeseg build --precision fp32|int4",
                "edgeseg bench --engine A [--rounds many]", "edgeseg models --input-size 360-480"]:
        with pytest.raises(ParseFailed):
            parse(bad)
    parse("edgeseg eval --checkpoint", lenient=True)  # a flag named in a sentence
    with pytest.raises(ParseFailed):
        parse("edgeseg eval --engine E --json", lenient=True)  # a command, short of a value
    parse("edgeseg eval --output-stride 8", lenient=True)
    with pytest.raises(ParseFailed):
        parse("edgeseg eval --output-strid 8", lenient=True)
    (args,) = parse("edgeseg demo --data SPEC --out DIR --epochs N --backend B")
    assert args.epochs == 1 and args.data == "SPEC"
    assert len(parse("edgeseg build --precision fp32|fp16 --backend auto|onnxruntime")) == 3
    both = parse("edgeseg bench --engine engines/A [--engine engines/B ...] --data camvid:PATH:val [--json b.json]")
    assert [a.engine for a in both] == [["engines/A"], ["engines/A", "engines/B"]] and both[1].json == "b.json"
    (args,) = parse("edgeseg build --checkpoint X --backend $1 --precision $2; done")
    assert args.backend == "auto" and args.precision == "fp32"


def test_extraction_joins_continuations_and_reads_spans():
    text = ("intro `edgeseg models --json` and `edgeseg\neval --data X` and `--not-a-command`\n\n"
            "```\nedgeseg stream --engine E --gst \"a ! \\\n  b\"   # comment\nnot edgeseg\n  edgeseg doctor\n```\n"
            "after `edgeseg doctor`\n")
    found = extract(text, "x.md")
    assert [(c.where, c.text, c.inline) for c in found] == [
        ("x.md:5", 'edgeseg stream --engine E --gst "a ! b"   # comment', False),
        ("x.md:8", "edgeseg doctor", False),
        ("x.md:1", "edgeseg models --json", True),
        ("x.md:1", "edgeseg eval --data X", True),
        ("x.md:10", "edgeseg doctor", True),
    ]
    assert tokens(found[0].text) == ["edgeseg", "stream", "--engine", "E", "--gst", "a ! b"]


def test_every_subcommand_the_docs_name_has_help(capsys):
    named = sorted({tokens(c.text)[1] for c in COMMANDS if len(tokens(c.text)) > 1
                    and not tokens(c.text)[1].startswith("-")})
    for sub in named:
        with pytest.raises(SystemExit) as info:
            main([sub, "--help"])
        assert info.value.code == 0, sub
        assert f"usage: edgeseg {sub}" in capsys.readouterr().out


def test_edgeseg_doctor_runs_as_documented(capsys):
    assert any(c.text.split("#")[0].split() == ["edgeseg", "doctor"] for c in COMMANDS)
    assert main(["doctor"]) == 0
    assert "onnxruntime" in capsys.readouterr().out


@pytest.mark.slow  # builds every zoo network on the meta device: seconds to tens of seconds
def test_edgeseg_models_runs_as_documented(capsys):
    runs = {tuple(tokens(c.text)[1:]) for c in COMMANDS if tokens(c.text)[1:2] == ["models"]}
    assert ("models",) in runs
    for words in sorted(runs):
        if any(PLACEHOLDER.match(w) for w in words):
            continue
        assert main(list(words)) == 0, words
        assert "fastscnn" in capsys.readouterr().out


def test_make_targets_in_the_docs_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, flags=re.MULTILINE)) - {".PHONY"}
    variables = set(re.findall(r"^([A-Z_]+)\s*[?:]?=", makefile, flags=re.MULTILINE))
    makes = doc_commands("make")
    assert {"demo", "test"} <= {tokens(c.text)[1] for c in makes}
    for c in makes:
        words = tokens(c.text)[1:]
        for w in words:
            if "=" in w:
                assert w.split("=")[0] in variables, f"{c}: the Makefile has no variable {w.split('=')[0]}"
            else:
                assert w in targets, f"{c}: the Makefile has no target {w!r} (targets: {sorted(targets)})"


def test_each_alternative_in_the_docs_is_checked():
    """The alternatives in the docs (fp32|fp16, auto|onnxruntime|...) are each checked, so none is a
    choice the parser lost."""
    seen = {}
    for c in COMMANDS:
        for v in variants(tokens(c.text)[1:]):
            for a, b in itertools.pairwise(v):
                if a in ("--precision", "--backend", "--view", "--tail", "--calib-method"):
                    seen.setdefault(a, set()).add(b)
    assert {"fp32", "fp16", "int8"} <= seen["--precision"]
    assert {"auto", "onnxruntime", "openvino", "tensorrt", "torch"} <= seen["--backend"]
