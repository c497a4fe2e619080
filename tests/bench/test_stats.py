"""Percentiles and the bootstrap ratio interval on synthetic samples (fixed seeds, no timing)."""

from __future__ import annotations

import numpy as np
import pytest
from bench_helpers import noisy_rounds

from edgeseg.measure.gate import parse_threshold, verdict
from edgeseg.measure.stats import bootstrap_ratio, summarize


def test_summarize_percentiles():
    stats = summarize(list(range(1, 101)))
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01) and stats["min"] == 1 and stats["max"] == 100
    assert stats["mean"] == pytest.approx(50.5) and stats["std"] == pytest.approx(np.std(range(1, 101), ddof=1))


def medians(rounds):
    return [float(np.median(r)) for r in rounds]


def test_identical_series_straddles_one_and_passes():
    base = medians(noisy_rounds(20.0, seed=1))
    same = medians(noisy_rounds(20.0, seed=2))
    ci = bootstrap_ratio(same, base)
    assert ci.low < 1.0 < ci.high and ci.high < 1.10
    assert verdict(ci.low, ci.high, 0.10) == "ok"


def test_clear_slowdown_is_flagged():
    base = medians(noisy_rounds(20.0, seed=1))
    slow = medians(noisy_rounds(40.0, seed=3))
    ci = bootstrap_ratio(slow, base)
    assert 1.8 < ci.low <= ci.ratio <= ci.high < 2.2
    assert verdict(ci.low, ci.high, 0.10) == "regression"


def test_paired_ratio_cancels_shared_drift():
    rng = np.random.default_rng(0)
    drift = np.linspace(1.0, 1.6, 12) * rng.lognormal(0, 0.01, 12)  # the machine slows down during the run
    base, new = 20.0 * drift, 25.0 * drift
    paired = bootstrap_ratio(new, base, paired=True)
    unpaired = bootstrap_ratio(new, base, paired=False)
    assert paired.paired and paired.ratio == pytest.approx(1.25, rel=0.02)
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 3


def test_same_inputs_same_interval():
    a, b = medians(noisy_rounds(10.0, 4)), medians(noisy_rounds(11.0, 5))
    assert bootstrap_ratio(a, b) == bootstrap_ratio(a, b)


def test_inconclusive_when_interval_straddles_threshold():
    assert verdict(1.05, 1.20, 0.10) == "inconclusive"
    assert verdict(0.80, 0.85, 0.10) == "faster"


@pytest.mark.parametrize("text,value", [("10%", 0.10), ("0.1", 0.10), ("25", 0.25), (" 5 % ", 0.05)])
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


def test_parse_threshold_refuses_garbage():
    with pytest.raises(Exception, match="cannot read regression threshold"):
        parse_threshold("ten percent")
