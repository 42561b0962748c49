"""Text pairs: the tokenizer's pair encoding where it has one (BERT), GPT-2's documented separator
where it has none, the longer text truncated first, and a token cache that tells pairs apart."""

from __future__ import annotations

import numpy as np
import pytest

from peftbench.batching import collate, tokenize_split
from peftbench.data import TextSplit
from peftbench.models import load_tokenizer, resolve_model
from peftbench.tasks.inputs import PAIR_SEPARATOR, encode, has_pair_encoding
from peftbench.token_cache import cache_path, cached_tokenize, tokenizer_fingerprint

LONG = "one two three four five six seven eight nine ten"
SHORT = "red blue"


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer(resolve_model("tiny-gpt2"))


@pytest.fixture(scope="module")
def bert():
    return load_tokenizer(resolve_model("minilm"))


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_gpt2_has_no_pair_encoding_so_the_texts_are_joined_by_a_newline(gpt2):
    assert not has_pair_encoding(gpt2) and PAIR_SEPARATOR == "\n"
    encoded = encode(gpt2, [SHORT], [LONG], max_length=64)
    assert encoded.input_ids[0].tolist() == ids(gpt2, SHORT) + ids(gpt2, "\n") + ids(gpt2, LONG)
    assert encoded.token_type_ids is None  # GPT-2 takes none


def test_gpt2_truncates_the_longer_text_first_and_keeps_the_separator(gpt2):
    long, short = ids(gpt2, LONG), ids(gpt2, SHORT)
    assert len(long) == 10 and len(short) == 2
    (row,) = encode(gpt2, [LONG], [SHORT], max_length=8).input_ids
    assert row.tolist() == long[:5] + ids(gpt2, "\n") + short  # 8 = 5 of the long + separator + 2
    (row,) = encode(gpt2, [SHORT], [LONG], max_length=8).input_ids
    assert row.tolist() == short + ids(gpt2, "\n") + long[:5]


def test_bert_uses_its_pair_encoding_with_token_types_and_truncates_the_longer_text(bert):
    assert has_pair_encoding(bert)
    cls, sep = bert.cls_token_id, bert.sep_token_id
    long, short = ids(bert, LONG), ids(bert, SHORT)
    encoded = encode(bert, [SHORT], [LONG], max_length=64)
    assert encoded.input_ids[0].tolist() == [cls, *short, sep, *long, sep]
    assert encoded.token_type_ids[0].tolist() == [0] * (len(short) + 2) + [1] * (len(long) + 1)
    (row,) = encode(bert, [LONG], [SHORT], max_length=9).input_ids  # 3 special tokens: 6 of text
    assert row.tolist() == [cls, *long[:4], sep, *short, sep]


def test_token_types_reach_the_batch_and_single_texts_have_none(bert):
    split = TextSplit([SHORT, LONG], np.array([0, 1]), second=[LONG, SHORT])
    batch = collate(tokenize_split(bert, split, 32), np.array([0, 1]), bert.pad_token_id)
    types, mask = batch["token_type_ids"], batch["attention_mask"]
    assert types.shape == batch["input_ids"].shape and types[0, -1] == 1 and types[1, 1] == 0
    assert (types[mask == 0] == 0).all()  # padding is type 0
    single = collate(tokenize_split(bert, TextSplit([SHORT], np.array([0])), 32), np.array([0]), 0)
    assert "token_type_ids" not in single


def test_the_token_cache_keeps_pairs_apart_and_their_token_types(bert, tmp_path):
    key = tokenizer_fingerprint(bert)
    pair = TextSplit([SHORT, LONG], np.array([0, 1]), second=[LONG, SHORT])
    swapped = TextSplit([LONG, SHORT], np.array([0, 1]), second=[SHORT, LONG])
    single = TextSplit([SHORT, LONG], np.array([0, 1]))
    paths = {cache_path(tmp_path, split, key, 32) for split in (pair, swapped, single)}
    assert len(paths) == 3 and cache_path(tmp_path, pair, key, 32).name.endswith("-pair1.npz")
    first, hit = cached_tokenize(bert, pair, 32, key, tmp_path)
    again, hit_again = cached_tokenize(bert, pair, 32, key, tmp_path)
    assert (hit, hit_again) == (False, True)
    assert [a.tolist() for a in again.token_type_ids] == [a.tolist() for a in first.token_type_ids]
    assert [a.tolist() for a in again.input_ids] == [a.tolist() for a in first.input_ids]
