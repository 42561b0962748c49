"""The leaderboard's data model and its terminal/CSV views."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, record
from peftbench.leaderboard import Leaderboard
from peftbench.leaderboard.report import table_texts
from peftbench.records import RunRecord


def test_leaderboard_averages_seeds_and_never_averages_failed_runs():
    board = Leaderboard(
        [
            record("baseline", 0, 0.5, role="baseline"),
            record("lora", 0, 0.8),
            record("lora", 1, 0.9),
            record("lora", 2, 0.0, status="failed", error="boom"),
            record("ia3", 0, 0.0, status="diverged"),
        ]
    )
    frame = board.to_frame().set_index("method")
    assert frame.loc["lora", "accuracy"] == pytest.approx(0.85)
    assert frame.loc["lora", "score_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert frame.loc["lora", "seeds"] == 2 and frame.loc["lora", "failed_runs"] == 1
    assert frame.loc["lora", "delta_vs_baseline"] == pytest.approx(0.35)
    assert frame.loc["lora", "rank"] == 1 and frame.loc["baseline", "rank"] == 2
    assert frame.loc["ia3", "seeds"] == 0 and frame.loc["ia3", "failed_runs"] == 1
    assert pd.isna(frame.loc["ia3", "accuracy"])
    assert list(frame.index) == ["lora", "baseline", "ia3"]  # failed-only rows last
    markdown = board.to_markdown()
    # two seeds: t(0.975, 1) = 12.706, so the interval is 12.706 * 0.0707 / sqrt(2) = 63.53 points
    assert "| failed" in markdown and "2 (1 failed)" in markdown and "85.00 ± 63.53" in markdown


def test_leaderboard_escapes_names_from_plugins():
    markdown = Leaderboard([record("<script>alert(1)</script>", 0, 0.7)]).to_markdown()
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown


def test_empty_leaderboard():
    assert Leaderboard([]).to_frame().empty
    assert Leaderboard([]).to_markdown() == "No run records found."


def test_runs_on_other_data_or_code_are_never_averaged_and_no_seed_counts_twice():
    """A rerun after the data changed (or peftbench was upgraded) is a separate row, not extra seeds."""

    def run(seed, accuracy, fingerprint="data-a", version="0.2.0", finished="2026-01-01", method="lora"):
        role = "baseline" if method == "baseline" else "method"
        made = record(method, seed, accuracy, role=role, dataset_fingerprint=fingerprint,
                      finished_at=finished, environment={"packages": {"peftbench": version}})  # fmt: skip
        made.run_id = f"{method}-{seed}-{fingerprint}-{version}-{finished}"
        return made

    board = Leaderboard(
        [
            run(0, 0.5, method="baseline"),
            run(0, 0.9),
            run(1, 0.7),
            run(0, 0.6, fingerprint="data-b"),  # the same name, other data
            run(1, 0.1, version="0.1.0"),  # the same run by older code
            run(1, 0.8, finished="2026-02-01"),  # the same run again, later: it replaces seed 1
        ]
    )
    frame = board.to_frame()
    lora = frame[frame["method"].str.startswith("lora")].set_index("dataset_fingerprint")
    assert len(lora) == 3
    newest = lora[lora["score_per_seed"].map(len) == 2]
    assert newest["score_per_seed"].iloc[0] == {0: 0.9, 1: 0.8} and newest["seeds"].iloc[0] == 2
    assert newest["delta_vs_baseline"].iloc[0] == pytest.approx(0.85 - 0.5)
    assert pd.isna(lora.loc["data-b", "delta_vs_baseline"])  # no baseline on that data to compare with


def test_a_choice_at_the_end_of_its_search_range_is_flagged():
    tuning = {
        "chosen": {"learning_rate": 0.003},
        "candidates": [{"hyperparameters": {"learning_rate": v}} for v in (0.0003, 0.001, 0.003)],
    }
    inside = {**tuning, "chosen": {"learning_rate": 0.001}}
    board = Leaderboard([record("lora", 0, 0.8, tuning=tuning), record("ia3", 0, 0.7, tuning=inside)])
    tuned = board.to_frame().set_index("method")["tuned"]
    assert tuned["lora"] == "learning_rate=0.003 (grid edge)"
    assert tuned["ia3"] == "learning_rate=0.001"


def synthetic(method, seed, correct, role="method"):
    references = [i % 2 for i in range(len(correct))]
    predictions = [r if c else 1 - r for r, c in zip(references, correct, strict=True)]
    return RunRecord(
        run_id=f"{method}-{seed}", status="complete", model="m", dataset="d", method=method, seed=seed,
        role=role, metrics={"accuracy": float(np.mean(correct)), "macro_f1": 0.0, "loss": 0.0},
        predictions=predictions, references=references, reload={"predictions_identical": True},
    )  # fmt: skip


def test_ties_for_best_and_p_values_against_the_baseline():
    rng = np.random.default_rng(0)
    strong = rng.random(400) < 0.85
    near = strong.copy()
    near[:4] = ~near[:4]  # differs from the best on 4 examples of 400
    weak = rng.random(400) < 0.6
    chance = rng.random(400) < 0.5
    records = [synthetic("strong", s, strong) for s in range(3)] + [
        synthetic("near", s, near) for s in range(3)
    ]
    records += [synthetic("weak", s, weak) for s in range(3)]
    records += [synthetic("baseline", s, chance, role="baseline") for s in range(3)]
    frame = Leaderboard(records).to_frame().set_index("method")
    assert frame.loc["strong", "tied_for_best"] and frame.loc["strong", "p_vs_best"] == 1.0
    assert frame.loc["near", "tied_for_best"] and frame.loc["near", "p_vs_best"] > 0.05
    assert not frame.loc["weak", "tied_for_best"] and frame.loc["weak", "p_vs_best"] < 0.001
    assert frame.loc["strong", "p_vs_baseline"] < 0.001
    assert frame.loc["strong", "score_per_seed"] == {0: strong.mean(), 1: strong.mean(), 2: strong.mean()}
    assert frame.loc["strong", "score_ci95"] == 0.0  # identical seeds: no spread
    markdown = Leaderboard(records).to_markdown()
    assert "★" in markdown and "(p<0.001)" in markdown


def variant(seed, accuracy, r, fingerprint="data-a"):
    made = record("lora", seed, accuracy, hyperparameters={"r": r, "learning_rate": 0.001},
                  dataset_fingerprint=fingerprint)  # fmt: skip
    made.run_id = f"lora-r{r}-{fingerprint}-seed{seed}"
    return made


def test_one_method_with_several_settings_is_named_by_what_differs_never_by_a_hash():
    board = Leaderboard(
        [variant(0, 0.8, 8), variant(1, 0.82, 8), variant(0, 0.9, 16), variant(0, 0.7, 16, "data-b")]
    )
    frame = board.to_frame().set_index("label")
    assert sorted(frame.index) == [
        "lora (r=16, data data-a)",
        "lora (r=16, data data-b)",
        "lora (r=8, data data-a)",
    ]
    assert set(frame["method"]) == {"lora"}  # the raw name stays, for links and grouping
    assert frame.loc["lora (r=8, data data-a)", "hyperparameters"] == {"r": 8, "learning_rate": 0.001}
    assert frame.loc["lora (r=8, data data-a)", "run_ids"] == ["lora-r8-data-a-seed0", "lora-r8-data-a-seed1"]
    assert frame.loc["lora (r=8, data data-a)", "score_per_seed"] == {0: 0.8, 1: 0.82}
    runs = board.runs_frame()
    assert sorted(set(runs["label"])) == sorted(frame.index) and set(runs["method"]) == {"lora"}
    markdown = board.to_markdown()
    assert "| lora (r=16, data data-a)" in markdown and "#" not in markdown.split("accuracy:")[0].replace(
        "###", ""
    )


def test_variants_are_named_by_the_hyper_parameter_that_differs():
    frame = Leaderboard([variant(0, 0.8, 8), variant(0, 0.9, 16)]).to_frame()
    assert sorted(frame["label"]) == ["lora (r=16)", "lora (r=8)"]


def test_variants_whose_values_print_alike_are_told_apart_by_their_hash():
    first, second = variant(0, 0.8, 8), variant(0, 0.9, 8)
    second.hyperparameters["learning_rate"] = 0.0010000001  # prints as 0.001 too
    second.run_id = "lora-close-seed0"
    labels = sorted(Leaderboard([first, second]).to_frame()["label"])
    assert len(set(labels)) == 2 and all(label.startswith("lora (learning_rate=0.001, ") for label in labels)


def test_counts_stay_whole_numbers_and_tuned_values_are_kept_raw():
    tuning = {"chosen": {"learning_rate": 0.003}, "candidates": []}
    frame = Leaderboard(
        [record("lora", 0, 0.8, tuning=tuning), record("lora", 1, 0.9, tuning=tuning)]
    ).to_frame()
    assert str(frame["trainable_params"].dtype) == "Int64" and frame.loc[0, "trainable_params"] == 10
    assert (
        frame.loc[0, "tuned_values"] == {"learning_rate": 0.003}
        and frame.loc[0, "tuned"] == "learning_rate=0.003"
    )


def test_a_single_setting_keeps_the_plain_method_name():
    frame = Leaderboard([variant(0, 0.8, 8), variant(1, 0.82, 8)]).to_frame()
    assert list(frame["label"]) == ["lora"] and list(frame["method"]) == ["lora"]


def test_csv_keeps_every_column_with_dicts_and_lists_as_json():
    import io
    import json

    board = Leaderboard(
        [variant(0, 0.8, 8), variant(1, 0.82, 8), record("baseline", 0, 0.5, role="baseline")]
    )
    table = pd.read_csv(io.StringIO(board.to_csv()))
    assert list(table.columns) == list(board.to_frame().columns)
    lora = table.set_index("method").loc["lora"]
    assert json.loads(lora["score_per_seed"]) == {"0": 0.8, "1": 0.82}
    assert json.loads(lora["run_ids"]) == ["lora-r8-data-a-seed0", "lora-r8-data-a-seed1"]
    assert json.loads(lora["hyperparameters"]) == {"learning_rate": 0.001, "r": 8}


def curved(method, seed, steps, status="complete", **extra):
    """A record whose curves follow from its seed and step, so every number can be checked."""
    made = record(method, seed, 0.8, status=status, **extra)
    made.curves = {
        "train_loss": [[step, 1.0 / step + seed] for step in steps],
        "validation_accuracy": [[step, 0.5 + seed / 10 + step / 1000] for step in steps[::2]],
    }
    return made


def test_curves_frame_has_a_row_per_completed_run_series_and_step_with_the_records_numbers():
    from peftbench.leaderboard.curves import CURVE_COLUMNS, summarise_curves

    board = Leaderboard(
        [
            curved("lora", 0, [10, 20, 30]),
            curved("lora", 1, [10, 20]),  # a seed that stopped earlier: compared on common steps
            curved("lora", 2, [10, 20, 30], status="failed", error="boom"),  # never in the frame
            record("ia3", 0, 0.7),  # written before curves: no rows
            record("baseline", 0, 0.5, role="baseline"),
        ]
    )
    frame = board.curves_frame()
    assert list(frame.columns) == list(CURVE_COLUMNS)
    assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == CURVE_COLUMNS
    assert set(frame["method"]) == {"lora"} and set(frame["label"]) == {"lora"}
    assert len(frame) == 3 + 2 + 2 + 1  # seed 0: 3 losses, 2 accuracies; seed 1: 2 and 1
    loss = frame[frame["metric"] == "train_loss"]
    assert loss[["seed", "step"]].astype(int).values.tolist() == [[0, 10], [0, 20], [0, 30], [1, 10], [1, 20]]
    assert loss["value"].astype(float).tolist() == pytest.approx([0.1, 0.05, 1 / 30, 1.1, 1.05])
    assert set(frame["run_id"]) == {"lora-seed0", "lora-seed1"}

    summary = summarise_curves(frame).set_index(["metric", "step"])
    assert list(summary.loc["train_loss"].index) == [10, 20]  # step 30: seed 1 lacks it
    assert summary.loc[("train_loss", 10), ["mean", "low", "high", "seeds"]].tolist() == pytest.approx(
        [0.6, 0.1, 1.1, 2]
    )
    assert summary.loc[("validation_accuracy", 10), "mean"] == pytest.approx(0.56)
    assert Leaderboard([record("ia3", 0, 0.7)]).curves_frame().empty
    assert summarise_curves(Leaderboard([]).curves_frame()).empty


def test_inference_costs_are_averaged_over_seeds_and_missing_where_a_record_has_none():
    timed = {"adapter_load_seconds": 0.02, "latency_ms": 4.0, "throughput": 800.0}
    merged = {"merged_latency_ms": 3.0, "merged_throughput": 1000.0}
    lora = [record("lora", seed, 0.8) for seed in (0, 1)]
    for seed, entry in enumerate(lora):
        entry.costs.update({key: value * (1 + seed) for key, value in {**timed, **merged}.items()})
    prefix = record("prefix_tuning", 0, 0.7)
    prefix.costs.update(timed)
    old = record("ia3", 0, 0.75)  # written before inference was timed
    board = Leaderboard([*lora, prefix, old])
    frame = board.to_frame().set_index("method")
    assert frame.loc["lora", "latency_ms"] == pytest.approx(6.0)
    assert frame.loc["lora", "merged_throughput"] == pytest.approx(1500.0)
    assert frame.loc["lora", "adapter_load_seconds"] == pytest.approx(0.03)
    assert (
        pd.isna(frame.loc["prefix_tuning", "merged_latency_ms"])
        and frame.loc["prefix_tuning", "latency_ms"] == 4
    )
    assert frame.loc[["ia3"], ["adapter_load_seconds", "latency_ms", "throughput", "merged_latency_ms",
                               "merged_throughput"]].isna().all(axis=None)  # fmt: skip
    texts = table_texts(board.to_frame()).set_index("method")
    assert texts.loc["lora", "latency ms"] == "6.00" and texts.loc["lora", "merged throughput/s"] == "1,500"
    assert texts.loc["lora", "load ms"] == "30.0" and texts.loc["prefix_tuning", "merged latency ms"] == ""
    assert texts.loc["ia3", "latency ms"] == texts.loc["ia3", "load ms"] == ""  # missing, not zero
    csv = pd.read_csv(io.StringIO(board.to_csv())).set_index("method")
    assert csv.loc["lora", "merged_latency_ms"] == pytest.approx(4.5) and pd.isna(
        csv.loc["ia3", "latency_ms"]
    )
    assert "merged latency ms, merged throughput/s" in board.to_markdown()  # explained in the legend


P0 = 1 / 10_001  # the smallest p-value 10,000 resamples give
# What the committed records gave before the Task refactor (peftbench 0.3.0, accuracy hard-wired):
# (dataset, method) -> rank, mean accuracy, its 95% interval, p vs baseline, p vs best, tied for best.
COMMITTED_ROWS = {
    ("emotion", "full_finetune"): (1, 0.9215, 0.009377414219063743, P0, 1.0, True),
    ("emotion", "ia3"): (2, 0.8968333333333334, 0.010342290025084536, P0, P0, False),
    ("emotion", "prefix_tuning"): (3, 0.8813333333333334, 0.015727423560515284, P0, P0, False),
    ("emotion", "lora"): (4, 0.7856666666666667, 0.16108791904987063, P0, P0, False),
    ("emotion", "head_only"): (5, 0.5526666666666668, 0.014125404968604111, P0, P0, False),
    ("emotion", "majority"): (6, 0.3475, 0.0, P0, P0, False),
    ("emotion", "baseline"): (7, 0.147, 0.19704708969065116, 1.0, P0, False),
    ("rotten_tomatoes", "full_finetune"): (1, 0.8245778611632271, 0.008072519192775634, P0, 1.0, True),
    ("rotten_tomatoes", "ia3"): (2, 0.806441525953721, 0.022990544739074407, P0, 500 / 10_001, False),
    ("rotten_tomatoes", "lora"): (3, 0.8008130081300813, 0.0071192927459602, P0, 100 / 10_001, False),
    ("rotten_tomatoes", "prefix_tuning"): (4, 0.7867417135709819, 0.026807300906831977, P0, 8 / 10_001, False),  # noqa: E501
    ("rotten_tomatoes", "head_only"): (5, 0.6657285803627268, 0.024254901559766666, P0, P0, False),
    ("rotten_tomatoes", "baseline"): (6, 0.5106316447779863, 0.04203226027275126, 1.0, P0, False),
    ("rotten_tomatoes", "majority"): (7, 0.5, 0.0, 4863 / 10_001, P0, False),
}  # fmt: skip
# method -> mean rank, its interval, (wins, ties, losses), gain share: the aggregate over both.
COMMITTED_AGGREGATE = {
    "full_finetune": (1.0, 1.0, 1.5, (11, 1, 0), 1.0),
    "ia3": (2.0, 1.5, 3.0, (8, 3, 1), 0.9551912856428812),
    "lora": (3.5, 3.0, 4.0, (6, 2, 4), 0.8744604109921407),
    "prefix_tuning": (3.5, 2.7437500000000004, 3.5, (7, 2, 3), 0.9138103278729284),
    "head_only": (5.0, 5.0, 5.0, (4, 0, 8), 0.5089013431961845),
    "baseline": (6.5, 6.5, 7.0, (0, 1, 11), 0.0),
    "majority": (6.5, 6.0, 6.5, (1, 1, 10), 0.11250607640451743),
}


def test_the_committed_records_give_the_numbers_they_gave_before_tasks_existed():
    """Records that name no task are single-text classification scored by accuracy: every number
    of their leaderboard and aggregate is what peftbench 0.3.0 computed from them."""
    board = Leaderboard.from_dir(ROOT / "leaderboard" / "previous")
    frame = board.to_frame()
    assert set(frame["metric"]) == {"accuracy"} and set(frame["task"]) == {"classification"}
    got = {
        (row.dataset, row.method): (
            row.rank, row.score, row.score_ci95, row.p_vs_baseline, row.p_vs_best, row.tied_for_best,
        )
        for row in frame.itertuples()
    }  # fmt: skip
    assert got == COMMITTED_ROWS
    assert (frame["score"] == frame["accuracy"]).all()
    aggregated = {
        row.method: (row.mean_rank, row.mean_rank_low, row.mean_rank_high, (row.wins, row.ties, row.losses),
                     row.gain_share)
        for row in board.aggregate().itertuples()
    }  # fmt: skip
    assert aggregated == COMMITTED_AGGREGATE
