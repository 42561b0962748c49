"""Methods that train on the frozen model's features: the features are what the head reads at the
pooled position, the head trained on them is the full model's head (its predictions, save and
reload go through the full model and agree), and a sweep computes them once per dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file

import peftbench
from conftest import keyword_folder
from fake_plugins import HeadProbe
from peftbench import hookimpl
from peftbench.batching import TokenizedSplit
from peftbench.methods.reference import HeadOnly
from peftbench.models import classification_head
from peftbench.plugins import collect_methods
from peftbench.runs import sweep as sweep_module
from peftbench.runs.context import build_context
from peftbench.runs.executors import LocalExecutor
from peftbench.runs.features import (
    FrozenFeatures,
    HeadOnFeatures,
    NoPooledVector,
    _head_inputs,
    _pooled,
    compute_features,
    feature_splits,
    head_on_features,
)
from peftbench.runs.runner import execute_run
from peftbench.runs.spec import make_spec
from peftbench.settings import TrainConfig, sweep_config
from peftbench.train import train

PAD = 0
CPU = torch.device("cpu")


def split(lengths=(5, 2, 7, 3, 6), vocab=90) -> TokenizedSplit:
    rng = np.random.default_rng(0)
    ids = [rng.integers(1, vocab, size=n) for n in lengths]
    return TokenizedSplit(ids, np.arange(len(lengths)) % 2)


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    shape = dict(
        vocab_size=100, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3
    )
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=100, n_layer=2, n_head=2, n_embd=32, num_labels=3)
        model = transformers.GPT2ForSequenceClassification(config)
    elif kind == "bert":
        model = transformers.BertForSequenceClassification(transformers.BertConfig(hidden_size=32, **shape))
    else:
        config = transformers.RobertaConfig(hidden_size=32, max_position_embeddings=40, **shape)
        model = transformers.RobertaForSequenceClassification(config)
    model.config.pad_token_id = PAD
    return model.eval()


def expected_features(kind: str, model, batch) -> torch.Tensor:
    """What each model's head reads, from the model's own parts (not from the hook)."""
    if kind == "gpt2":  # score sees every position; the model returns the last real token's
        hidden = model.transformer(**batch).last_hidden_state
        last = batch["attention_mask"].sum(dim=1) - 1
        return hidden[torch.arange(len(hidden)), last]
    if kind == "bert":  # the pooler's output (its dropout is off in eval mode)
        return model.bert(**batch).pooler_output
    return model.roberta(**batch).last_hidden_state[:, 0]  # RoBERTa's head reads position 0


@pytest.mark.parametrize("kind", ["gpt2", "bert", "roberta"])
def test_features_are_what_the_head_reads_at_the_pooled_position(kind):
    model, data = tiny(kind), split()
    where = SimpleNamespace(
        train_config=TrainConfig(eval_batch_size=2), device=CPU, precision="fp32", pad_id=PAD
    )
    table, sequence = _head_inputs(where, model, data)
    assert sequence == (kind == "roberta")
    for index, ids in enumerate(data.input_ids):  # each example alone: no padding at all
        batch = {
            "input_ids": torch.from_numpy(ids)[None],
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        }
        with torch.no_grad():
            torch.testing.assert_close(table[index], expected_features(kind, model, batch)[0])
            logits = model(**batch).logits[0]
            probe = HeadOnFeatures(classification_head(model), table, sequence)
            cached = probe(torch.tensor([[index]])).logits[0]
        torch.testing.assert_close(cached, logits, rtol=1e-5, atol=1e-6)


def test_a_head_that_reads_the_whole_sequence_has_no_features_to_cache():
    class MeanHead(torch.nn.Module):
        def forward(self, hidden):
            return hidden.mean(dim=1)[:, :2]

    head, hidden = MeanHead(), torch.randn(3, 4, 5)
    with pytest.raises(NoPooledVector, match="reads more of the sequence than one vector"):
        _pooled(head, hidden, head(hidden), head(hidden))


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """A tiny-gpt2 context with dropout switched off in the model, so that training through the
    full model and training on cached features must give the same head."""
    data = keyword_folder(tmp_path_factory.mktemp("features") / "data", train=48, validation=16, test=16)
    out = tmp_path_factory.mktemp("out")
    config = sweep_config(model="tiny-gpt2", dataset=str(data), epochs=2, max_steps=3, curve_points=3,
                          measure_inference=False, out=out, progress=False)  # fmt: skip
    ctx = build_context(config, LocalExecutor().start("cpu", "fp32"))
    for module in ctx.base_model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ctx.features = compute_features(ctx)
    return ctx


def test_without_dropout_the_head_trained_on_features_is_the_head_trained_through_the_model(context):
    ctx, method = context, HeadOnly()
    hp = {**method.hyperparameters(), "learning_rate": 0.05}
    heads = []
    for cached in (False, True):
        model = ctx.place(method.prepare(ctx.fresh_model(3), ctx.task, hp), set())
        trainee, where = head_on_features(model, ctx.features, ctx, method.name) if cached else (model, ctx)
        stats = train(trainee, where.train, hp, where.train_config, 3, CPU, ctx.pad_id, progress=False)
        heads.append((classification_head(model).weight.detach().clone(), stats))
    (full, full_stats), (probe, probe_stats) = heads
    assert not torch.equal(full, ctx.fresh_model(3).score.weight)  # it trained
    torch.testing.assert_close(probe, full, rtol=1e-4, atol=1e-6)  # the same batches, the same steps
    assert probe_stats.steps == full_stats.steps and probe_stats.tokens == full_stats.tokens
    assert [loss for _, loss in probe_stats.loss_history] == pytest.approx(
        [loss for _, loss in full_stats.loss_history], rel=1e-4
    )


def test_the_feature_trained_head_reloads_and_predicts_as_the_full_model(context, tmp_path):
    ctx = context
    entry = collect_methods().get("head_only")
    spec = make_spec(ctx, entry, entry.method.hyperparameters({"learning_rate": 0.05}), seed=1)
    record = execute_run(ctx, spec, tmp_path / "adapter")
    assert record.status == "complete", record.error
    assert (
        record.train_config["features"] == "cached"
        and record.costs["feature_seconds"] == ctx.features.seconds
    )
    assert record.reload["predictions_identical"] and record.reload["max_abs_logit_difference"] == 0.0
    assert any("computed once for this dataset by the sweep" in note for note in record.notes)
    assert any("predicted alike for 16 of 16 examples" in note for note in record.notes)
    assert ctx.task.plan.total_steps == 3
    assert len(record.curves["validation_accuracy"]) == 3  # checkpoints on cached features, then the end
    # the saved head, put back into the full model: the full model's predictions are the record's,
    # and those of the same head fed the cached features
    state = load_file(str(tmp_path / "adapter" / "trained.safetensors"))
    assert set(state) == {"score.weight"}
    model = ctx.fresh_model(1)
    model.load_state_dict(state, strict=False)
    full = ctx.evaluate(model, ctx.test)
    assert full.predictions.tolist() == record.predictions
    probe = HeadOnFeatures(classification_head(model), ctx.features.vectors)
    on_features = ctx.evaluate(probe, feature_splits(ctx)["validation"])
    through_model = ctx.evaluate(model, ctx.validation)
    assert np.array_equal(on_features.predictions, through_model.predictions)
    np.testing.assert_allclose(on_features.logits, through_model.logits, rtol=1e-5, atol=1e-6)
    assert record.metrics["validation_accuracy"] == through_model.scores["accuracy"]


def test_seeds_give_their_own_heads_and_a_seed_repeats_exactly(context, tmp_path):
    entry = collect_methods().get("head_only")
    hp = entry.method.hyperparameters({"learning_rate": 0.05})
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        record = execute_run(context, make_spec(context, entry, hp, seed=seed), tmp_path / name)
        runs[name] = load_file(str(tmp_path / name / "trained.safetensors"))["score.weight"]
        assert record.status == "complete"
    assert torch.equal(runs["a"], runs["b"]) and not torch.equal(runs["a"], runs["c"])


def test_a_model_without_features_to_cache_trains_through_the_model_and_says_so(context, tmp_path):
    why = "this model's classification head reads more of the sequence"
    ctx = dataclasses.replace(context, features=FrozenFeatures(None, 0.5, unavailable=why))
    entry = collect_methods().get("head_only")
    record = execute_run(ctx, make_spec(ctx, entry, entry.method.hyperparameters(), seed=0), tmp_path / "a")
    assert record.status == "complete" and record.reload["predictions_identical"]
    assert "features" not in record.train_config and "feature_seconds" not in record.costs
    assert record.notes == [f"trained through the full model: {why}"]  # nothing cached: no agreement


class BodyToo(HeadProbe):
    """Declares that it trains on the frozen features, but leaves the last block trainable."""

    name = "body_too"
    trains_on_features = True

    def prepare(self, model, task, hp):
        model = super().prepare(model, task, hp)
        model.transformer.h[-1].requires_grad_(True)
        return model


class Declarations:
    def __init__(self, *methods):
        self.methods = methods

    @hookimpl
    def register_methods(self, register):
        for method in self.methods:
            register(method)


def test_the_declaration_is_checked_at_registration_and_when_the_method_prepares(
    register_plugin, context, tmp_path
):
    wrong = HeadProbe()
    wrong.name, wrong.trains_on_features = "wrong", "yes"
    register_plugin(Declarations(wrong), name="wrong")
    with pytest.raises(peftbench.PeftbenchError, match="its trains_on_features 'yes' must be True or False"):
        collect_methods()


def test_a_method_that_trains_nothing_cannot_train_on_features(register_plugin):
    idle = HeadProbe()
    idle.name, idle.trains, idle.trains_on_features = "idle", False, True
    register_plugin(Declarations(idle), name="idle")
    with pytest.raises(peftbench.PeftbenchError, match="declares trains_on_features but trains nothing"):
        collect_methods()


def test_a_method_that_trains_more_than_the_head_on_features_fails_in_one_line(
    register_plugin, context, tmp_path
):
    register_plugin(Declarations(BodyToo()), name="body_too")
    entry = collect_methods().get("body_too")
    record = execute_run(
        context, make_spec(context, entry, entry.method.hyperparameters(), 0), tmp_path / "a"
    )
    assert record.status == "failed" and "(during prepare)" in record.error
    assert "declares trains_on_features, but its prepare left parameters outside the classification head" in (
        record.error
    )
    assert "transformer.h.1" in record.error


def test_a_sweep_computes_the_features_once_per_dataset(tmp_path, monkeypatch):
    calls = []
    real = sweep_module.compute_features
    monkeypatch.setattr(
        sweep_module, "compute_features", lambda ctx: calls.append(ctx.dataset_name) or real(ctx)
    )
    data = [keyword_folder(tmp_path / name, train=32, validation=8, test=8) for name in ("one", "two")]
    options = dict(model="tiny-gpt2", dataset=[str(d) for d in data], methods="head_only", seeds="0,1,2",
                   references=False, max_steps=2, out=tmp_path / "out", progress=False,
                   measure_inference=False)  # fmt: skip
    board = peftbench.run(**options)
    assert calls == [str(data[0]), str(data[1])]  # once per dataset, for its 3 runs
    done = [r for r in board.records if r.status == "complete"]
    assert len(done) == 6 and all(r.train_config["features"] == "cached" for r in done)
    for name in map(str, data):
        assert len({r.costs["feature_seconds"] for r in done if r.dataset == name}) == 1  # the one pass
    assert board.to_frame()["feature_seconds"].notna().all()
    assert "features s" in board.to_markdown()
    again = peftbench.run(**options)
    assert calls == [str(data[0]), str(data[1])] and len(again.records) == 6  # resumed: nothing computed


def test_methods_without_the_declaration_train_through_the_model_as_before(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "compute_features", lambda ctx: pytest.fail("features were computed"))
    data = keyword_folder(Path(tmp_path) / "d", train=32, validation=8, test=8)
    board = peftbench.run(model="tiny-gpt2", dataset=str(data), methods="lora", references=False, max_steps=2,
                          out=tmp_path / "out", progress=False, measure_inference=False)  # fmt: skip
    (record,) = board.records
    assert "features" not in record.train_config and "feature_seconds" not in record.costs
