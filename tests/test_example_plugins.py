"""The example plugin packages under plugins/, installed by scripts/setup.sh, found by entry point."""

import pandas as pd
import pytest

import peftbench
from conftest import keyword_rows
from peftbench.plugins import collect_methods

BITFIT = "peftbench-bitfit 0.1.0"
EXTRAS = "peftbench-peft-extras 0.1.0"
EXTRA_METHODS = ["loha", "lokr", "dora", "vera", "prompt_tuning", "p_tuning"]
REFUSED_ON_GPT2 = {"loha", "lokr"}  # peft's LyCORIS layers do not support GPT-2's Conv1D


@pytest.fixture(scope="module")
def registry():
    registry = collect_methods()
    missing = {"bitfit", *EXTRA_METHODS} - set(registry.names())
    if missing:
        pytest.fail(f"example plugins not installed ({', '.join(sorted(missing))}): run scripts/setup.sh")
    return registry


@pytest.fixture(scope="module")
def keyword_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keywords")
    for split, count, seed in (("train", 128, 0), ("validation", 32, 1), ("test", 64, 2)):
        pd.DataFrame(keyword_rows(count, seed)).to_parquet(folder / f"{split}.parquet")
    return folder


def test_example_methods_come_from_their_distributions(registry):
    assert registry.get("bitfit").source == BITFIT
    for name in EXTRA_METHODS:
        assert registry.get(name).source == EXTRAS


@pytest.mark.parametrize("model", ["tiny-gpt2", "minilm"])
def test_every_example_method_trains_and_reloads_identically(registry, keyword_folder, tmp_path, model):
    board = peftbench.run(
        model=model, dataset=str(keyword_folder), methods=["bitfit", *EXTRA_METHODS], out=tmp_path,
        max_steps=3, references=False, progress=False,
    )  # fmt: skip
    records = {r.method: r for r in board.records}
    assert set(records) == {"bitfit", *EXTRA_METHODS}
    for name, record in records.items():
        if model == "tiny-gpt2" and name in REFUSED_ON_GPT2:
            assert record.status == "failed"
            assert "does not support GPT-2-style Conv1D projections; use lora" in record.error
            continue
        assert record.status == "complete", f"{name}: {record.error}"
        assert record.reload["predictions_identical"] is True, name
        assert 0 < record.costs["trainable_params"] < record.costs["total_params"]
    rows = board.to_frame().set_index("method")
    assert rows.loc["bitfit", "source"] == BITFIT and rows.loc["dora", "source"] == EXTRAS


def test_bitfit_trains_exactly_the_biases_and_the_head(registry):
    spec = peftbench.models.resolve_model("tiny-gpt2")
    model = peftbench.models.load_model(spec, ("a", "b"), 0, 50256)
    bitfit = registry.get("bitfit").method
    model = bitfit.prepare(model, None, bitfit.hyperparameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        n for n, _ in model.named_parameters() if n.endswith(".bias") or n.startswith("score.")
    }
    assert "score.weight" in trainable and "transformer.h.0.attn.c_attn.weight" not in trainable
