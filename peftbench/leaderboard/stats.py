"""The statistics behind the leaderboard: confidence intervals over seeds, paired bootstrap.

Seeds vary initialisation and data order, so a method's accuracy is a distribution: report its
mean with a Student-t 95% interval. Two methods are compared on the *same* test examples by a
two-level bootstrap: each resample draws test examples (the same ones for both methods: paired)
and, within each method, its seeds, so the p-value reflects both the test set's sampling noise
and the spread over seeds. With one seed per method it is the usual paired bootstrap.
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
    """Two-level paired bootstrap of per-example correctness: (seeds x examples) 0/1 per method.

    A 1-D array is one seed. Each resample draws examples with replacement (the same for both:
    paired) and each method's seeds with replacement; the statistic is the difference of the
    mean accuracies. The p-value is the share of resampled differences at least as far from the
    observed one as the observed one is from zero (the bootstrap distribution shifted to the
    null), with the usual +1 so it is never exactly zero.
    """
    a, b = (
        np.atleast_2d(np.asarray(correct_a, dtype=float)),
        np.atleast_2d(np.asarray(correct_b, dtype=float)),
    )
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.size == 0 or b.size == 0:
        raise ValueError("paired bootstrap needs correctness on the same, non-empty set of examples")
    observed = float(a.mean() - b.mean())
    examples = a.shape[1]
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // (examples * max(len(a), len(b))))  # bound memory per step
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        counts = _counts(rng.integers(0, examples, size=(stop - start, examples)))
        means[start:stop] = _resampled_mean(a, counts, rng) - _resampled_mean(b, counts, rng)
    extreme = np.sum(np.abs(means - observed) >= abs(observed) - 1e-12)
    p_value = float((extreme + 1) / (resamples + 1)) if observed != 0 else 1.0
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedComparison(observed, min(1.0, p_value), float(low), float(high))


def _counts(indices: np.ndarray) -> np.ndarray:
    """(resamples x examples) how often each resample drew each example."""
    resamples, examples = indices.shape
    flat = (indices + examples * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * examples).reshape(resamples, examples).astype(float)


def _resampled_mean(correct: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per resample, the mean accuracy over the resampled examples and the resampled seeds.

    A product with the draw counts instead of gathering the drawn examples: the sums are of whole
    numbers, exact in any order, so the result is the gather's to the bit, many times faster.
    """
    per_seed = correct @ counts.T / counts.shape[1]  # (seeds, resamples)
    if len(correct) == 1:
        return per_seed[0]
    draws = rng.integers(0, len(correct), size=(counts.shape[0], len(correct)))
    return per_seed.T[np.arange(counts.shape[0])[:, None], draws].mean(axis=1)


def resampled_accuracies(
    rows: list[np.ndarray], resamples: int, rng: np.random.Generator, paired: bool
) -> np.ndarray:
    """(rows x resamples) mean accuracies of rows of one table, each resample drawing every row's
    seeds with replacement and, when ``paired``, test examples too: the same ones for every row.

    ``paired``: each row is its (seeds x examples) correctness, all on the same examples;
    otherwise each row is its per-seed accuracies (1-D), and only the seeds are drawn.
    """
    if not paired:
        out = np.empty((len(rows), resamples))
        for i, per_seed in enumerate(rows):
            draws = rng.integers(0, len(per_seed), size=(resamples, len(per_seed)))
            out[i] = np.asarray(per_seed, dtype=float)[draws].mean(axis=1)
        return out
    examples = rows[0].shape[1]
    out = np.empty((len(rows), resamples))
    chunk = max(1, 2_000_000 // (examples * max(len(row) for row in rows)))  # bound memory per step
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        counts = _counts(rng.integers(0, examples, size=(stop - start, examples)))
        for i, row in enumerate(rows):
            out[i, start:stop] = _resampled_mean(row, counts, rng)
    return out


def bootstrap_standard_error(correct: np.ndarray) -> np.ndarray:
    """Per seed, the standard error the bootstrap over test examples gives its accuracy.

    ``correct`` is (seeds x examples) 0/1 (a 1-D array is one seed). The bootstrap's standard
    error of a mean of ``n`` values is their plug-in standard deviation over ``sqrt(n)``
    (``sqrt(p (1 - p) / n)`` for an accuracy ``p``) in the limit of infinitely many resamples:
    computed in that closed form, it is exact and carries no resampling noise.
    """
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    return correct.std(axis=1, ddof=0) / math.sqrt(correct.shape[1])


def proportion_standard_error(share: float, examples: int) -> float:
    """The bootstrap standard error of an accuracy ``share`` measured on ``examples`` examples."""
    return math.sqrt(share * (1.0 - share) / examples)
