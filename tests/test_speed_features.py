"""Tokenise once, no padding waste, precision policy and the costs every record carries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import peftbench
from conftest import keyword_rows, write_keyword_csv
from peftbench import token_cache
from peftbench.batching import TokenizedSplit, collate, eval_batches
from peftbench.costs import model_flops_utilisation, training_flops_per_token
from peftbench.data import DatasetSpec, load_splits
from peftbench.errors import PeftbenchError
from peftbench.models import load_model, load_tokenizer, resolve_model
from peftbench.precision import apply_precision, resolve_precision
from peftbench.train import TrainConfig, plan_batches


def random_split(count: int, seed: int = 0) -> TokenizedSplit:
    rng = np.random.default_rng(seed)
    return TokenizedSplit(
        [np.arange(rng.integers(1, 80)) for _ in range(count)], np.zeros(count, dtype=np.int64)
    )


def test_second_method_reads_the_tokenised_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    calls = []
    real = token_cache.tokenize_split
    monkeypatch.setattr(token_cache, "tokenize_split", lambda *a: calls.append(a[1]) or real(*a))
    data = write_keyword_csv(tmp_path / "d.csv", rows=80)
    common = dict(model="tiny-gpt2", dataset=str(data), out=tmp_path / "runs", max_steps=1, progress=False)
    peftbench.run(methods=["lora"], **common)
    assert len(calls) == 3  # train, validation, test: once each
    peftbench.run(methods=["ia3"], **common)
    assert len(calls) == 3, "the second method must not re-tokenise"
    peftbench.run(methods=["ia3"], max_length=16, **{k: v for k, v in common.items()})
    assert len(calls) == 6, "another max length is another cache entry"


def test_cached_split_round_trips_exactly(tmp_path):
    tokenizer = load_tokenizer(resolve_model("tiny-gpt2"))
    split = load_splits(DatasetSpec(str(write_keyword_csv(tmp_path / "d.csv")))).train
    key = token_cache.tokenizer_fingerprint(tokenizer)
    first, hit_first = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)
    second, hit_second = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)
    assert (hit_first, hit_second) == (False, True)
    assert [a.tolist() for a in first.input_ids] == [b.tolist() for b in second.input_ids]
    assert np.array_equal(first.labels, second.labels)


def test_every_example_is_trained_once_per_epoch_in_length_buckets():
    split = random_split(1000)
    batches = plan_batches(split, TrainConfig(epochs=2, batch_size=16), seed=3)
    assert len(batches) == 2 * 63
    first_epoch = np.concatenate(batches[:63])
    assert sorted(first_epoch.tolist()) == list(range(1000))
    assert (
        plan_batches(split, TrainConfig(epochs=2, batch_size=16), seed=3)[5].tolist() == batches[5].tolist()
    )

    def efficiency(groups):
        real = sum(split.lengths[g].sum() for g in groups)
        return real / sum(len(g) * split.lengths[g].max() for g in groups)

    shuffled = np.array_split(np.random.default_rng(0).permutation(1000), 63)
    assert efficiency(batches[:63]) > 0.9 > efficiency(shuffled)
    assert efficiency(eval_batches(split, 16)) >= efficiency(batches[:63])  # fully sorted: the least padding


def test_collate_pads_right_to_the_batch_longest():
    split = TokenizedSplit([np.array([5, 6, 7]), np.array([8])], np.array([0, 1]))
    batch = collate(split, np.array([0, 1]), pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_bf16_policy_keeps_trainable_weights_fp32():
    spec = resolve_model("tiny-gpt2")
    lora = peftbench.collect_methods().get("lora").method
    model = lora.prepare(load_model(spec, ("a", "b"), 0, 50256), None, lora.hyperparameters())
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    apply_precision(model, "bf16", keep_fp32=trained)
    for name, parameter in model.named_parameters():
        assert parameter.dtype == (torch.float32 if name in trained else torch.bfloat16), name


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in {"fp32", "bf16"}
    with pytest.raises(PeftbenchError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", cpu)


def test_mfu_estimate(monkeypatch):
    assert training_flops_per_token(100, 10) == 420
    assert model_flops_utilisation(1000.0, 100, 10, torch.device("cpu")) is None  # no known peak
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", "1e-6")  # 1 MFLOP/s
    assert model_flops_utilisation(1000.0, 100, 10, torch.device("cpu")) == pytest.approx(0.42)


def test_every_record_carries_its_costs(tmp_path):
    data = tmp_path / "d.parquet"
    import pandas as pd

    pd.DataFrame(keyword_rows(64, 0)).to_parquet(data)
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(data), methods="lora", out=tmp_path / "r", progress=False
    )
    record = next(r for r in board.records if r.method == "lora")
    costs = record.costs
    assert costs["train_steps"] == 2 and costs["train_seconds"] > 0
    assert costs["train_tokens_per_second"] > 0 and costs["train_samples_per_second"] > 0
    assert 0.5 < costs["padding_efficiency"] <= 1.0
    assert costs["peak_memory_mb"] > 50 and costs["eval_seconds"] > 0
    adapter_files = (tmp_path / "r" / record.adapter_path).rglob("*")
    assert costs["adapter_bytes"] == sum(f.stat().st_size for f in adapter_files if f.is_file()) > 0
    assert record.train_config["precision"] in {"bf16", "fp32"}  # what "auto" resolved to
    markdown = board.to_markdown()
    assert "tokens/s" in markdown and "peak MB" in markdown and "adapter KB" in markdown
