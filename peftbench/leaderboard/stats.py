"""The statistics behind the leaderboard: confidence intervals over seeds, paired bootstrap.

Seeds vary initialisation and data order, so a method's score (the task's primary metric) is a
distribution: report its mean with a Student-t 95% interval. Two methods are compared on the
*same* test examples by a two-level bootstrap: each resample draws test examples (the same ones
for both methods: paired) and, within each method, its seeds, so the p-value reflects both the
test set's sampling noise and the spread over seeds. With one seed per method it is the usual
paired bootstrap. The metric is recomputed on each resample: a mean of per-example values
(accuracy) by summing draw counts, the others (F1, correlations) from the drawn examples.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from peftbench.tasks.metrics import STANDARD_ERROR_RESAMPLES, Metric, draw_counts

BOOTSTRAP_RESAMPLES = 10_000
#: Resamples where the metric is recomputed on each (F1, MCC, correlations): each costs far more
#: than summing correctness, and 2,000 still put a p-value of 0.05 within about ±0.005.
RECOMPUTED_RESAMPLES = 2_000
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
class Outcomes:
    """One leaderboard row's test outcomes, which the bootstrap resamples: every completed seed's
    predictions on the same test examples, the references and the metric that scores them.

    Without a metric, ``predictions`` are already per-example values whose mean over examples is
    the score (1 where right, for accuracy).
    """

    predictions: np.ndarray  # (seeds x examples)
    references: np.ndarray | None = None  # (examples,)
    metric: Metric | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "predictions", np.atleast_2d(np.asarray(self.predictions)))

    @property
    def seeds(self) -> int:
        return len(self.predictions)

    @property
    def examples(self) -> int:
        return self.predictions.shape[1]

    @functools.cached_property
    def values(self) -> np.ndarray | None:
        """(seeds x examples) per-example values whose mean is the score, where the metric is a
        mean of them (accuracy, squared error); ``None`` where it is not (F1, correlations)."""
        if self.metric is None:
            return self.predictions.astype(float)
        if self.metric.per_example is None:
            return None
        return np.asarray(self.metric.per_example(self.predictions, self.references), dtype=float)

    def observed(self) -> float:
        """The row's score: the mean over its seeds of each seed's score."""
        if self.values is not None:
            return float(self.values.mean())
        return float(np.mean([self.metric.score(row, self.references) for row in self.predictions]))

    def per_seed(self, counts: np.ndarray) -> np.ndarray:
        """(seeds x resamples) each seed's score on each resample of the test examples.

        A mean of per-example values is a product with the draw counts instead of a gather of the
        drawn examples: the sums are of whole numbers for accuracy, exact in any order, so the
        result is the gather's to the bit, many times faster. Other metrics are recomputed on each
        resample (``Metric.on_resamples``)."""
        if self.values is not None:
            return self.values @ counts.T / counts.shape[1]
        return np.stack([self.metric.on_resamples(row, self.references, counts) for row in self.predictions])


@dataclass(frozen=True)
class PairedComparison:
    difference: float  # mean score of A minus B on the shared examples
    p_value: float  # two-sided, H0: no difference
    ci_low: float  # 95% percentile interval of the difference
    ci_high: float


def paired_bootstrap(
    a: Outcomes | np.ndarray,
    b: Outcomes | np.ndarray,
    resamples: int | None = None,
    seed: int = BOOTSTRAP_SEED,
) -> PairedComparison:
    """Two-level paired bootstrap of two rows' test outcomes (an array: per-example correctness,
    seeds x examples; a 1-D array is one seed).

    Each resample draws examples with replacement (the same for both: paired) and each row's seeds
    with replacement; the statistic is the difference of the rows' scores on it (the metric
    recomputed on the drawn examples, or for accuracy the mean of the drawn correctness). The
    p-value is the share of resampled differences at least as far from the observed one as the
    observed one is from zero (the bootstrap distribution shifted to the null), with the usual +1
    so it is never exactly zero. The difference is signed as the metric is: for a metric where
    lower is better, a negative difference favours ``a``. ``resamples`` defaults to
    ``BOOTSTRAP_RESAMPLES`` where the metric is a mean of per-example values (accuracy), else to
    ``RECOMPUTED_RESAMPLES``.
    """
    a, b = _outcomes(a), _outcomes(b)
    if resamples is None:
        summed = a.values is not None and b.values is not None
        resamples = BOOTSTRAP_RESAMPLES if summed else RECOMPUTED_RESAMPLES
    if a.examples != b.examples or a.predictions.size == 0 or b.predictions.size == 0:
        raise ValueError("paired bootstrap needs outcomes on the same, non-empty set of examples")
    observed = a.observed() - b.observed()
    if not np.isfinite(observed):  # a correlation of constant predictions: nothing to compare
        return PairedComparison(observed, math.nan, math.nan, math.nan)
    examples = a.examples
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // (examples * max(a.seeds, b.seeds)))  # bound memory per step
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        counts = draw_counts(rng.integers(0, examples, size=(stop - start, examples)))
        means[start:stop] = _resampled_score(a, counts, rng) - _resampled_score(b, counts, rng)
    finite = means[np.isfinite(means)]  # a resample on which a correlation is undefined says nothing
    extreme = np.sum(np.abs(finite - observed) >= abs(observed) - 1e-12)
    p_value = float((extreme + 1) / (len(finite) + 1)) if observed != 0 else 1.0
    low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) else (math.nan, math.nan)
    return PairedComparison(observed, min(1.0, p_value), float(low), float(high))


def _outcomes(row: Outcomes | np.ndarray) -> Outcomes:
    return row if isinstance(row, Outcomes) else Outcomes(np.asarray(row, dtype=float))


def _resampled_score(row: Outcomes, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per resample, the row's score over the resampled examples and the resampled seeds."""
    per_seed = row.per_seed(counts)  # (seeds, resamples)
    if row.seeds == 1:
        return per_seed[0]
    draws = rng.integers(0, row.seeds, size=(counts.shape[0], row.seeds))
    return per_seed.T[np.arange(counts.shape[0])[:, None], draws].mean(axis=1)


def resampled_scores(
    rows: list[Outcomes] | list[np.ndarray], resamples: int, rng: np.random.Generator, paired: bool
) -> np.ndarray:
    """(rows x resamples) scores of rows of one table, each resample drawing every row's seeds
    with replacement and, when ``paired``, test examples too: the same ones for every row.

    ``paired``: each row is its ``Outcomes``, all on the same examples; otherwise each row is its
    per-seed scores (1-D), and only the seeds are drawn.
    """
    if not paired:
        out = np.empty((len(rows), resamples))
        for i, per_seed in enumerate(rows):
            draws = rng.integers(0, len(per_seed), size=(resamples, len(per_seed)))
            out[i] = np.asarray(per_seed, dtype=float)[draws].mean(axis=1)
        return out
    rows = [_outcomes(row) for row in rows]
    examples = rows[0].examples
    out = np.empty((len(rows), resamples))
    chunk = max(1, 2_000_000 // (examples * max(row.seeds for row in rows)))  # bound memory per step
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        counts = draw_counts(rng.integers(0, examples, size=(stop - start, examples)))
        for i, row in enumerate(rows):
            out[i, start:stop] = _resampled_score(row, counts, rng)
    return out


def bootstrap_standard_error(
    row: Outcomes | np.ndarray, resamples: int = STANDARD_ERROR_RESAMPLES
) -> np.ndarray:
    """Per seed, the standard error the bootstrap over test examples gives its score.

    ``row`` is a row's ``Outcomes``, or (seeds x examples) per-example values such as 0/1
    correctness (a 1-D array is one seed). Each seed's is its metric's ``Metric.standard_error``:
    closed-form where the score is a mean of per-example values (accuracy, squared error; for an
    accuracy ``p``, ``sqrt(p (1 - p) / n)``), else over ``resamples`` fixed-seed resamples.
    """
    row = _outcomes(row)
    if row.metric is None:
        return row.values.std(axis=1, ddof=0) / math.sqrt(row.examples)
    return np.array([row.metric.standard_error(p, row.references, resamples) for p in row.predictions])


def proportion_standard_error(share: float, examples: int) -> float:
    """The bootstrap standard error of an accuracy ``share`` measured on ``examples`` examples."""
    return math.sqrt(share * (1.0 - share) / examples)
