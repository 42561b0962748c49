"""The metrics tasks are scored by: each against a value worked out by hand, each recomputed on
bootstrap resamples exactly as the library computes it on the drawn examples, and written for people."""

from __future__ import annotations

import math

import numpy as np
import pytest

from peftbench.leaderboard.stats import Outcomes, paired_bootstrap
from peftbench.tasks.metrics import (
    ACCURACY,
    BUILTIN_METRICS,
    F1,
    MACRO_F1,
    MCC,
    MSE,
    PEARSON,
    SPEARMAN,
    draw_counts,
)

# Two classes: TP=1 (0), FP=1 (1), FN=1 (2), TN=2 (3, 4).
PREDICTED = np.array([1, 1, 0, 0, 0])
TRUE = np.array([1, 0, 1, 0, 0])
# Values: errors 0, 1, 1, 1; the true values' ranks are 1, 3, 2, 4.
PREDICTED_VALUES = np.array([1.0, 2.0, 3.0, 4.0])
TRUE_VALUES = np.array([1.0, 3.0, 2.0, 5.0])


def test_classification_metrics_match_the_hand_computed_values():
    assert ACCURACY.score(PREDICTED, TRUE) == pytest.approx(3 / 5)
    assert F1.score(PREDICTED, TRUE) == pytest.approx(2 * 1 / (2 + 2))  # 2 TP / (predicted + actual)
    # class 1: 2*1/(2+2) = 1/2; class 0: 2*2/(3+3) = 2/3
    assert MACRO_F1.score(PREDICTED, TRUE) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(2*2*3*3)
    assert MCC.score(PREDICTED, TRUE) == pytest.approx(1 / 6)


def test_macro_f1_over_three_classes_counts_a_missed_class_and_leaves_out_an_absent_one():
    # per-class F1: 1, 2/3, 2/3
    assert MACRO_F1.score(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])) == pytest.approx(7 / 9)
    # a constant prediction: the class never predicted scores 0
    assert MACRO_F1.score(np.zeros(4, dtype=int), np.array([0, 0, 1, 1])) == pytest.approx((2 / 3 + 0) / 2)
    # class 2 predicted once but never present: it counts, with F1 = 0; class 3 (in neither) does not
    assert MACRO_F1.score(np.array([0, 2, 1, 1]), np.array([0, 0, 1, 1])) == pytest.approx(
        (2 / 3 + 1 + 0) / 3
    )


def test_regression_metrics_match_the_hand_computed_values():
    assert MSE.score(PREDICTED_VALUES, TRUE_VALUES) == pytest.approx(3 / 4)
    # rank differences 0, 1, 1, 0: 1 - 6 * 2 / (4 * (16 - 1))
    assert SPEARMAN.score(PREDICTED_VALUES, TRUE_VALUES) == pytest.approx(0.8)
    # deviations (-1.5, -.5, .5, 1.5) and (-1.75, .25, -.75, 2.25): 5.5 / sqrt(5 * 8.75)
    assert PEARSON.score(PREDICTED_VALUES, TRUE_VALUES) == pytest.approx(5.5 / math.sqrt(5 * 8.75))
    assert math.isnan(PEARSON.score(np.full(4, 0.5), TRUE_VALUES))  # a constant: undefined, not 0
    assert math.isnan(ACCURACY.score(np.array([]), np.array([])))


def test_each_metric_says_its_direction_and_is_written_in_its_own_units():
    assert [m.name for m in BUILTIN_METRICS.values() if not m.higher_is_better] == ["mse"]
    assert MSE.better(0.1, 0.2) and not ACCURACY.better(0.1, 0.2)
    assert (ACCURACY.header, ACCURACY.text(0.8123), ACCURACY.number(0.05, signed=True)) == (
        "accuracy %", "81.23%", "+5.00",
    )  # fmt: skip
    assert (SPEARMAN.header, SPEARMAN.text(0.8123), MSE.text(0.01234), MCC.number(math.nan)) == (
        "Spearman ρ", "0.812", "0.0123", "",
    )  # fmt: skip


@pytest.mark.parametrize("metric", list(BUILTIN_METRICS.values()), ids=list(BUILTIN_METRICS))
def test_every_metric_on_resamples_is_the_library_value_on_the_drawn_examples(metric):
    rng = np.random.default_rng(3)
    if metric.name in ("pearson", "spearman", "mse"):
        references = rng.integers(0, 6, 60) / 5  # ties, as STS-B's scores have
        predictions = references + rng.normal(0, 0.3, 60)
        predictions[:10] = predictions[10]  # ties among the predictions too
    else:
        classes = 2 if metric.name == "f1" else 4
        references = rng.integers(0, classes, 60)
        predictions = np.where(rng.random(60) < 0.6, references, rng.integers(0, classes, 60))
    counts = draw_counts(rng.integers(0, 60, size=(25, 60)))
    resampled = metric.on_resamples(predictions, references, counts)
    for row, value in zip(counts, resampled, strict=True):
        drawn = np.repeat(np.arange(60), row.astype(int))
        assert value == pytest.approx(metric.score(predictions[drawn], references[drawn]), abs=1e-12)


def test_the_paired_bootstrap_of_a_correlation_recomputes_it_and_tells_a_better_row_apart():
    rng = np.random.default_rng(0)
    truth = rng.random(200)
    good = Outcomes(truth + rng.normal(0, 0.1, (2, 200)), truth, SPEARMAN)
    poor = Outcomes(truth + rng.normal(0, 1.0, (2, 200)), truth, SPEARMAN)
    observed = np.mean([SPEARMAN.score(row, truth) for row in good.predictions]) - np.mean(
        [SPEARMAN.score(row, truth) for row in poor.predictions]
    )
    compared = paired_bootstrap(good, poor, resamples=500)
    assert compared.difference == pytest.approx(observed) and compared.difference > 0.3
    assert compared.p_value < 0.01 and compared.ci_low > 0
    same = paired_bootstrap(good, good, resamples=200)
    assert same.difference == 0 and same.p_value == 1.0


def test_lower_is_better_keeps_the_sign_of_the_difference():
    truth = np.linspace(0, 1, 50)
    close, far = Outcomes([truth + 0.01], truth, MSE), Outcomes([truth + 0.5], truth, MSE)
    compared = paired_bootstrap(close, far, resamples=200)
    assert compared.difference == pytest.approx(0.0001 - 0.25) and compared.p_value < 0.01


@pytest.mark.parametrize("metric", [F1, MACRO_F1, MCC], ids=["f1", "macro_f1", "mcc"])
def test_a_test_split_of_one_class_predicted_as_one_class_is_resampled_like_the_library(metric):
    zeros = np.zeros(6, dtype=int)
    counts = draw_counts(np.random.default_rng(0).integers(0, 6, size=(3, 6)))
    assert metric.on_resamples(zeros, zeros, counts).tolist() == [metric.score(zeros, zeros)] * 3
