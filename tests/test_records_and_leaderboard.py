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
