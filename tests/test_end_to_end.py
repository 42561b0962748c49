"""Tiny GPT-2 through the whole harness: train, record, reload, leaderboard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import peftbench
from conftest import keyword_rows
from fake_plugins import HeadProbePlugin
from peftbench.batching import tokenize_split
from peftbench.data import DatasetSpec, load_splits
from peftbench.evaluation import evaluate_model
from peftbench.models import load_tokenizer, resolve_model
from peftbench.plugins import collect_methods, default_plugin_manager

METHODS = ["lora", "ia3", "prefix_tuning", "head_probe"]
HP = {
    "lora": {"learning_rate": 1e-2},
    "ia3": {"learning_rate": 5e-2},
    "prefix_tuning": {"learning_rate": 3e-2},
}


@pytest.fixture(scope="module")
def keyword_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keywords")
    for split, count, seed in (("train", 256, 0), ("validation", 64, 1), ("test", 96, 2)):
        pd.DataFrame(keyword_rows(count, seed)).to_parquet(folder / f"{split}.parquet")
    return folder


@pytest.fixture(scope="module")
def head_probe_plugin():
    manager = default_plugin_manager()
    manager.register_plugin(HeadProbePlugin(), name="head-probe-test", source="peftbench-test 0.0")
    yield
    manager.unregister(name="head-probe-test")


def sweep(keyword_folder, out, **extra):
    options = dict(model="tiny-gpt2", dataset=str(keyword_folder), methods=METHODS, out=out, epochs=6, hp=HP)
    options.update(extra)
    return peftbench.run(**options, progress=False)


@pytest.fixture(scope="module")
def board(keyword_folder, head_probe_plugin, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return sweep(keyword_folder, out), out


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
        result = evaluate_model(model, test, 2, 128, torch.device("cpu"), tokenizer.pad_token_id)
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


def test_rerun_skips_complete_runs_and_force_reproduces_them(board, keyword_folder):
    _, out = board
    before = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    lora_only = {"methods": ["lora"], "hp": {"lora": HP["lora"]}}
    again = sweep(keyword_folder, out, **lora_only)
    assert {p.name: p.read_bytes() for p in (out / "records").glob("*.json")} == before
    forced = sweep(keyword_folder, out, **lora_only, force=True)
    old = {r.run_id: r for r in again.records}
    for record in forced.records:
        if record.method == "lora":
            assert record.predictions == old[record.run_id].predictions
            assert record.finished_at >= old[record.run_id].finished_at


@pytest.mark.parametrize("method", ["lora", "ia3", "prefix_tuning"])
def test_classification_head_is_trainable_and_changes(method, keyword_folder):
    spec = resolve_model("tiny-gpt2")
    tokenizer = load_tokenizer(spec)
    data = load_splits(DatasetSpec(str(keyword_folder)))
    entry = collect_methods().get(method).method
    hp = entry.hyperparameters(HP[method])
    task = peftbench.TaskInfo(2, data.label_names, (128, 128))
    model = entry.prepare(
        peftbench.models.load_model(spec, data.label_names, 0, tokenizer.pad_token_id), task, hp
    )
    head = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and "score" in n}
    assert head, "the classification head must be trainable"
    split = tokenize_split(tokenizer, data.train, 64)
    config = peftbench.TrainConfig(max_steps=5)
    peftbench.train.train(model, split, hp, config, 0, torch.device("cpu"), tokenizer.pad_token_id, False)
    after = dict(model.named_parameters())
    assert all(not torch.equal(head[n], after[n]) for n in head)


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


def test_gpt2_pools_the_last_real_token_under_right_padding():
    spec = resolve_model("tiny-gpt2")
    tokenizer = load_tokenizer(spec)
    model = peftbench.models.load_model(spec, ("a", "b"), 0, tokenizer.pad_token_id).eval()
    short = tokenizer("short one")["input_ids"]
    long = tokenizer("a much longer sentence that forces padding onto the short one")["input_ids"]
    batch = tokenizer.pad({"input_ids": [short, long]}, return_tensors="pt")
    assert tokenizer.padding_side == "right" and batch["input_ids"][0, -1] == tokenizer.pad_token_id
    with torch.no_grad():
        padded = model(**batch).logits[0]
        alone = model(input_ids=torch.tensor([short])).logits[0]
    assert torch.allclose(padded, alone, atol=1e-5)


def test_the_seed_initialises_what_the_method_adds(keyword_folder, tmp_path):
    """Seeds must vary the adapter's own initialisation (LoRA's A), not only the head and order."""
    from safetensors.torch import load_file

    hp = {"lora": {"learning_rate": 1e-12}}  # a training step then moves nothing measurable
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_folder), methods=["lora"], seeds=[0, 1], max_steps=1,
        hp=hp, out=tmp_path, progress=False,
    )  # fmt: skip
    lora_a = {}
    for record in board.records:
        if record.method == "lora":
            (weights,) = (tmp_path / "adapters" / record.run_id).rglob("*.safetensors")
            tensors = load_file(weights)
            a_parts = [t.flatten() for k, t in sorted(tensors.items()) if "lora_A" in k]
            lora_a[record.seed] = torch.cat(a_parts)
    assert set(lora_a) == {0, 1}
    assert not torch.allclose(lora_a[0], lora_a[1], atol=1e-3)
