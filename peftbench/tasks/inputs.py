"""Which text columns a dataset is read from, and how one text or a pair becomes token ids.

A pair is encoded the way the tokenizer encodes pairs where it has a pair encoding (BERT-style:
``[CLS] first [SEP] second [SEP]``, with token type ids telling the two apart). A tokenizer without
one (GPT-2's adds no special tokens at all) gets the two texts joined by ``PAIR_SEPARATOR``, a
newline, whose tokens are never truncated. Either way ``max_length`` truncates the longer text
first ("longest_first": tokens are taken off the end of whichever text is longer), by the
tokenizer's own truncation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Detected pairs of text columns, in the order they are looked for (before single columns).
PAIR_COLUMNS = (
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("question1", "question2"),
)
#: Detected single text columns, in the order they are looked for.
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "tweet", "sms", "question")
#: What joins the two texts of a pair for a tokenizer without a pair encoding (GPT-2).
PAIR_SEPARATOR = "\n"


@dataclass
class Encoded:
    """Token ids per example, and token type ids where the pair encoding has them."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None = None


def has_pair_encoding(tokenizer) -> bool:
    """Whether the tokenizer marks the two texts of a pair itself (BERT: ``[SEP]``, segment ids)."""
    return tokenizer.num_special_tokens_to_add(pair=True) > tokenizer.num_special_tokens_to_add(pair=False)


def encode(tokenizer, first: list[str], second: list[str] | None, max_length: int) -> Encoded:
    """Token ids of one text per example, or of a pair (``second`` given), at most ``max_length``."""
    if second is None:
        encoded = tokenizer(first, truncation=True, max_length=max_length, padding=False)
        return Encoded([np.asarray(row, dtype=np.int64) for row in encoded["input_ids"]])
    if has_pair_encoding(tokenizer):
        encoded = tokenizer(first, second, truncation="longest_first", max_length=max_length, padding=False)
        ids = [np.asarray(row, dtype=np.int64) for row in encoded["input_ids"]]
        types = encoded.get("token_type_ids")
        keep = types is not None and "token_type_ids" in tokenizer.model_input_names
        return Encoded(ids, [np.asarray(row, dtype=np.int64) for row in types] if keep else None)
    return Encoded(_joined(tokenizer, first, second, max_length))


def _joined(tokenizer, first: list[str], second: list[str], max_length: int) -> list[np.ndarray]:
    """``first`` + separator + ``second``, the pair truncated longest-first to leave room for it."""
    separator = tokenizer.encode(PAIR_SEPARATOR, add_special_tokens=False)
    room = max_length - len(separator)
    if room < 2:
        raise ValueError(f"max_length {max_length} leaves no room for a pair and its separator")
    encoded = tokenizer(first, second, truncation="longest_first", max_length=room, padding=False)
    rows = []
    for index, ids in enumerate(encoded["input_ids"]):
        which = np.asarray([-1 if s is None else s for s in encoded.sequence_ids(index)])
        cut = int(np.flatnonzero(which == 1)[0]) if (which == 1).any() else len(ids)
        rows.append(np.asarray([*ids[:cut], *separator, *ids[cut:]], dtype=np.int64))
    return rows
