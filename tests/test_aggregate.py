"""The verdict over datasets: mean rank and its interval, wins/ties/losses, gain share, missing rows."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from conftest import record
from peftbench.cli import main
from peftbench.leaderboard import Leaderboard
from peftbench.records import write_record

EXAMPLES = 100


def run(dataset, method, correct, seed=0, role="method", model="m", validation=None, **extra):
    """A final record whose first ``correct`` of 100 test examples are right: a method with more
    right is right wherever one with fewer is, so the paired test's verdict is known."""
    references = [i % 2 for i in range(EXAMPLES)]
    predictions = [label if i < correct else 1 - label for i, label in enumerate(references)]
    made = record(
        method, seed, correct / EXAMPLES, role=role, predictions=predictions, references=references, **extra
    )
    made.model, made.dataset, made.run_id = model, dataset, f"{model}-{dataset}-{method}-{seed}-{correct}"
    if validation is not None:
        made.metrics["validation_accuracy"] = validation
    return made


def three_datasets() -> list:
    """a: full_finetune 90, lora 80 (another lora variant: test 95, but worse on validation), ia3 79,
    baseline 50. b: full_finetune 70, ia3 70 (the same predictions), lora 60, baseline 40.
    c: lora 90, baseline 50; no full_finetune, no ia3."""
    lora, other = {"r": 8}, {"r": 16}
    return [
        run("a", "full_finetune", 90, role="reference"),
        run("a", "lora", 80, hyperparameters=lora, validation=0.8),
        run("a", "lora", 95, hyperparameters=other, validation=0.5),
        run("a", "ia3", 79),
        run("a", "baseline", 50, role="baseline"),
        run("b", "full_finetune", 70, role="reference"),
        run("b", "ia3", 70),
        run("b", "lora", 60, hyperparameters=lora),
        run("b", "baseline", 40, role="baseline"),
        run("c", "lora", 90, hyperparameters=lora),
        run("c", "baseline", 50, role="baseline"),
    ]


@pytest.fixture(scope="module")
def aggregated() -> pd.DataFrame:
    return Leaderboard(three_datasets()).aggregate().set_index("method")


def test_mean_ranks_over_the_datasets_each_method_has(aggregated):
    # a: ff 1, lora 2, ia3 3, baseline 4; b: ff and ia3 tie (1.5 each), lora 3, baseline 4;
    # c: lora 1, baseline 2
    assert list(aggregated.index) == ["full_finetune", "lora", "ia3", "baseline"]
    assert aggregated["mean_rank"].to_dict() == pytest.approx(
        {"full_finetune": 1.25, "lora": 2.0, "ia3": 2.25, "baseline": 10 / 3}
    )
    assert aggregated.loc["lora", "rank_per_dataset"] == {"a": 2.0, "b": 3.0, "c": 1.0}
    assert aggregated["datasets"].to_dict() == {"full_finetune": 2, "lora": 3, "ia3": 2, "baseline": 3}
    assert set(aggregated["datasets_total"]) == {3}


def test_the_interval_comes_from_resampling_seeds_and_test_examples(aggregated):
    # Only lora vs ia3 on a can move (they differ on one example): undrawn in a resample (0.99^100
    # = 37% of them) they tie at 2.5, so lora's mean rank is 2 or 13/6 and ia3's 2.25 or 2.
    low, high = aggregated["mean_rank_low"].to_dict(), aggregated["mean_rank_high"].to_dict()
    assert low == pytest.approx({"full_finetune": 1.25, "lora": 2.0, "ia3": 2.0, "baseline": 10 / 3})
    assert high == pytest.approx({"full_finetune": 1.25, "lora": 13 / 6, "ia3": 2.25, "baseline": 10 / 3})
    again = Leaderboard(three_datasets()).aggregate().set_index("method")
    assert again[["mean_rank_low", "mean_rank_high"]].equals(aggregated[["mean_rank_low", "mean_rank_high"]])


def test_wins_ties_and_losses_come_from_the_paired_tests(aggregated):
    # A gap of 10+ examples is significant; lora vs ia3 on a (one example) and ff vs ia3 on b (none) are not.
    counts = aggregated[["wins", "ties", "losses", "untested"]].T.to_dict("list")
    assert counts == {
        "full_finetune": [5, 1, 0, 0],
        "lora": [3, 1, 3, 0],
        "ia3": [3, 2, 1, 0],
        "baseline": [0, 0, 7, 0],
    }


def test_gain_share_is_missing_where_full_finetuning_is(aggregated):
    # lora: a (80-50)/(90-50) = 0.75, b (60-40)/(70-40) = 2/3; c has no full_finetune: missing, not 0
    lora = aggregated.loc["lora"]
    assert lora["gain_share"] == pytest.approx((0.75 + 2 / 3) / 2) and lora["gain_share_datasets"] == 2
    assert math.isnan(lora["gain_share_per_dataset"]["c"])
    assert aggregated.loc["ia3", "gain_share"] == pytest.approx((29 / 40 + 1.0) / 2)
    assert aggregated.loc["full_finetune", "gain_share"] == 1.0
    assert aggregated.loc["baseline", "gain_share"] == 0.0


def test_gain_share_is_missing_where_full_finetuning_does_not_beat_the_baseline_significantly():
    """On d full fine-tuning is one example ahead of the baseline (a tie by the paired test): lora's
    share there would be (60-50)/(51-50) = 10, noise magnified, so d is left out of every share."""
    noise = [
        run("d", "full_finetune", 51, role="reference"),
        run("d", "lora", 60, hyperparameters={"r": 8}),
        run("d", "baseline", 50, role="baseline"),
    ]
    frame = Leaderboard([*three_datasets(), *noise]).aggregate().set_index("method")
    lora = frame.loc["lora"]
    assert math.isnan(lora["gain_share_per_dataset"]["d"]) and lora["rank_per_dataset"]["d"] == 1.0
    assert lora["gain_share"] == pytest.approx((0.75 + 2 / 3) / 2) and lora["gain_share_datasets"] == 2
    assert frame["gain_share_datasets"].to_dict() == {"lora": 2, "full_finetune": 2, "ia3": 2, "baseline": 2}


def test_a_missing_method_is_shown_missing_never_imputed(aggregated):
    ia3 = aggregated.loc["ia3"]
    assert ia3["score_per_dataset"]["a"] == 0.79 and math.isnan(ia3["score_per_dataset"]["c"])
    assert math.isnan(ia3["rank_per_dataset"]["c"]) and ia3["label_per_dataset"]["c"] is None


def test_a_row_whose_score_is_undefined_is_not_ranked_and_ranks_the_others():
    """A constant prediction has no rank correlation: that row is left out, the others still rank."""
    constant = run("c", "train_mean", 50, role="reference")
    constant.metrics = {"accuracy": None, "loss": 0.5}
    frame = Leaderboard([*three_datasets(), constant]).aggregate().set_index("method")
    assert "train_mean" not in frame.index
    assert frame.loc["lora", "rank_per_dataset"] == {"a": 2.0, "b": 3.0, "c": 1.0}
    assert not frame["mean_rank"].isna().any() and not frame["mean_rank_high"].isna().any()


def test_the_variant_best_on_validation_stands_for_its_method(aggregated):
    """lora's r=16 variant is better on test on a (95) but worse on validation: r=8 (80) stands."""
    lora = aggregated.loc["lora"]
    assert lora["score_per_dataset"]["a"] == 0.8 and lora["label_per_dataset"]["a"] == "lora (r=8)"
    assert lora["label_per_dataset"]["b"] == "lora"


def test_models_with_one_dataset_and_failed_only_rows_are_not_aggregated():
    one = Leaderboard([run("a", "lora", 80), run("a", "baseline", 50, role="baseline")])
    assert one.aggregate().empty
    failed = run("b", "lora", 0)
    failed.status, failed.metrics = "failed", {}
    assert Leaderboard([run("a", "lora", 80), failed]).aggregate().empty  # b has no result at all


def test_without_predictions_only_seeds_are_resampled_and_pairs_are_untested():
    records = [record("lora", seed, share) for seed, share in enumerate((0.8, 0.9))]
    records += [record("ia3", seed, share) for seed, share in enumerate((0.85, 0.7))]
    for made in list(records):
        copy = record(made.method, made.seed, made.metrics["accuracy"] - 0.1)
        copy.dataset, copy.run_id = "e", f"e-{made.run_id}"
        records.append(copy)
    frame = Leaderboard(records).aggregate().set_index("method")
    # lora (0.85 mean) beats ia3 (0.775) on both datasets; resampled seeds can swap them
    assert frame.loc["lora", "mean_rank"] == 1.0 and frame.loc["lora", "untested"] == 2
    assert frame.loc["lora", "mean_rank_low"] == 1.0 and frame.loc["lora", "mean_rank_high"] > 1.0
    assert frame.loc["lora", ["wins", "ties", "losses"]].tolist() == [0, 0, 0]


def test_the_command_line_prints_the_numbers(tmp_path, capsys):
    for made in three_datasets():
        write_record(made, tmp_path)
    assert main(["leaderboard", str(tmp_path), "--aggregate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### m over a, b, c")
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "| 1.25 [1.25, 1.25]" in lines["full_finetune (reference)"]
    assert "| 3/1/3 " in lines["lora"] and "| 70.8 (2 of 3) " in lines["lora"]
    assert "| 80.00 (lora (r=8)) " in lines["lora"]
    assert "| 2 of 3 " in lines["ia3"] and lines["ia3"].rstrip(" |").endswith("missing")
    assert "nothing is imputed" in out
    assert main(["leaderboard", str(tmp_path), "--aggregate", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("method")
    assert frame.loc["lora", "wins"] == 3 and '"c": NaN' in frame.loc["ia3", "score_per_dataset"]


def test_the_command_line_says_when_there_is_nothing_to_aggregate(tmp_path, capsys):
    write_record(run("a", "lora", 80), tmp_path)
    assert main(["leaderboard", str(tmp_path), "--aggregate"]) == 0
    assert "No model has results on two or more datasets" in capsys.readouterr().out


def test_a_table_trained_on_a_subset_is_left_out_of_the_aggregate():
    subset = {"examples": 50, "of": 100, "seed": 0}
    records = [run("a", "lora", 80), run("a", "ia3", 70), run("b", "lora", 60), run("b", "ia3", 65)]
    records += [run("a[train=50]", m, c, train_subset=subset) for m, c in (("lora", 40), ("ia3", 90))]
    board = Leaderboard(records)
    frame = board.to_frame()
    subset_rows = frame["dataset"] == "a[train=50]"
    assert (frame.loc[subset_rows, "train_examples"] == 50).all() and subset_rows.sum() == 2
    assert frame.loc[~subset_rows, "train_examples"].isna().all()
    aggregated = board.aggregate()
    assert set(aggregated["datasets"]) == {2}
    assert all(set(scores) == {"a", "b"} for scores in aggregated["score_per_dataset"])
