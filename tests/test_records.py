"""Run records: written atomically, read as data only, every bad file reported by path and skipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import record
from peftbench.cli import main
from peftbench.leaderboard import Leaderboard
from peftbench.records import (
    MAX_DEPTH,
    SCHEMA_VERSION,
    RecordWarning,
    RunRecord,
    read_record,
    read_records,
    write_record,
)
from peftbench.runs.store import ResultStore


def good_record(method: str = "lora", seed: int = 0) -> RunRecord:
    return RunRecord(
        run_id=f"{method}-seed{seed}",
        status="complete",
        model="m",
        dataset="d",
        method=method,
        seed=seed,
        label_names=["bad", "good"],
        metrics={"accuracy": 0.75, "macro_f1": 0.7, "loss": 0.5},
        costs={"trainable_params": 10, "total_params": 1000, "train_seconds": 2.0, "adapter_bytes": 4096},
        reload={"predictions_identical": True, "max_abs_logit_difference": 0.0},
        predictions=[0, 1, 1, 0],
        references=[0, 1, 0, 0],
        environment={"packages": {"torch": "2"}},
        notes=["a note"],
        curves={"train_loss": [[1, 0.7], [2, 0.5]], "validation_accuracy": [[2, 0.75]]},
        tuning={
            "chosen": {"learning_rate": 0.001},
            "candidates": [{"hyperparameters": {"learning_rate": 0.001}}],
        },
    )


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# (field, bad value, words of the one-line error)
BAD_FIELDS = [
    ("metrics", [], "field 'metrics' must be an object of numbers, got a list ([])"),
    ("metrics", None, "field 'metrics' must be an object of numbers, got null"),
    (
        "metrics",
        {"accuracy": "high"},
        "field 'metrics' entry 'accuracy' must be a number or null, got a string",
    ),
    (
        "metrics",
        {"accuracy": True},
        "field 'metrics' entry 'accuracy' must be a number or null, got a boolean",
    ),
    ("reload", None, "field 'reload' must be an object, got null"),
    ("reload", {"predictions_identical": "yes"}, "entry 'predictions_identical' must be true, false or null"),
    ("seed", "x", "field 'seed' must be a non-negative integer, got a string (\"x\")"),
    ("seed", True, "field 'seed' must be a non-negative integer, got a boolean"),
    ("seed", -1, "field 'seed' must be a non-negative integer"),
    ("costs", "abc", "field 'costs' must be an object of numbers, got a string (\"abc\")"),
    (
        "costs",
        {"trainable_params": 10.5},
        "field 'costs' entry 'trainable_params' must be a whole number or null",
    ),
    ("predictions", "abc", "field 'predictions' must be a list of numbers, got a string"),
    ("predictions", [0, "1"], "field 'predictions' entry 1 must be a number, got a string"),
    ("predictions", [0.5, None], "field 'predictions' entry 1 must be a number, got null"),
    ("references", {"0": 1}, "field 'references' must be a list of numbers, got an object"),
    ("task", 3, "field 'task' must be a string, got a number (3)"),
    ("metric", None, "field 'metric' must be a string, got null"),
    ("higher_is_better", "yes", "field 'higher_is_better' must be true or false, got a string"),
    ("label_names", "bad,good", "field 'label_names' must be a list of strings"),
    ("notes", [{"a": 1}], "field 'notes' entry 0 must be a string, got an object"),
    ("train_subset", 2000, "field 'train_subset' must be an object or null, got a number (2000)"),
    ("train_subset", {"examples": "2k", "of": 10, "seed": 0}, "entry 'examples' must be a whole number"),
    ("hyperparameters", [], "field 'hyperparameters' must be an object, got a list"),
    ("train_config", None, "field 'train_config' must be an object, got null"),
    (
        "environment",
        {"packages": ["torch"]},
        "field 'environment' entry 'packages' must be an object or null",
    ),
    ("tuning", [], "field 'tuning' must be an object or null, got a list"),
    ("tuning", {"chosen": "lr"}, "field 'tuning' entry 'chosen' must be an object or null"),
    ("tuning", {"candidates": [1]}, "field 'tuning' entry 'candidates' item 0 must be an object"),
    ("tuning", {"candidates": None}, "field 'tuning' entry 'candidates' must be a list of objects, got null"),
    (
        "tuning",
        {"candidates": [{"validation_spearman": "high"}]},
        "field 'tuning' entry 'candidates' item 0 'validation_spearman' must be a number or null",
    ),
    ("curves", [], "field 'curves' must be an object of [step, value] lists, got a list ([])"),
    (
        "curves",
        {"train_loss": 0.5},
        "field 'curves' entry 'train_loss' must be a list of [step, value] pairs",
    ),
    (
        "curves",
        {"train_loss": [[1, 0.5], [2, "low"]]},
        "field 'curves' entry 'train_loss' item 1 must be a [step, number or null] pair, got a list",
    ),
    ("curves", {"validation_accuracy": [[1.5, 0.5]]}, "entry 'validation_accuracy' item 0 must be a [step,"),
    (
        "curves",
        {"train_loss": [[-1, 0.5]]},
        "entry 'train_loss' item 0 must be a [step, number or null] pair",
    ),
    (
        "curves",
        {"train_loss": [[1, 0.5, 2]]},
        "entry 'train_loss' item 0 must be a [step, number or null] pair",
    ),
    ("curves", {"train_loss": [{"step": 1}]}, "item 0 must be a [step, number or null] pair, got an object"),
    ("model", 5, "field 'model' must be a string, got a number (5)"),
    ("finished_at", None, "field 'finished_at' must be a string, got null"),
    ("error", ["x"], "field 'error' must be a string or null, got a list"),
    ("adapter_path", 1, "field 'adapter_path' must be a string or null"),
    ("budget", "70k", "field 'budget' must be an object or null, got a string"),
    (
        "budget",
        {"target": 1.5, "within": True},
        "field 'budget' entry 'target' must be a whole number or null",
    ),
    ("budget", {"target": 100, "achieved": 90}, "field 'budget' entry 'within' must be true or false"),
    (
        "hyperparameters",
        {"deep": nested(MAX_DEPTH)},
        f"JSON nested too deeply (a record is at most {MAX_DEPTH}",
    ),
]


def write_bad(folder: Path, field: str, value: object, method: str = "bad") -> Path:
    path = write_record(good_record(method), folder)
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("field", "value", "words"), BAD_FIELDS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_FIELDS)]
)
def test_wrongly_typed_records_are_reported_by_path_and_skipped(tmp_path, field, value, words):
    write_record(good_record("lora"), tmp_path)
    bad = write_bad(tmp_path, field, value)
    with pytest.warns(RecordWarning) as caught:
        records = read_records(tmp_path)
    assert [r.method for r in records] == ["lora"]
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"skipped record {bad}: ") and words in message and "\n" not in message
    with pytest.warns(RecordWarning, match="skipped record"):  # the site's reader skips it too
        assert [r.method for r in read_records(tmp_path)] == ["lora"]
    with ResultStore(tmp_path) as store:
        assert store.complete(bad.stem) is None, "a bad record must be rerun on resume, not count as complete"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply to read"),
        ('{"a": ' * 50_000 + "1" + "}" * 50_000, "JSON nested too deeply to read"),
        ("null", "a record must be a JSON object, got null"),
        ('"text"', 'a record must be a JSON object, got a string ("text")'),
        ("3", "a record must be a JSON object, got a number (3)"),
        ("", "not valid JSON, truncated or corrupt"),
    ],
)
def test_unreadable_json_is_reported_not_raised(tmp_path, content, words):
    write_record(good_record("lora"), tmp_path)
    bad = tmp_path / "records" / "bad.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match="nested|JSON object|not valid JSON"):
        read_record(bad)
    with pytest.warns(RecordWarning) as caught:
        assert [r.method for r in read_records(tmp_path)] == ["lora"]
    assert f"skipped record {bad}: {words}" in str(caught[0].message)


def test_a_valid_record_with_every_optional_type_still_loads(tmp_path):
    record = good_record()
    record.costs["model_flops_utilisation"] = None
    record.metrics["final_train_loss"] = math.nan  # stored as null
    record.costs["total_params"] = 1000.0  # an integral float is a whole number
    write_record(record, tmp_path)
    (loaded,) = read_records(tmp_path)
    assert loaded.metrics["final_train_loss"] is None and loaded.predictions == [0, 1, 1, 0]
    assert Leaderboard([loaded]).to_frame().loc[0, "accuracy"] == 0.75


def test_leaderboard_and_docs_commands_skip_wrongly_typed_records(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_record(good_record("lora"), runs)
    write_record(good_record("baseline"), runs)
    bad = [write_bad(runs, field, value, f"bad{i}") for i, (field, value, _) in enumerate(BAD_FIELDS)]
    assert main(["leaderboard", str(runs)]) == 0
    captured = capsys.readouterr()
    assert "| lora" in captured.out and "| bad" not in captured.out and "Traceback" not in captured.err
    for path, (_, _, words) in zip(bad, BAD_FIELDS, strict=True):
        (line,) = [line for line in captured.err.splitlines() if f"skipped record {path}: " in line]
        assert line.startswith("peftbench: warning: skipped record") and words in line
    assert main(["docs", "--records", str(runs), "--site", str(tmp_path / "site")]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("skipped record") == len(BAD_FIELDS)


def test_records_round_trip_atomically_and_store_nan_as_null(tmp_path):
    original = record("lora", 0, 0.8)
    original.metrics["final_train_loss"] = math.nan
    original.curves = {
        "train_loss": [[10, 0.69], [20, 0.41]],
        "validation_accuracy": [[10, 0.5], [20, 0.75]],
        "validation_loss": [[10, math.nan], [20, 0.52]],
    }
    path = write_record(original, tmp_path)
    assert path == tmp_path / "records" / "lora-seed0.json"
    assert json.loads(path.read_text())["metrics"]["final_train_loss"] is None
    assert json.loads(path.read_text())["curves"]["validation_loss"] == [[10, None], [20, 0.52]]
    assert [p.name for p in path.parent.iterdir()] == ["lora-seed0.json"]  # no temporary left behind
    (loaded,) = read_records(tmp_path)
    assert loaded.metrics["accuracy"] == 0.8 and loaded.schema_version == SCHEMA_VERSION
    assert loaded.curves == {**original.curves, "validation_loss": [[10, None], [20, 0.52]]}


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


def test_records_from_older_writers_without_optional_fields_still_load(tmp_path):
    path = write_record(record("lora", 0, 0.8), tmp_path)
    data = json.loads(path.read_text())
    for optional in ("references", "tuning", "stage", "notes", "curves", "budget"):
        data.pop(optional)
    path.write_text(json.dumps(data))
    (loaded,) = read_records(tmp_path)
    assert loaded.references == [] and loaded.stage == "final" and loaded.curves == {}
    assert loaded.budget is None
    data.pop("run_id")
    path.write_text(json.dumps(data))
    with pytest.warns(RecordWarning, match="missing fields: run_id"):
        assert read_records(tmp_path) == []


def test_a_record_without_a_task_is_single_text_classification_scored_by_accuracy(tmp_path):
    """Records written before tasks existed load as what they were, and keep their rows."""
    data = json.loads(good_record().to_json())
    for key in ("task", "metric", "higher_is_better"):
        del data[key]
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "old.json").write_text(json.dumps(data))
    (loaded,) = read_records(tmp_path)
    assert (loaded.task, loaded.metric, loaded.higher_is_better) == ("classification", "accuracy", True)
    assert loaded.primary_score() == 0.75 and loaded.primary_score("validation") is None


def test_a_regression_record_keeps_float_predictions_and_names_its_metric(tmp_path):
    made = good_record()
    made.task, made.metric, made.higher_is_better = "regression", "mse", False
    made.metrics = {"mse": 0.04, "validation_mse": 0.05, "spearman": 0.8, "loss": 0.04}
    made.predictions, made.references = [0.25, 0.5, 1.0, 0.0], [0.2, 0.6, 0.9, 0.1]
    write_record(made, tmp_path)
    (loaded,) = read_records(tmp_path)
    assert loaded.predictions == [0.25, 0.5, 1.0, 0.0] and loaded.higher_is_better is False
    assert loaded.primary_score() == 0.04 and loaded.primary_score("validation") == 0.05
