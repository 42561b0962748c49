"""Base models: GPT-2's pooling under right padding, the parts of a model plugin authors need, and
a seeded copy of a base read once that is the model a fresh load would give."""

from __future__ import annotations

import pickle

import pytest
import torch
import transformers

import peftbench
from peftbench.errors import PeftbenchError
from peftbench.models import (
    classification_head,
    load_base_model,
    load_model,
    load_tokenizer,
    resolve_model,
    seeded_copy,
    transformer_blocks,
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


def tiny_models() -> dict[str, torch.nn.Module]:
    """One small sequence classifier per layout: GPT-2, BERT-style and Llama-style."""
    bert = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        num_labels=2,
    )  # fmt: skip
    llama = transformers.LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=2, num_labels=2, pad_token_id=0,
    )  # fmt: skip
    return {
        "gpt2": load_model(resolve_model("tiny-gpt2"), ("a", "b"), 0, 50256),
        "bert": transformers.BertForSequenceClassification(bert),
        "llama": transformers.LlamaForSequenceClassification(llama),
    }


def test_transformer_blocks_and_the_head_are_found_in_every_layout():
    models = tiny_models()
    expected = {"gpt2": (2, "GPT2Block", "score"), "bert": (3, "BertLayer", "classifier"),
                "llama": (4, "LlamaDecoderLayer", "score")}  # fmt: skip
    for name, model in models.items():
        count, block, head = expected[name]
        blocks = transformer_blocks(model)
        assert len(blocks) == count and type(blocks[-1]).__name__ == block, name
        assert classification_head(model) is getattr(model, head), name


def test_a_model_without_blocks_or_head_is_one_line():
    with pytest.raises(PeftbenchError, match="cannot find the transformer blocks of Linear"):
        transformer_blocks(torch.nn.Linear(2, 2))
    with pytest.raises(PeftbenchError, match="Linear has no classification head named score or classifier"):
        classification_head(torch.nn.Linear(2, 2))


def test_a_checkpoint_saved_in_bf16_is_handed_to_methods_in_fp32(tmp_path):
    bf16 = tiny_models()["llama"].to(torch.bfloat16)
    bf16.save_pretrained(tmp_path)
    model = load_model(resolve_model(str(tmp_path)), ("a", "b"), 0, 0)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def assert_same_model(model: torch.nn.Module, expected: torch.nn.Module) -> None:
    """Tensor for tensor (parameters and buffers), dtype for dtype, the same config and mode."""
    state, wanted = model.state_dict(), expected.state_dict()
    assert list(state) == list(wanted)
    for name, tensor in wanted.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
    assert model.config.to_dict() == expected.config.to_dict()
    assert [m.training for m in model.modules()] == [m.training for m in expected.modules()]


@pytest.fixture(scope="module")
def saved_bert(tmp_path_factory):
    """A BERT-style checkpoint folder (its head of another size than two labels, as a real one)."""
    folder = tmp_path_factory.mktemp("bert")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=3,
    )  # fmt: skip
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return resolve_model(str(folder))


@pytest.mark.parametrize("layout", ["gpt2", "bert"])
def test_a_seeded_copy_of_the_base_is_the_model_load_model_gives(layout, saved_bert):
    spec, pad = (resolve_model("tiny-gpt2"), 50256) if layout == "gpt2" else (saved_bert, 0)
    base = load_base_model(spec, ("a", "b"), pad)
    heads = []
    for seed in (0, 7):
        copied = seeded_copy(base, seed)
        assert_same_model(copied, load_model(spec, ("a", "b"), seed, pad))
        heads.append(classification_head(copied).weight)
    assert not torch.equal(*heads)  # the head follows the seed


def test_seeded_copies_share_nothing_with_the_base_or_each_other():
    base = load_base_model(resolve_model("tiny-gpt2"), ("a", "b"), 50256)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    first, second = seeded_copy(base, 0), seeded_copy(base, 0)
    pointers = {t.data_ptr() for t in [*base.state_dict().values(), *second.state_dict().values()]}
    assert not pointers & {t.data_ptr() for t in first.state_dict().values()}
    optimizer = torch.optim.SGD(first.parameters(), lr=1.0)
    first(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()
    assert not torch.equal(first.transformer.h[0].mlp.c_fc.weight, second.transformer.h[0].mlp.c_fc.weight)
    assert_same_model(second, load_model(resolve_model("tiny-gpt2"), ("a", "b"), 0, 50256))
    assert all(torch.equal(base.state_dict()[k], v) for k, v in before.items())


def test_the_base_survives_a_pickle_round_trip(saved_bert):
    base = load_base_model(saved_bert, ("a", "b"), 0)
    again = pickle.loads(pickle.dumps(base))
    assert_same_model(seeded_copy(again, 3), load_model(saved_bert, ("a", "b"), 3, 0))
