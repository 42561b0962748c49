import json
import math

import pandas as pd
import pytest

from peftbench.leaderboard import Leaderboard
from peftbench.records import SCHEMA_VERSION, RecordWarning, RunRecord, read_records, write_record


def record(method, seed, accuracy, status="complete", role="method", **extra):
    return RunRecord(
        run_id=f"{method}-seed{seed}",
        status=status,
        model="m",
        dataset="d",
        method=method,
        seed=seed,
        role=role,
        metrics={} if status != "complete" else {"accuracy": accuracy, "macro_f1": accuracy, "loss": 0.5},
        costs={"trainable_params": 10, "total_params": 1000, "trainable_percent": 1.0, "train_seconds": 2.0},
        reload={"predictions_identical": True},
        **extra,
    )


def test_records_round_trip_atomically_and_store_nan_as_null(tmp_path):
    original = record("lora", 0, 0.8)
    original.metrics["final_train_loss"] = math.nan
    path = write_record(original, tmp_path)
    assert path == tmp_path / "records" / "lora-seed0.json"
    assert json.loads(path.read_text())["metrics"]["final_train_loss"] is None
    assert [p.name for p in path.parent.iterdir()] == ["lora-seed0.json"]  # no temporary left behind
    (loaded,) = read_records(tmp_path)
    assert loaded.metrics["accuracy"] == 0.8 and loaded.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"run_id": "x", "status": "comp', "not valid JSON, truncated or corrupt"),
        (json.dumps({"schema_version": 99}), "unknown schema version 99"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_corrupt_records_are_reported_by_path_and_skipped(tmp_path, content, words):
    write_record(record("lora", 0, 0.8), tmp_path)
    bad = tmp_path / "records" / "bad.json"
    bad.write_text(content)
    with pytest.warns(RecordWarning) as caught:
        records = read_records(tmp_path)
    assert [r.method for r in records] == ["lora"]
    assert str(bad) in str(caught[0].message) and words in str(caught[0].message)


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
    assert frame.loc["lora", "accuracy_std"] == pytest.approx(0.0707107, rel=1e-5)
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


def test_records_from_older_writers_without_optional_fields_still_load(tmp_path):
    path = write_record(record("lora", 0, 0.8), tmp_path)
    data = json.loads(path.read_text())
    for optional in ("references", "tuning", "stage", "notes"):
        data.pop(optional)
    path.write_text(json.dumps(data))
    (loaded,) = read_records(tmp_path)
    assert loaded.references == [] and loaded.stage == "final"
    data.pop("run_id")
    path.write_text(json.dumps(data))
    with pytest.warns(RecordWarning, match="missing fields: run_id"):
        assert read_records(tmp_path) == []


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
    newest = lora[lora["accuracy_per_seed"].map(len) == 2]
    assert newest["accuracy_per_seed"].iloc[0] == {0: 0.9, 1: 0.8} and newest["seeds"].iloc[0] == 2
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
