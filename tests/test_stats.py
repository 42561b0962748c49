"""The statistics: Student-t intervals over seeds, the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from peftbench.leaderboard.stats import (
    bootstrap_standard_error,
    mean_and_ci,
    paired_bootstrap,
    proportion_standard_error,
)


def test_confidence_interval_matches_student_t():
    mean, std, half = mean_and_ci([0.80, 0.82, 0.81])
    assert mean == pytest.approx(0.81) and std == pytest.approx(0.01)
    assert half == pytest.approx(4.302653 * 0.01 / np.sqrt(3), rel=1e-6)  # t(0.975, df=2) = 4.302653
    assert half == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3))
    _, _, five = mean_and_ci([0.1, 0.2, 0.3, 0.4, 0.5])
    assert five == pytest.approx(2.776445 * np.std([0.1, 0.2, 0.3, 0.4, 0.5], ddof=1) / np.sqrt(5), rel=1e-6)
    single = mean_and_ci([0.7])
    assert single[0] == 0.7 and np.isnan(single[1]) and np.isnan(single[2])


def test_paired_bootstrap_is_deterministic_and_sensible():
    rng = np.random.default_rng(0)
    a = (rng.random(500) < 0.85).astype(float)
    b = np.where(rng.random(500) < 0.2, 1 - a, a)  # b flips 20% of a's outcomes
    first, again = paired_bootstrap(a, b), paired_bootstrap(a, b)
    assert first == again
    assert first.difference == pytest.approx(a.mean() - b.mean())
    assert first.ci_low <= first.difference <= first.ci_high
    assert paired_bootstrap(a, a).p_value == 1.0
    clearly = paired_bootstrap(np.ones(300), (np.arange(300) % 2).astype(float))
    assert clearly.p_value < 0.001 and clearly.ci_low > 0.4
    noisy = (rng.random(500) < 0.83).astype(float)  # independent, nearly as good: a moderate p
    moderate = paired_bootstrap(a, noisy)
    assert 0.01 < moderate.p_value < 1 and moderate == paired_bootstrap(a, noisy, seed=0)
    assert paired_bootstrap(a, noisy, seed=1).p_value != moderate.p_value  # the seed is what fixes it


def test_one_seed_is_the_one_level_bootstrap_and_seed_spread_widens_the_two_level_one():
    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.80).astype(float)
    assert paired_bootstrap(base[None, :], base[None, :] * 0 + 1) == paired_bootstrap(base, np.ones(400))
    # Three seeds of A whose accuracies differ a lot (0.82, 0.90, 0.98) against a steady B (0.80):
    a = np.stack([(rng.random(400) < accuracy).astype(float) for accuracy in (0.82, 0.90, 0.98)])
    b = (rng.random(400) < 0.80).astype(float)
    two_level = paired_bootstrap(a, b)
    seed_averaged = paired_bootstrap(a.mean(axis=0), b)  # examples only: ignores the seeds' spread
    assert two_level.difference == pytest.approx(seed_averaged.difference)
    assert two_level.ci_high - two_level.ci_low > 1.3 * (seed_averaged.ci_high - seed_averaged.ci_low)
    assert two_level.p_value >= seed_averaged.p_value
    with pytest.raises(ValueError, match="same, non-empty set of examples"):
        paired_bootstrap(np.ones((2, 10)), np.ones((1, 11)))


def test_the_bootstrap_standard_error_in_closed_form_is_what_resampling_converges_to():
    rng = np.random.default_rng(1)
    correct = (rng.random((2, 300)) < [[0.8], [0.6]]).astype(float)
    draws = rng.integers(0, 300, size=(20_000, 300))
    resampled = np.stack([seed[draws].mean(axis=1) for seed in correct])  # (seeds, resamples)
    closed = bootstrap_standard_error(correct)
    assert closed == pytest.approx(resampled.std(axis=1), rel=0.02)
    shares = correct.mean(axis=1)
    assert closed == pytest.approx([proportion_standard_error(p, 300) for p in shares], rel=1e-12)
    assert bootstrap_standard_error(np.ones(50)) == pytest.approx([0.0])  # every example right: no noise
