"""The built-in methods: what they train, how seeds initialise them, the reference rows."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import peftbench
import peftbench.train
from conftest import keyword_folder
from fake_plugins import MethodsPlugin
from peftbench.batching import tokenize_split
from peftbench.data import DatasetSpec, load_splits
from peftbench.errors import PeftbenchError
from peftbench.methods.base import TrainableParametersMethod
from peftbench.models import (
    classification_head,
    load_model,
    load_tokenizer,
    resolve_model,
    transformer_blocks,
)
from peftbench.plugins import collect_methods
from peftbench.precision import apply_precision

HP = {
    "lora": {"learning_rate": 1e-2},
    "ia3": {"learning_rate": 5e-2},
    "prefix_tuning": {"learning_rate": 3e-2},
}


@pytest.mark.parametrize("method", ["lora", "ia3", "prefix_tuning"])
def test_classification_head_is_trainable_and_changes(method, keyword_dataset):
    spec = resolve_model("tiny-gpt2")
    tokenizer = load_tokenizer(spec)
    data = load_splits(DatasetSpec(str(keyword_dataset)))
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


def test_the_seed_initialises_what_the_method_adds(keyword_dataset, tmp_path):
    """Seeds must vary the adapter's own initialisation (LoRA's A), not only the head and order."""
    from safetensors.torch import load_file

    hp = {"lora": {"learning_rate": 1e-12}}  # a training step then moves nothing measurable
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_dataset), methods=["lora"], seeds=[0, 1], max_steps=1,
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


def test_full_finetuning_is_an_opt_in_reference_row(tmp_path):
    data = keyword_folder(tmp_path / "data", train=96, validation=48, test=48)
    board = peftbench.run(model="tiny-gpt2", dataset=str(data), methods="full_finetune", out=tmp_path / "r",
                          max_steps=2, progress=False)  # fmt: skip
    record = next(r for r in board.records if r.method == "full_finetune")
    assert record.status == "complete" and record.role == "reference"
    assert record.costs["trainable_params"] == record.costs["total_params"]
    assert record.reload["predictions_identical"]
    assert "full_finetune" not in {r.method for r in peftbench.run(
        model="tiny-gpt2", dataset=str(data), methods="lora", out=tmp_path / "s", max_steps=1, progress=False
    ).records}  # fmt: skip


def test_bf16_policy_keeps_trainable_weights_fp32():
    spec = resolve_model("tiny-gpt2")
    lora = peftbench.collect_methods().get("lora").method
    model = lora.prepare(load_model(spec, ("a", "b"), 0, 50256), None, lora.hyperparameters())
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    apply_precision(model, "bf16", keep_fp32=trained)
    for name, parameter in model.named_parameters():
        assert parameter.dtype == (torch.float32 if name in trained else torch.bfloat16), name


class LastBlock(TrainableParametersMethod):
    name = "last_block"
    description = "The last transformer block and the head train."

    def prepare(self, model, task, hp):
        model.requires_grad_(False)
        transformer_blocks(model)[-1].requires_grad_(True)
        classification_head(model).requires_grad_(True)
        return model


def test_trainable_parameters_are_saved_and_loaded_exactly(tmp_path):
    method, spec = LastBlock(), resolve_model("tiny-gpt2")
    model = method.prepare(load_model(spec, ("a", "b"), 0, 50256), None, {})
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for parameter in trained.values():
            parameter.add_(1.0)  # as if trained
    method.save(model, tmp_path)
    saved = load_file(str(tmp_path / method.WEIGHTS))
    assert set(saved) == set(trained) and all(n.startswith(("transformer.h.1.", "score.")) for n in saved)
    fresh = method.load(load_model(spec, ("a", "b"), 0, 50256), tmp_path, None, {})
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == set(trained)  # prepared again
    for name, parameter in fresh.named_parameters():
        assert torch.equal(parameter, dict(model.named_parameters())[name]), name
    save_file({"transformer.h.9.ln_1.weight": torch.ones(3)}, str(tmp_path / method.WEIGHTS))
    with pytest.raises(PeftbenchError, match="do not fit this model"):
        method.load(load_model(spec, ("a", "b"), 0, 50256), tmp_path, None, {})


class RandomFrozenHead(TrainableParametersMethod):
    """Draws its frozen head at random in prepare: reloading needs the same draw."""

    name = "random_frozen_head"
    description = "A random frozen head over a trained last block."

    def prepare(self, model, task, hp):
        model.requires_grad_(False)
        with torch.no_grad():
            classification_head(model).weight.normal_()
        transformer_blocks(model)[-1].requires_grad_(True)
        return model


def test_load_draws_what_prepare_drew(keyword_dataset, tmp_path, register_plugin):
    """The global generator is seeded with the run's seed before prepare and again before load."""
    register_plugin(MethodsPlugin(RandomFrozenHead()))
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_dataset), methods="random_frozen_head", seeds=[1],
        max_steps=2, out=tmp_path, references=False, progress=False,
    )  # fmt: skip
    (record,) = board.records
    assert record.status == "complete" and record.reload["predictions_identical"] is True
