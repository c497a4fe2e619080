"""Progress off a terminal is plain timed lines (no carriage returns), on a terminal the tqdm bar.

Why: in a CI log or `make demo > log 2>&1`, tqdm's redraws became hundreds of '\\r' fragments."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakedata import write_camvid

from edgeseg import progress as progress_module
from edgeseg.progress import LineProgress, progress

# A child that runs a few bars the way edgeseg's call sites do, then prints its own wall time on stdout.
CHILD = """
import json, sys, time
from edgeseg.progress import progress
start = time.perf_counter()
bar = progress(range(30), desc="epoch 3/50", unit="batch")
for i in bar:
    time.sleep(0.02)
    bar.set_postfix(loss=f"{1 / (i + 1):.3f}")
with progress(total=3, desc="quick", unit="img", leave=False) as b:  # too short for a line: none
    b.update(3)
with progress(desc="bench", unit="call", leave=False) as b:  # no total, as bench --duration
    for i in range(20):
        time.sleep(0.01)
        b.update()
print(json.dumps({"wall": time.perf_counter() - start}))
"""


def _env(**extra: str) -> dict[str, str]:
    """This environment without the caller's EDGESEG_PROGRESS* settings, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("EDGESEG_PROGRESS")}, **extra}


def _child(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Bytes decoded by hand: text=True would turn every '\\r' into '\\n' and hide what is checked here."""
    run = subprocess.run([sys.executable, "-c", CHILD], env=_env(**env), capture_output=True, timeout=120,
                         check=False)
    run.stdout, run.stderr = run.stdout.decode(), run.stderr.decode()
    return run


def test_off_a_tty_progress_is_a_few_plain_lines_and_a_closing_line():
    every = 0.15
    run = _child({"EDGESEG_PROGRESS_INTERVAL": str(every)})
    assert run.returncode == 0, run.stderr
    err = run.stderr
    assert "\r" not in err and "\x1b" not in err and "█" not in err and "|" not in err
    lines = err.splitlines()
    assert lines and all(line.strip() for line in lines), err  # no blank fragments
    assert not any(line.startswith("quick") for line in lines), err
    # at most one line per interval of the run (each bar may add its closing line), and some in between
    wall = json.loads(run.stdout)["wall"]
    assert len(lines) <= wall / every + 3, (wall, err)
    epoch = [line for line in lines if line.startswith("epoch 3/50: ")]
    assert len(epoch) >= 2, err
    assert epoch[-1].startswith("epoch 3/50: 30/30 batch (100%) done in ") and "loss=0.033" in epoch[-1], err
    assert "elapsed" in epoch[0] and "batch/s" in epoch[-1]
    bench = [line for line in lines if line.startswith("bench: ")]
    assert bench and bench[-1].startswith("bench: 20 call done in "), err  # leave=False, yet it showed lines


def test_by_default_a_short_job_writes_only_its_closing_line():
    run = _child({})
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 3/50: 30/30 batch (100%) done in "), run.stderr


def test_environment_overrides_and_bad_values():
    off = _child({"EDGESEG_PROGRESS": "off", "EDGESEG_PROGRESS_INTERVAL": "0"})
    assert off.returncode == 0 and off.stderr == ""
    bars = _child({"EDGESEG_PROGRESS": "bars"})
    assert bars.returncode == 0 and "\r" in bars.stderr and "30/30" in bars.stderr
    bad = _child({"EDGESEG_PROGRESS": "fancy", "EDGESEG_PROGRESS_INTERVAL": "soon"})
    assert bad.returncode == 0, bad.stderr
    assert "EDGESEG_PROGRESS='fancy' is not one of" in bad.stderr
    assert "EDGESEG_PROGRESS_INTERVAL='soon' is not a number" in bad.stderr
    assert "\r" not in bad.stderr and bad.stderr.count("edgeseg: warning") == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty test on Linux")
def test_on_a_terminal_it_is_the_tqdm_bar():
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 0 columns: tqdm draws nothing
    with subprocess.Popen([sys.executable, "-c", CHILD], env=_env(), stdout=subprocess.DEVNULL, stderr=terminal) as p:
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert p.wait(timeout=120) == 0
    os.close(controller)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "\r" in out and "|" in out and "30/30" in out


def test_line_mode_never_writes_a_carriage_return(monkeypatch):
    """Every tqdm path that redraws or clears: set_postfix, set_description, refresh, write, leave=False,
    nested positions, reset, an early break."""
    monkeypatch.setenv("EDGESEG_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("EDGESEG_PROGRESS", raising=False)
    out = io.StringIO()
    outer = progress(total=2, desc="outer", unit="step", file=out)
    assert isinstance(outer, LineProgress)
    inner = progress(range(5), desc="inner", unit="img", leave=False, file=out, position=1)
    for i in inner:
        inner.set_postfix(i=i)
        inner.set_description("inner!")
        inner.refresh()
        if i == 3:
            break
    inner.close()
    LineProgress.write("a message", file=out)
    outer.update()
    outer.reset(total=4)
    outer.update(4)
    outer.close()
    progress(range(3), desc="hidden", disable=True, file=out).close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text and "hidden" not in text
    lines = text.splitlines()
    assert all(line.strip() for line in lines), text
    assert "a message" in lines
    assert lines[-1].startswith("outer: 4/4 step (100%) done in "), text


def test_line_format():
    bar = LineProgress(total=1_234_567, desc="calibration images", unit="img", file=io.StringIO(), every=0)
    bar.update(617_284)
    bar.set_postfix(loss="1.23", refresh=False)
    line = bar.line()
    assert line.startswith("calibration images: 617284/1234567 img (50%), ") and "elapsed, ETA " in line
    assert line.endswith(", loss=1.23")
    bar.close()


def test_bad_interval_values_fall_back(monkeypatch):
    for value in ("-1", "nan", "inf", "x"):
        monkeypatch.setenv("EDGESEG_PROGRESS_INTERVAL", value)
        assert progress_module.interval() == progress_module.DEFAULT_INTERVAL_S
    monkeypatch.setenv("EDGESEG_PROGRESS_INTERVAL", "2.5")
    assert progress_module.interval() == 2.5


def test_edgeseg_train_piped_to_a_file_logs_lines_not_bar_fragments(tmp_path: Path):
    """The real command, output to a file as in CI: epoch and validation progress as lines."""
    root = write_camvid(tmp_path / "camvid")
    log = tmp_path / "train.log"
    command = [sys.executable, "-m", "edgeseg", "train", "--model", "lraspp", "--data", f"camvid:{root}",
               "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "2", "--crop", "48x64",
               "--workers", "0", "--precision", "fp32", "--threads", "1"]
    with log.open("w") as f:
        code = subprocess.run(command, env=_env(EDGESEG_PROGRESS_INTERVAL="0"), stdout=f, stderr=f,
                              timeout=300, check=False).returncode
    text = log.read_bytes().decode()  # not read_text(): universal newlines would turn '\r' into '\n'
    assert code == 0, text
    assert "\r" not in text, text
    lines = text.splitlines()
    assert all(line.strip() for line in lines), text
    # (the dataset check and validation take under tqdm's 0.1 s refresh here: too short for a line)
    for prefix in ("epoch 1/1: 2/2 batch (100%) done in ", "epoch 1/1  loss ", "best val mIoU "):
        assert any(line.startswith(prefix) for line in lines), (prefix, text)
