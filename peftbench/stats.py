"""The statistics behind the leaderboard: confidence intervals over seeds, paired bootstrap.

Seeds vary initialisation and data order, so a method's accuracy is a distribution: report its
mean with a Student-t 95% interval. Two methods are compared on the *same* test examples, so
the paired bootstrap resamples examples (keeping each example's pair together) to ask whether
the accuracy difference could be noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
SIGNIFICANCE = 0.05


def mean_and_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the Student-t interval.

    One value has no spread: std and half-width are NaN (shown as blank, never as zero).
    """
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    std = float(values.std(ddof=1))
    quantile = scipy_stats.t.ppf(0.5 + confidence / 2, df=len(values) - 1)
    return mean, std, float(quantile * std / math.sqrt(len(values)))


@dataclass(frozen=True)
class PairedComparison:
    difference: float  # mean accuracy of A minus B on the shared examples
    p_value: float  # two-sided, H0: no difference
    ci_low: float  # 95% percentile interval of the difference
    ci_high: float


def paired_bootstrap(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> PairedComparison:
    """Paired bootstrap over examples of per-example correctness (0/1, or a mean over seeds).

    The p-value is the share of resampled differences at least as far from the observed one as
    the observed one is from zero (the bootstrap distribution shifted to the null), with the
    usual +1 so it is never exactly zero.
    """
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("paired bootstrap needs two equally long, non-empty 1-D arrays")
    delta = a - b
    observed = float(delta.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(delta))  # bound memory: chunk x n indices at a time
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        indices = rng.integers(0, len(delta), size=(stop - start, len(delta)))
        means[start:stop] = delta[indices].mean(axis=1)
    extreme = np.sum(np.abs(means - observed) >= abs(observed) - 1e-12)
    p_value = float((extreme + 1) / (resamples + 1)) if observed != 0 else 1.0
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedComparison(observed, min(1.0, p_value), float(low), float(high))
