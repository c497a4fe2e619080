"""The numbers behind bench tables and the regression gate: percentiles and a bootstrap ratio interval.

Kept free of everything but numpy (and edgeseg.errors) so that the gate can run in CI without an inference
library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgeseg.errors import BadInputError

RERUN_FIX = "re-run `edgeseg bench ... --json FILE` to measure it again; a latency is always more than 0 ms"


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """Latency samples (ms) -> mean, std, min, p50, p90, p99, max (ms)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(values.max())}


def positive_medians(values: Sequence[float], what: str) -> np.ndarray:
    """`values` as float64 when there is at least one and every one is a positive, finite latency.

    Why refuse: a zero median makes the ratio inf or NaN, a negative one flips it, and a NaN makes
    every bootstrap quantile NaN, whose comparisons are all False: the gate then says "ok" to a
    baseline that measured nothing."""
    try:
        array = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{what} are not numbers: {list(values)[:5]}", RERUN_FIX) from None
    if array.ndim != 1 or array.size == 0:
        raise BadInputError(f"{what} are empty: there is no round to compare", RERUN_FIX)
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{what} hold {int(bad.sum())} value(s) that are not a positive, finite latency "
                            f"(round {i + 1} is {array[i]!r} ms)", RERUN_FIX)
    return array


@dataclass(frozen=True)
class RatioInterval:
    """new/base latency: the point estimate (ratio of medians) and a bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float
    paired: bool  # rounds resampled together (same run, interleaved) or each side on its own


def bootstrap_ratio(new: Sequence[float], base: Sequence[float], *, paired: bool = False,
                    confidence: float = 0.95, resamples: int = 4000, seed: int = 0) -> RatioInterval:
    """Percentile-bootstrap interval of median(new) / median(base).

    `new` and `base` are per-round medians, not raw samples: one slow minute on a shared machine
    moves one round, so resampling rounds (not calls) keeps that minute from looking like signal.
    `paired` (same run, same rounds) works on the per-round ratios new[i] / base[i] instead: both
    engines alternated call by call inside round i, so load that came and went hit both, and the
    ratio of the round cancels it; the estimate is the median of those ratios. Unpaired (across runs)
    resamples each side on its own. The seed is fixed: the same files give the same verdict.
    """
    a = positive_medians(new, "the new run's round medians")
    b = positive_medians(base, "the baseline's round medians")
    rng = np.random.default_rng(seed)
    if paired and a.size == b.size:
        per_round = a / b
        point = float(np.median(per_round))
        ratios = np.median(per_round[rng.integers(0, a.size, (resamples, a.size))], axis=1)
    else:
        paired, point = False, float(np.median(a) / np.median(b))
        ratios = (np.median(a[rng.integers(0, a.size, (resamples, a.size))], axis=1)
                  / np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return RatioInterval(point, float(low), float(high), confidence, paired)
