"""Tokenise once, then batch without padding waste.

Splits are tokenised without padding; training batches are built from length buckets (shuffled
under the seed), evaluation batches from length-sorted examples, and each batch is padded only to
its own longest sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from peftbench.data import TextSplit

BUCKET_BATCHES = 50  # a bucket holds this many batches; sorting within it groups similar lengths


@dataclass
class TokenizedSplit:
    input_ids: list[np.ndarray]
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.lengths = np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_split(tokenizer, split: TextSplit, max_length: int) -> TokenizedSplit:
    encoded = tokenizer(split.texts, truncation=True, max_length=max_length, padding=False)
    ids = [np.asarray(row, dtype=np.int64) for row in encoded["input_ids"]]
    return TokenizedSplit(ids, split.labels)


def train_batches(split: TokenizedSplit, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Length-bucketed batches: shuffle, sort inside buckets, then shuffle the batch order."""
    order = rng.permutation(len(split))
    bucket = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(split.lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(split: TokenizedSplit, batch_size: int) -> list[np.ndarray]:
    """Batches of length-sorted examples (longest first, so memory peaks show up at once)."""
    order = np.argsort(-split.lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(split: TokenizedSplit, indices: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the chosen examples to their longest; GPT-2 then pools its last real token."""
    width = int(split.lengths[indices].max())
    input_ids = np.full((len(indices), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(indices), width), dtype=np.int64)
    for row, index in enumerate(indices):
        ids = split.input_ids[index]
        input_ids[row, : len(ids)] = ids
        attention[row, : len(ids)] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "labels": torch.from_numpy(split.labels[indices]),
    }
