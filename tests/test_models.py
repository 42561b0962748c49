"""Base models and tokenizers: GPT-2's pooling under right padding, tokenizers without files."""

from __future__ import annotations

import torch

import peftbench
from peftbench.models import load_tokenizer, resolve_model


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
