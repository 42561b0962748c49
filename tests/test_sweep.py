"""Sweeps through the whole harness on tiny GPT-2: train, record, reload, leaderboard, failures."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification

import peftbench
from conftest import keyword_folder, keyword_rows, registered, write_keyword_csv
from fake_plugins import FaultyPlugin, HeadProbePlugin
from peftbench.batching import tokenize_split
from peftbench.cli import main
from peftbench.data import DatasetSpec, load_splits
from peftbench.evaluation import evaluate_model
from peftbench.leaderboard import Leaderboard
from peftbench.models import load_model, load_tokenizer, resolve_model
from peftbench.plugins import collect_methods
from peftbench.records import read_records
from peftbench.runs.context import SweepContext, build_context
from peftbench.runs.executors import LocalExecutor
from peftbench.settings import sweep_config

METHODS = ["lora", "ia3", "prefix_tuning", "head_probe"]


HP = {
    "lora": {"learning_rate": 1e-2},
    "ia3": {"learning_rate": 5e-2},
    "prefix_tuning": {"learning_rate": 3e-2},
}


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory) -> Path:
    return keyword_folder(tmp_path_factory.mktemp("keywords"), train=256, validation=64, test=96)


def sweep(data, out, **extra):
    options = dict(model="tiny-gpt2", dataset=str(data), methods=METHODS, out=out, epochs=6, hp=HP)
    options.update(extra)
    return peftbench.run(**options, progress=False)


@pytest.fixture(scope="module")
def head_probe_plugin():
    with registered(HeadProbePlugin(), source="peftbench-test 0.0"):
        yield


@pytest.fixture(scope="module")
def board(keyword_data, head_probe_plugin, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return sweep(keyword_data, out), out


def test_every_run_completes_and_reloads_to_identical_predictions(board):
    leaderboard, out = board
    records = leaderboard.records
    assert sorted(r.method for r in records) == sorted(METHODS + ["baseline", "majority", "head_only"])
    for record in records:
        assert record.status == "complete", record.error
        assert record.reload["predictions_identical"] is True
        assert record.reload["max_abs_logit_difference"] < 1e-4
        assert len(record.predictions) == 96
        assert record.environment["packages"]["peftbench"] == peftbench.__version__
    files = [p for p in (out / "adapters").rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.suffix in {".bin", ".pt", ".pkl", ".pth"}]
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".md"}


def test_saved_adapters_reload_independently_to_the_recorded_predictions(board):
    leaderboard, out = board
    spec = resolve_model("tiny-gpt2")
    tokenizer = load_tokenizer(spec)
    data = load_splits(DatasetSpec(str(leaderboard.records[0].dataset)))
    test = tokenize_split(tokenizer, data.test, 128)
    registry = collect_methods()
    for record in leaderboard.records:
        method = registry.get(record.method).method
        base = peftbench.models.load_model(spec, data.label_names, record.seed, tokenizer.pad_token_id)
        model = method.load(base, out / record.adapter_path, None, record.hyperparameters)
        result = evaluate_model(
            model, test, data.task, data.label_names, 128, torch.device("cpu"), tokenizer.pad_token_id
        )
        assert result.predictions.tolist() == record.predictions, record.method


def test_training_learns_the_keyword_task(board):
    frame = board[0].to_frame().set_index("method")
    assert frame.loc["majority", "accuracy"] <= 0.6
    assert frame.loc["lora", "accuracy"] >= 0.9
    assert frame.loc["head_probe", "accuracy"] >= 0.9


def test_leaderboard_rows_and_deltas(board):
    frame = board[0].to_frame()
    assert list(frame["accuracy"]) == sorted(frame["accuracy"], reverse=True)
    rows = frame.set_index("method")
    baseline = rows.loc["baseline", "accuracy"]
    for method in METHODS:
        assert rows.loc[method, "delta_vs_baseline"] == pytest.approx(rows.loc[method, "accuracy"] - baseline)
        assert 0 < rows.loc[method, "trainable_params"] < rows.loc[method, "total_params"]
        assert rows.loc[method, "train_seconds"] > 0
    assert rows.loc["head_probe", "source"] == "peftbench-test 0.0"
    assert rows.loc["baseline", "trainable_params"] == 0
    markdown = board[0].to_markdown()
    assert "tiny-gpt2 on" in markdown and "prefix_tuning" in markdown and "baseline (baseline)" in markdown
    assert "<b>" not in markdown


def test_rerun_skips_complete_runs_and_force_reproduces_them(board, keyword_data):
    _, out = board
    before = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    lora_only = {"methods": ["lora"], "hp": {"lora": HP["lora"]}}
    again = sweep(keyword_data, out, **lora_only)
    assert {p.name: p.read_bytes() for p in (out / "records").glob("*.json")} == before
    forced = sweep(keyword_data, out, **lora_only, force=True)
    old = {r.run_id: r for r in again.records}
    for record in forced.records:
        if record.method == "lora":
            assert record.predictions == old[record.run_id].predictions
            assert record.finished_at >= old[record.run_id].finished_at


def test_multiclass_dataset(tmp_path):
    labels = ("red", "green", "blue")
    for split, count, seed in (("train", 120, 0), ("validation", 30, 1), ("test", 30, 2)):
        pd.DataFrame(keyword_rows(count, seed, labels)).to_parquet(tmp_path / f"{split}.parquet")
    leaderboard = peftbench.run(
        model="tiny-gpt2", dataset=str(tmp_path), methods="lora", out=tmp_path / "runs", max_steps=4,
        progress=False,
    )  # fmt: skip
    record = next(r for r in leaderboard.records if r.method == "lora")
    assert record.status == "complete" and record.label_names == ["0", "1", "2"]
    assert set(record.predictions) <= {0, 1, 2}
    majority = next(r for r in leaderboard.records if r.method == "majority")
    assert majority.metrics["accuracy"] == pytest.approx(
        np.bincount(pd.read_parquet(tmp_path / "test.parquet")["label"]).max() / 30
    )


def test_failing_and_diverging_methods_are_recorded_and_the_sweep_goes_on(
    finished_sweep, tmp_path, capsys, register_plugin
):
    data, _ = finished_sweep
    out = tmp_path / "runs"
    register_plugin(FaultyPlugin(), "peftbench-faulty 0.1")
    methods = "exploding,nan_head,lora"
    code = main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--methods", methods,
                 "--max-steps", "3", "--out", str(out), "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and "2 run(s) of this sweep did not complete" in captured.err
    records = {r.method: r for r in read_records(out)}
    assert records["exploding"].status == "failed"
    assert records["exploding"].error == "RuntimeError: kaboom in forward (during train)"
    assert (  # stopped at its first checkpoint, whose logits were NaN already
        records["nan_head"].status == "diverged" and "loss became nan by step 1" in records["nan_head"].error
    )
    assert records["lora"].status == "complete"
    assert not (out / "adapters" / records["exploding"].run_id).exists()
    frame = Leaderboard(records.values()).to_frame().set_index("method")
    assert frame.loc["exploding", "seeds"] == 0 and frame.loc["exploding", "failed_runs"] == 1
    assert pd.isna(frame.loc["nan_head", "accuracy"])
    assert "| exploding" in captured.out and "| failed" in captured.out
    assert "exploding (failed)" in captured.err and "nan_head (diverged)" in captured.err
    # A later sweep into the same folder is judged by its own runs, not the failures before it.
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--methods", "lora",
                 "--max-steps", "3", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert "did not complete" not in capsys.readouterr().err


def loading_per_run(ctx: SweepContext, seed: int) -> torch.nn.Module:
    """How a run got its base model before the context held one: read from disk every time."""
    return load_model(ctx.model_spec, ctx.data.label_names, seed, ctx.pad_id, ctx.trust_remote_code)


def test_the_context_hands_out_what_loading_gives_and_survives_pickling(keyword_data, tmp_path):
    config = sweep_config(model="tiny-gpt2", dataset=str(keyword_data), out=tmp_path)
    ctx = build_context(config, LocalExecutor().start("cpu", "fp32"))
    shipped = pickle.loads(pickle.dumps(ctx))  # as it travels to a Ray worker
    for seed in (0, 5):
        expected = loading_per_run(ctx, seed).state_dict()
        for context in (ctx, shipped):
            state = context.fresh_model(seed).state_dict()
            assert list(state) == list(expected)
            assert all(state[k].dtype == v.dtype and torch.equal(state[k], v) for k, v in expected.items())


def test_a_sweep_reads_the_base_model_once_and_records_what_loading_per_run_did(tmp_path, monkeypatch):
    data = keyword_folder(tmp_path / "data", train=48, validation=16, test=16)
    options = dict(model="tiny-gpt2", dataset=str(data), methods="baseline,lora", seeds="0,1", max_steps=2,
                   references=False, progress=False)  # fmt: skip
    built = []
    build = AutoModelForSequenceClassification.from_config
    monkeypatch.setattr(
        AutoModelForSequenceClassification, "from_config", lambda *a, **k: built.append(1) or build(*a, **k)
    )
    records = peftbench.run(**options, out=tmp_path / "once").records
    assert len(built) == 1 and len(records) == 4
    monkeypatch.setattr(SweepContext, "fresh_model", loading_per_run)
    expected = {(r.method, r.seed): r for r in peftbench.run(**options, out=tmp_path / "per_run").records}
    assert len(built) == 2 + 2 * 4  # the check, then a model to train and one to reload for every run
    for record in records:
        old = expected[(record.method, record.seed)]
        assert record.status == old.status == "complete", record.error
        assert record.run_id == old.run_id and record.predictions == old.predictions
        assert record.metrics == pytest.approx(old.metrics, abs=1e-6)
        assert record.reload == pytest.approx(old.reload, abs=1e-6)


def test_a_sweep_over_two_datasets_runs_each_in_turn_into_one_folder(tmp_path, capsys):
    from peftbench.runs.sweep import run_sweep
    from peftbench.settings import sweep_config

    folder = keyword_folder(tmp_path / "words", train=64, validation=16, test=16)
    csv = write_keyword_csv(tmp_path / "words.csv", rows=60)
    config = sweep_config(model="tiny-gpt2", dataset=f"{folder},{csv}", methods="lora", max_steps=2,
                          references=False, out=tmp_path / "runs")  # fmt: skip
    outcome = run_sweep(config)
    err = capsys.readouterr().err
    assert outcome.datasets == [str(folder), str(csv)] and len(outcome.final_run_ids) == 2
    assert set(outcome.seconds) == {"load data", "load model", "tokenise"}  # over both datasets
    assert all(seconds > 0 for seconds in outcome.seconds.values())
    records = read_records(outcome.out)
    assert sorted(r.dataset for r in records) == sorted([str(folder), str(csv)])
    assert all(r.status == "complete" for r in records)
    assert err.startswith(f"peftbench: tiny-gpt2 on {folder}, {csv}: 2 runs on cpu")
    assert f"[1/2] lora seed 0 on {folder}: accuracy" in err
    assert f"[2/2] lora seed 0 on {csv}: accuracy" in err
    frame = Leaderboard(records).to_frame()
    assert sorted(frame["dataset"]) == sorted([str(folder), str(csv)])  # one table per dataset
    (row,) = Leaderboard(records).aggregate().itertuples()
    assert (row.method, row.datasets, row.mean_rank) == ("lora", 2, 1.0)


def test_a_bad_second_dataset_fails_before_anything_trains(tmp_path, monkeypatch):
    from peftbench.runs import sweep as sweep_module

    folder = keyword_folder(tmp_path / "words", train=64, validation=16, test=16)
    monkeypatch.setattr(sweep_module, "build_context", lambda *args: pytest.fail("a context was built"))
    out = tmp_path / "runs"
    with pytest.raises(peftbench.PeftbenchError, match="dataset path '.*missing' does not exist"):
        peftbench.run(model="tiny-gpt2", dataset=[folder, tmp_path / "missing"], methods="lora",
                      max_steps=2, out=out, progress=False)  # fmt: skip
    assert not list(out.glob("records/*.json"))


def test_a_sweep_on_a_training_subset_names_it_and_records_it(tmp_path):
    folder = keyword_folder(tmp_path / "words", train=64, validation=16, test=16)
    board = peftbench.run(model="tiny-gpt2", dataset=folder, methods="lora", max_steps=2, train_examples=20,
                          references=False, out=tmp_path / "runs", progress=False)  # fmt: skip
    (made,) = read_records(tmp_path / "runs")
    assert made.status == "complete" and made.dataset == f"{folder}[train=20]"
    assert made.train_subset == {"examples": 20, "of": 64, "seed": 0}
    assert "trained on a fixed subset of 20 of the 64 training examples (seed 0)" in made.notes[-1]
    whole = load_splits(DatasetSpec(str(folder)))
    assert len(made.references) == len(whole.test)  # test untouched
    assert made.dataset_fingerprint == load_splits(DatasetSpec(str(folder), train_examples=20)).fingerprint()
    assert board.to_frame()["train_examples"].tolist() == [20]
