"""Leaderboard diagnostics: each flag's rule on constructed records (flagged, not, at the boundary),
and the flags in the frame, the terminal table, the CSV and the site."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from peftbench.docgen.leaderboard_pages import split_tables, table_page
from peftbench.leaderboard import Leaderboard
from peftbench.leaderboard.diagnostics import (
    LEGEND,
    examples_behind,
    spread_ratio,
    still_rising,
)
from peftbench.leaderboard.report import legend
from peftbench.records import RunRecord, read_records
from peftbench.tasks.metrics import display_metric

N = 400  # validation and test examples of the constructed runs


def run(method: str, seed: int, curve: list[int] | None = None, correct: int = 320) -> RunRecord:
    """A complete final run: its validation curve as counts of ``N`` examples right at steps 10,
    20, ...; ``correct`` of ``N`` test examples right."""
    references = [i % 2 for i in range(N)]
    predictions = [r if i < correct else 1 - r for i, r in enumerate(references)]
    points = [[10 * (i + 1), k / N] for i, k in enumerate(curve or [])]
    return RunRecord(
        run_id=f"{method}-seed{seed}", status="complete", model="m", dataset="d", method=method, seed=seed,
        metrics={"accuracy": correct / N, "macro_f1": 0.5, "loss": 0.5,
                 "validation_accuracy": points[-1][1] if points else 0.5},
        curves={"validation_accuracy": points} if points else {}, predictions=predictions,
        references=references, reload={"predictions_identical": True},
    )  # fmt: skip


def test_a_seed_is_still_rising_only_above_every_earlier_point_by_more_than_one_standard_error():
    # 320 of 400 right: the standard error is sqrt(0.8 * 0.2 / 400) = 0.02, i.e. 8 examples
    assert still_rising([[1, 300 / N], [2, 311 / N], [3, 320 / N]]) is True  # 9 examples above
    assert still_rising([[1, 300 / N], [2, 312 / N], [3, 320 / N]]) is False  # exactly 8: not more
    assert still_rising([[1, 311 / N], [2, 200 / N], [3, 320 / N]]) is True  # the best earlier counts,
    assert still_rising([[1, 315 / N], [2, 200 / N], [3, 320 / N]]) is False  # not the previous point
    assert still_rising([[3, 320 / N], [1, 300 / N], [2, 311 / N]]) is True  # in step order
    assert still_rising([[1, 0.8]]) is None  # one point: nothing to compare
    assert still_rising([[1, 0.7], [2, None]]) is None
    assert still_rising([[1, math.pi / 5], [2, math.e / 3]]) is None  # not accuracies: no n to read


def test_any_metric_is_judged_by_the_standard_error_its_run_recorded():
    assert still_rising([[1, 0.70], [2, 0.76]], standard_error=0.05, metric="spearman") is True
    assert still_rising([[1, 0.70], [2, 0.74]], standard_error=0.05, metric="spearman") is False
    assert still_rising([[1, 0.70], [2, 0.76]], metric="spearman") is None  # no error kept: not judged
    assert still_rising([[1, 0.76], [2, 0.70]], metric="spearman") is False  # no improvement at all
    # lower is better (mean squared error): the falling curve is the one still improving
    lower = dict(standard_error=0.05, metric="mse", higher_is_better=False)
    assert still_rising([[1, 0.30], [2, 0.20]], **lower) is True
    assert still_rising([[1, 0.30], [2, 0.27]], **lower) is False
    assert still_rising([[1, 0.20], [2, 0.30]], **lower) is False
    # a recorded error is what counts, also for accuracy (0.05 here, not the 0.02 read from k / n)
    assert still_rising([[1, 300 / N], [2, 311 / N], [3, 320 / N]], standard_error=0.05) is False


def test_the_validation_size_is_read_from_the_accuracies():
    assert examples_behind([1455 / 2000, 1676 / 2000]) == 2000
    assert examples_behind([0.5]) == 2  # a divisor at worst: a larger error, never a flag too many
    assert examples_behind([math.pi / 4]) is None and examples_behind([]) is None
    # the committed emotion records: 2,000 validation examples
    lora = [r for r in read_records(ROOT / "leaderboard/previous/minilm-emotion") if r.method == "lora"]
    final = [r for r in lora if r.stage == "final"]
    assert {examples_behind(v for _, v in r.curves["validation_accuracy"]) for r in final} == {2000}


def flag(frame: pd.DataFrame, method: str, column: str) -> bool | None:
    """A flag of one row as Python reads it: True, False or None (not judged)."""
    value = frame.loc[method, column]
    return None if pd.isna(value) else bool(value)


def improving_rows(curves: dict[str, list[list[int]]]) -> pd.DataFrame:
    records = [
        run(method, seed, curve) for method, seeds in curves.items() for seed, curve in enumerate(seeds)
    ]
    return Leaderboard(records).to_frame().set_index("method")


def test_a_row_is_still_improving_when_most_of_its_seeds_are():
    up, flat = [300, 311, 320], [300, 320, 320]
    frame = improving_rows(
        {
            "two_of_three": [up, up, flat],
            "one_of_three": [up, flat, flat],
            "one_of_two": [up, flat],
            "one_seed": [up],
            "no_curves": [None, None],
            "one_point": [[320], [320]],
        }  # fmt: skip
    )
    assert flag(frame, "two_of_three", "still_improving") is True
    assert frame.loc["two_of_three", "rising_per_seed"] == {0: True, 1: True, 2: False}
    assert flag(frame, "one_of_three", "still_improving") is False
    assert flag(frame, "one_of_two", "still_improving") is False  # half is not most
    assert flag(frame, "one_seed", "still_improving") is True
    for unjudged in ("no_curves", "one_point"):
        assert (
            flag(frame, unjudged, "still_improving") is None and frame.loc[unjudged, "rising_per_seed"] == {}
        )
    assert str(frame["still_improving"].dtype) == "boolean"


def test_spread_ratio_is_the_seeds_deviation_over_the_test_sets_bootstrap_error():
    correct = np.array([[1] * k + [0] * (N - k) for k in (320, 300, 340)], dtype=float)
    per_seed = correct.mean(axis=1)
    noise = math.sqrt(np.mean(per_seed * (1 - per_seed) / N))
    assert spread_ratio(list(per_seed), correct) == pytest.approx(np.std(per_seed, ddof=1) / noise)
    assert math.isnan(spread_ratio([0.8], correct[:1])) and math.isnan(spread_ratio(list(per_seed), None))
    assert spread_ratio([1.0, 1.0], np.ones((2, N))) != spread_ratio([1.0, 1.0], np.ones((2, N)))  # NaN
    assert spread_ratio([1.0, 0.0], np.array([[1.0] * N, [0.0] * N])) == math.inf


def test_a_row_is_unstable_when_its_seeds_spread_more_than_twice_the_test_error():
    # seeds 320, 320 and 320 + d of 400 right: find the d at which the ratio passes 2
    ratios = {}
    for d in range(1, 40):
        correct = np.array([[1] * k + [0] * (N - k) for k in (320, 320, 320 + d)], dtype=float)
        ratios[d] = spread_ratio(list(correct.mean(axis=1)), correct)
    first = min(d for d, ratio in ratios.items() if ratio > 2)
    records = [run("calm", s, correct=k) for s, k in enumerate((320, 320, 320 + first - 1))]
    records += [run("wild", s, correct=k) for s, k in enumerate((320, 320, 320 + first))]
    records += [run("alone", 0, correct=200)]
    frame = Leaderboard(records).to_frame().set_index("method")
    assert frame.loc["calm", "spread_ratio"] == pytest.approx(ratios[first - 1]) and ratios[first - 1] <= 2
    assert flag(frame, "calm", "unstable") is False and flag(frame, "wild", "unstable") is True
    assert flag(frame, "alone", "unstable") is None  # one seed has no spread to judge


def test_the_committed_lora_on_emotion_row_is_flagged_by_both_rules():
    records = read_records(ROOT / "leaderboard/previous/minilm-emotion")
    frame = Leaderboard([r for r in records if r.method == "lora"]).to_frame().set_index("method")
    assert sorted(frame.loc["lora", "score_per_seed"].values()) == [0.746, 0.7505, 0.8605]
    assert flag(frame, "lora", "unstable") is True
    assert frame.loc["lora", "spread_ratio"] > 7  # SD 6.5 points, test error ~0.9
    assert flag(frame, "lora", "still_improving") is True
    assert frame.loc["lora", "rising_per_seed"] == {0: True, 1: True, 2: True}


@pytest.fixture(scope="module")
def flagged() -> Leaderboard:
    up, flat = [300, 311, 320], [300, 320, 320]
    records = [run("lora", s, up, correct=k) for s, k in enumerate((344, 298, 300))]
    records += [run("ia3", s, flat, correct=320) for s in range(3)]
    return Leaderboard(records)


def test_flags_are_in_the_terminal_table_csv_and_legend(flagged):
    markdown = flagged.to_markdown()
    assert "| flags" in markdown
    assert "still improving (3 of 3 seeds); unstable (86.00 / 74.50 / 75.00)" in markdown
    assert LEGEND in markdown and LEGEND in legend([display_metric("accuracy")])
    assert "more than 1 standard error" in LEGEND and "more than 2× the standard error" in LEGEND
    frame = pd.read_csv(io.StringIO(flagged.to_csv())).set_index("method")
    assert frame.loc["lora", "still_improving"] and frame.loc["lora", "unstable"]
    assert not frame.loc["ia3", "still_improving"] and not frame.loc["ia3", "unstable"]
    assert json.loads(frame.loc["lora", "rising_per_seed"]) == {"0": True, "1": True, "2": True}
    assert frame.loc["ia3", "spread_ratio"] == pytest.approx(0, abs=1e-9)  # identical seeds


def test_flags_are_on_the_site_page_with_each_seeds_verdict(flagged):
    (table,) = split_tables(flagged)
    page = table_page(table, known_methods=())
    assert "<th" in page and ">flags<" in page
    assert "still improving (3 of 3 seeds); unstable (86.00 / 74.50 / 75.00)" in page
    assert "validation still rising at the end: seed 0 yes, seed 1 yes, seed 2 yes" in page
    assert "spread over seeds: 0.0× the test set&#x27;s standard error" in page  # ia3: no flags
    assert "no flags" in page


def test_the_spread_rule_reads_the_tables_metric_not_accuracy():
    """For F1 (not a mean of per-example values) the standard error is the F1's own over resampled
    test examples; for MSE it is the closed form of a mean. Both give the spread ratio its noise."""
    from sklearn.metrics import f1_score

    from peftbench.leaderboard.stats import Outcomes, bootstrap_standard_error
    from peftbench.tasks.metrics import find_metric

    rng = np.random.default_rng(3)
    references = rng.integers(0, 2, 300)
    predictions = np.stack(
        [np.where(rng.random(300) < share, references, 1 - references) for share in (0.8, 0.7)]
    )
    f1 = Outcomes(predictions, references, find_metric("f1"))
    draws = rng.integers(0, 300, size=(600, 300))
    by_hand = [np.std([f1_score(references[d], row[d]) for d in draws]) for row in predictions]
    assert bootstrap_standard_error(f1) == pytest.approx(by_hand, rel=0.1)
    values = rng.random((2, 300))
    mse = Outcomes(values, np.zeros(300), find_metric("mse"))
    assert bootstrap_standard_error(mse) == pytest.approx((values**2).std(axis=1) / math.sqrt(300))
    per_seed = [f1_score(references, row) for row in predictions]
    assert spread_ratio(per_seed, f1) > 0 and math.isnan(spread_ratio(per_seed[:1], f1))
