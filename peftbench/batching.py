"""Tokenise once, then batch without padding waste.

Splits are tokenised without padding; training batches are built from length buckets (shuffled
under the seed), evaluation batches from length-sorted examples, and each batch is padded only to
its own longest sequence. A compiled model instead gets ``StaticShapes``: a few fixed widths and
always the same number of rows, so it compiles (and records CUDA graphs) once per width rather
than once per batch shape.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import torch

from peftbench.data import TextSplit
from peftbench.tasks.base import PAD_LABEL
from peftbench.tasks.inputs import encode

BUCKET_BATCHES = 50  # a bucket holds this many batches; sorting within it groups similar lengths
SMALLEST_WIDTH = 16  # the narrowest static width; GPU matmuls like multiples of 16


@dataclass
class TokenizedSplit:
    input_ids: list[np.ndarray]
    labels: np.ndarray
    #: Per example, which text of a pair each token belongs to, where the tokenizer's pair
    #: encoding says so (BERT's segment ids); ``None`` for single texts and GPT-2's pairs.
    token_type_ids: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.lengths = np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_split(tokenizer, split: TextSplit, max_length: int) -> TokenizedSplit:
    """Token ids of every example: one text, or a pair (``peftbench.tasks.inputs``)."""
    encoded = encode(tokenizer, split.texts, split.second, max_length)
    return TokenizedSplit(encoded.input_ids, split.labels, encoded.token_type_ids)


def pad_labels(labels: np.ndarray, rows: int) -> np.ndarray:
    """``labels`` topped up to ``rows`` with filler labels every task's loss ignores: ``PAD_LABEL``
    for class ids, NaN for values."""
    filler = PAD_LABEL if np.issubdtype(labels.dtype, np.integer) else np.nan
    return np.concatenate([labels, np.full(rows - len(labels), filler, dtype=labels.dtype)])


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


def bucket_widths(max_length: int) -> tuple[int, ...]:
    """The static widths for ``max_length``: powers of two from ``SMALLEST_WIDTH``, then
    ``max_length`` itself, so every truncated example fits one and few shapes are compiled."""
    widths = []
    width = SMALLEST_WIDTH
    while width < max_length:
        widths.append(width)
        width *= 2
    return (*widths, max_length)


@dataclass(frozen=True)
class StaticShapes:
    """Fixed batch shapes: ``rows`` rows (a short batch is topped up with filler rows whose labels
    the loss ignores, see ``pad_labels``) and a width from ``widths``."""

    widths: tuple[int, ...]
    rows: int

    @classmethod
    def for_lengths(cls, max_length: int, rows: int) -> StaticShapes:
        return cls(bucket_widths(max_length), rows)

    def width(self, longest: int) -> int:
        """The smallest width that holds ``longest`` tokens (``longest`` itself if none does)."""
        at = bisect.bisect_left(self.widths, longest)
        return self.widths[at] if at < len(self.widths) else longest


def collate(
    split: TokenizedSplit, indices: np.ndarray, pad_id: int, shapes: StaticShapes | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad the chosen examples to their longest (or to ``shapes``); GPT-2 then pools its
    last real token. A filler row attends to its first (pad) token only, so it stays finite."""
    width = int(split.lengths[indices].max())
    rows = len(indices)
    labels = split.labels[indices]
    if shapes is not None:
        width, rows = shapes.width(width), max(rows, shapes.rows)
        labels = pad_labels(labels, rows)
    input_ids = np.full((rows, width), pad_id, dtype=np.int64)
    attention = np.zeros((rows, width), dtype=np.int64)
    attention[len(indices) :, 0] = 1
    types = None if split.token_type_ids is None else np.zeros((rows, width), dtype=np.int64)
    for row, index in enumerate(indices):
        ids = split.input_ids[index]
        input_ids[row, : len(ids)] = ids
        attention[row, : len(ids)] = 1
        if types is not None:
            types[row, : len(ids)] = split.token_type_ids[index]
    batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention)}
    if types is not None:
        batch["token_type_ids"] = torch.from_numpy(types)
    batch["labels"] = torch.from_numpy(labels)
    return batch
