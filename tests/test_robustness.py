"""Hostile files and values: wrongly typed records, corrupt cache entries, non-finite settings."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import peftbench
from conftest import write_keyword_csv
from peftbench import sweep, token_cache
from peftbench.batching import tokenize_split
from peftbench.cli import main
from peftbench.costs import CostWarning, model_flops_utilisation, peak_flops
from peftbench.data import DatasetSpec, load_splits
from peftbench.errors import PeftbenchError
from peftbench.leaderboard import Leaderboard
from peftbench.methods.base import TaskInfo
from peftbench.models import load_model, load_tokenizer, resolve_model
from peftbench.plugins import collect_methods
from peftbench.records import MAX_DEPTH, RecordWarning, RunRecord, read_record, read_records, write_record
from peftbench.site.build import load_records
from peftbench.sweep import parse_hp_overrides
from peftbench.train import MAX_EPOCHS, TrainConfig

# ---------------------------------------------------------------- records


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
    ("predictions", "abc", "field 'predictions' must be a list of integers, got a string"),
    ("predictions", [0, "1"], "field 'predictions' entry 1 must be an integer, got a string"),
    ("predictions", [0.5], "field 'predictions' entry 0 must be an integer, got a number (0.5)"),
    ("references", {"0": 1}, "field 'references' must be a list of integers, got an object"),
    ("label_names", "bad,good", "field 'label_names' must be a list of strings"),
    ("notes", [{"a": 1}], "field 'notes' entry 0 must be a string, got an object"),
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
    ("model", 5, "field 'model' must be a string, got a number (5)"),
    ("finished_at", None, "field 'finished_at' must be a string, got null"),
    ("error", ["x"], "field 'error' must be a string or null, got a list"),
    ("adapter_path", 1, "field 'adapter_path' must be a string or null"),
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
        assert [r.method for r in load_records(tmp_path)] == ["lora"]
    assert sweep._complete_record(bad) is None, "a bad record must be rerun on resume, not count as complete"


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


# ---------------------------------------------------------------- token cache


@pytest.fixture
def tokenizer_and_split(tmp_path):
    tokenizer = load_tokenizer(resolve_model("tiny-gpt2"))
    split = load_splits(DatasetSpec(str(write_keyword_csv(tmp_path / "d.csv")))).train
    return tokenizer, split, token_cache.tokenizer_fingerprint(tokenizer)


def same(a, b) -> bool:
    return [x.tolist() for x in a.input_ids] == [y.tolist() for y in b.input_ids] and np.array_equal(
        a.labels, b.labels
    )


def _wrong_arrays(path: Path) -> None:
    with path.open("wb") as file:
        np.savez(file, ids=np.arange(5, dtype=np.int32), lengths=np.array([9]), labels=np.array([0]))


CORRUPTIONS = {
    "empty": lambda path: path.write_bytes(b""),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    "garbage": lambda path: path.write_bytes(b"not a zip file at all" * 10),
    "zip without arrays": lambda path: path.write_bytes(b"PK\x05\x06" + b"\x00" * 18),
    "wrong arrays": _wrong_arrays,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_cache_entry_is_a_miss_that_is_warned_about_and_rewritten(
    tmp_path, tokenizer_and_split, corruption
):
    tokenizer, split, key = tokenizer_and_split
    fresh = tokenize_split(tokenizer, split, 32)
    token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)
    (path,) = (tmp_path / "tokenized").glob("*.npz")
    CORRUPTIONS[corruption](path)
    with pytest.warns(token_cache.CacheWarning) as caught:
        rebuilt, hit = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)
    message = str(caught[0].message)
    assert message.startswith(f"token cache entry {path} is unreadable (") and "\n" not in message
    assert message.endswith("; tokenising again and rewriting it")
    assert not hit and same(rebuilt, fresh)
    again, hit = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)  # rewritten: a hit now
    assert hit and same(again, fresh)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind


def test_sweep_recovers_from_corrupt_cache_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    data = write_keyword_csv(tmp_path / "d.csv", rows=60)
    common = dict(model="tiny-gpt2", dataset=str(data), methods=["lora"], out=tmp_path / "runs", max_steps=1)
    peftbench.run(progress=False, **common)
    entries = sorted((tmp_path / "cache" / "tokenized").glob("*.npz"))
    assert len(entries) == 3
    entries[0].write_bytes(b"")
    entries[1].write_bytes(entries[1].read_bytes()[:100])
    seen = {}
    real = sweep.cached_tokenize
    monkeypatch.setattr(
        sweep,
        "cached_tokenize",
        lambda tok, split, *a: seen.setdefault(len(seen), (split, real(tok, split, *a)))[1],
    )
    with pytest.warns(token_cache.CacheWarning, match="is unreadable"):
        board = peftbench.run(progress=False, **common)
    assert set(board.runs_frame()["status"]) == {"complete"}
    tokenizer = load_tokenizer(resolve_model("tiny-gpt2"))
    for split, (tokenized, _) in seen.values():
        assert same(tokenized, tokenize_split(tokenizer, split, 128))
    for entry in entries:  # rewritten: readable again, and equal to a fresh tokenisation
        assert any(
            same(token_cache._load(entry), tokenize_split(tokenizer, s, 128)) for s, _ in seen.values()
        )
    assert sorted(p.name for p in entries[0].parent.iterdir()) == [p.name for p in entries]


def test_failed_cache_write_leaves_no_temporary_file(tmp_path, tokenizer_and_split, monkeypatch):
    tokenizer, split, key = tokenizer_and_split

    def full_disk(file, **arrays):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(token_cache.np, "savez", full_disk)
    tokenized, hit = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)  # still tokenised
    assert not hit and same(tokenized, tokenize_split(tokenizer, split, 32))
    assert list((tmp_path / "tokenized").iterdir()) == []
    with pytest.raises(OSError, match="No space left"):
        token_cache._save(tokenized, tmp_path / "tokenized" / "x.npz")
    assert list((tmp_path / "tokenized").iterdir()) == []


# ---------------------------------------------------------------- hyper-parameters


@pytest.fixture(scope="module")
def registry():
    return collect_methods()


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("learning_rate", "NaN", "nan"),
        ("learning_rate", "nan", "nan"),
        ("learning_rate", "Infinity", "inf"),
        ("learning_rate", "inf", "inf"),
        ("learning_rate", "-Infinity", "-inf"),
        ("learning_rate", float("nan"), "nan"),
        ("weight_decay", float("inf"), "inf"),
        ("warmup_ratio", "nan", "nan"),
        ("lora_dropout", "NaN", "nan"),
    ],
)
def test_non_finite_hyperparameters_are_refused_with_method_and_key(registry, key, value, shown):
    with pytest.raises(PeftbenchError) as error:
        registry.get("lora").method.hyperparameters({key: value})
    assert str(error.value) == f"method 'lora': hyper-parameter '{key}'={shown} must be a finite number"


def test_non_finite_hyperparameter_on_the_command_line_is_one_line(tmp_path, capsys):
    data = write_keyword_csv(tmp_path / "d.csv", rows=40)
    out = tmp_path / "runs"
    argv = [
        "run",
        "--model",
        "tiny-gpt2",
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--hp",
        "lora.learning_rate=nan",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "peftbench: error: method 'lora': hyper-parameter 'learning_rate'=nan must be a finite number\n"
    )
    assert not (out / "records").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("query,value", ["query", "value"]),
        (" query , value ", ["query", "value"]),
        ("query", ["query"]),
        ('["query", "value"]', ["query", "value"]),
        (["query"], ["query"]),
        (("query", "key"), ["query", "key"]),
        ("null", None),
        (None, None),
    ],
)
def test_module_lists_from_the_command_line_become_lists_of_names(registry, value, expected):
    for method, key in (
        ("lora", "target_modules"),
        ("ia3", "target_modules"),
        ("ia3", "feedforward_modules"),
    ):
        assert registry.get(method).method.hyperparameters({key: value})[key] == expected


def test_module_lists_through_hp_overrides(registry):
    overrides = parse_hp_overrides(
        ["ia3.target_modules=key,value,output.dense", "ia3.feedforward_modules=output.dense"]
    )
    hp = registry.get("ia3").method.hyperparameters(overrides["ia3"])
    assert hp["target_modules"] == ["key", "value", "output.dense"] and hp["feedforward_modules"] == [
        "output.dense"
    ]
    assert registry.get("lora").method.hyperparameters()["target_modules"] is None  # peft's default


@pytest.mark.parametrize("value", ["", "query,,value", "[query", 5, ["query", 1], {"a": 1}])
def test_bad_module_lists_are_refused(registry, value):
    with pytest.raises(PeftbenchError) as error:
        registry.get("lora").method.hyperparameters({"target_modules": value})
    message = str(error.value)
    assert message.startswith(
        "method 'lora': hyper-parameter 'target_modules' must be module names, e.g. query,value"
    )


def test_comma_separated_target_modules_reach_peft_as_a_list(registry):
    spec = resolve_model("tiny-gpt2")
    tokenizer = load_tokenizer(spec)
    model = load_model(spec, ("bad", "good"), 0, tokenizer.pad_token_id, False)
    lora = registry.get("lora").method
    hp = lora.hyperparameters(parse_hp_overrides(["lora.target_modules=c_attn,c_proj"])["lora"])
    prepared = lora.prepare(model, TaskInfo(2, ("bad", "good"), (1, 1)), hp)
    adapted = {
        name.rsplit(".", 1)[-1] for name, module in prepared.named_modules() if hasattr(module, "lora_A")
    }
    assert adapted == {"c_attn", "c_proj"}


# ---------------------------------------------------------------- training settings


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (
            {"epochs": math.inf},
            "training setting epochs=inf is out of range: use a number above 0 and at most 1000",
        ),
        ({"epochs": math.nan}, "training setting epochs=nan is out of range"),
        ({"epochs": -math.inf}, "training setting epochs=-inf is out of range"),
        (
            {"epochs": 1e9},
            "training setting epochs=1000000000.0 is out of range: use a number above 0 and at most",
        ),
        ({"epochs": MAX_EPOCHS + 1}, "training setting epochs=1001 is out of range"),
        ({"max_grad_norm": math.nan}, "training setting max_grad_norm=nan is out of range"),
        ({"max_grad_norm": math.inf}, "training setting max_grad_norm=inf is out of range"),
        ({"epochs": "2"}, "training setting epochs='2' must be a number"),
        ({"batch_size": 8.5}, "training setting batch_size=8.5 must be a whole number: use at least 1"),
        ({"max_steps": True}, "training setting max_steps=True must be a whole number"),
    ],
)
def test_non_finite_and_absurd_training_settings_are_refused(settings, words):
    with pytest.raises(PeftbenchError) as error:
        TrainConfig(**settings)
    assert str(error.value).startswith(words)


def test_largest_epochs_and_fractions_still_allowed():
    assert TrainConfig(epochs=MAX_EPOCHS).epochs == MAX_EPOCHS
    assert TrainConfig(epochs=0.5, max_steps=None).epochs == 0.5
    assert TrainConfig(epochs=np.float64(2.0), batch_size=np.int64(4)).batch_size == 4


@pytest.mark.parametrize(("value", "shown"), [("1e9", "1000000000.0"), ("inf", "inf"), ("nan", "nan")])
def test_absurd_epochs_on_the_command_line_are_one_line(tmp_path, capsys, value, shown):
    data = write_keyword_csv(tmp_path / "d.csv", rows=40)
    out = tmp_path / "runs"
    assert (
        main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--out", str(out), "--epochs", value])
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith(f"peftbench: error: training setting epochs={shown} is out of range")
        and err.count("\n") == 1
    )
    assert not (out / "records").exists()


# ---------------------------------------------------------------- costs


@pytest.mark.parametrize("value", ["fast", "0", "-5", "nan", "inf", "1e400", "989 TFLOPS"])
def test_unusable_peak_tflops_is_ignored_with_one_warning(monkeypatch, value):
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", value)
    cpu = torch.device("cpu")
    with pytest.warns(CostWarning) as caught:
        assert model_flops_utilisation(1000.0, 100, 10, cpu) is None  # as if unset: no known peak
    message = str(caught[0].message)
    assert message == (
        f"ignored PEFTBENCH_PEAK_TFLOPS={value!r}: "
        "set it to the device's peak in TFLOP/s, e.g. 989, or unset it"
    )


def test_valid_and_blank_peak_tflops(monkeypatch, recwarn):
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", " 2 ")
    assert peak_flops(torch.device("cpu")) == 2e12
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", "")
    assert peak_flops(torch.device("cpu")) is None
    assert not [w for w in recwarn if issubclass(w.category, CostWarning)]
    assert os.environ["PEFTBENCH_PEAK_TFLOPS"] == ""
