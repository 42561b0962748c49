"""The token cache: tokenise once, a corrupt entry is a warned miss that is rebuilt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import peftbench
from conftest import write_keyword_csv
from peftbench import token_cache
from peftbench.batching import tokenize_split
from peftbench.data import DatasetSpec, load_splits
from peftbench.models import load_tokenizer, resolve_model
from peftbench.runs import context


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


@pytest.fixture
def tokenizer_and_split(tmp_path):
    tokenizer = load_tokenizer(resolve_model("tiny-gpt2"))
    split = load_splits(DatasetSpec(str(write_keyword_csv(tmp_path / "d.csv")))).train
    return tokenizer, split, token_cache.tokenizer_fingerprint(tokenizer)


def same(a, b) -> bool:
    return [x.tolist() for x in a.input_ids] == [y.tolist() for y in b.input_ids] and np.array_equal(
        a.labels, b.labels
    )


def _wrong_arrays(path: Path) -> None:
    with path.open("wb") as file:
        np.savez(file, ids=np.arange(5, dtype=np.int32), lengths=np.array([9]), labels=np.array([0]))


CORRUPTIONS = {
    "empty": lambda path: path.write_bytes(b""),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    "garbage": lambda path: path.write_bytes(b"not a zip file at all" * 10),
    "zip without arrays": lambda path: path.write_bytes(b"PK\x05\x06" + b"\x00" * 18),
    "wrong arrays": _wrong_arrays,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_cache_entry_is_a_miss_that_is_warned_about_and_rewritten(
    tmp_path, tokenizer_and_split, corruption
):
    tokenizer, split, key = tokenizer_and_split
    fresh = tokenize_split(tokenizer, split, 32)
    token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)
    (path,) = (tmp_path / "tokenized").glob("*.npz")
    CORRUPTIONS[corruption](path)
    with pytest.warns(token_cache.CacheWarning) as caught:
        rebuilt, hit = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)
    message = str(caught[0].message)
    assert message.startswith(f"token cache entry {path} is unreadable (") and "\n" not in message
    assert message.endswith("; tokenising again and rewriting it")
    assert not hit and same(rebuilt, fresh)
    again, hit = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)  # rewritten: a hit now
    assert hit and same(again, fresh)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind


def test_sweep_recovers_from_corrupt_cache_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    data = write_keyword_csv(tmp_path / "d.csv", rows=60)
    common = dict(model="tiny-gpt2", dataset=str(data), methods=["lora"], out=tmp_path / "runs", max_steps=1)
    peftbench.run(progress=False, **common)
    entries = sorted((tmp_path / "cache" / "tokenized").glob("*.npz"))
    assert len(entries) == 3
    entries[0].write_bytes(b"")
    entries[1].write_bytes(entries[1].read_bytes()[:100])
    seen = {}
    real = context.cached_tokenize
    monkeypatch.setattr(
        context,
        "cached_tokenize",
        lambda tok, split, *a: seen.setdefault(len(seen), (split, real(tok, split, *a)))[1],
    )
    with pytest.warns(token_cache.CacheWarning, match="is unreadable"):
        board = peftbench.run(progress=False, **common)
    assert set(board.runs_frame()["status"]) == {"complete"}
    tokenizer = load_tokenizer(resolve_model("tiny-gpt2"))
    for split, (tokenized, _) in seen.values():
        assert same(tokenized, tokenize_split(tokenizer, split, 128))
    for entry in entries:  # rewritten: readable again, and equal to a fresh tokenisation
        assert any(
            same(token_cache._load(entry), tokenize_split(tokenizer, s, 128)) for s, _ in seen.values()
        )
    assert sorted(p.name for p in entries[0].parent.iterdir()) == [p.name for p in entries]


def test_failed_cache_write_leaves_no_temporary_file(tmp_path, tokenizer_and_split, monkeypatch):
    tokenizer, split, key = tokenizer_and_split

    def full_disk(file, **arrays):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(token_cache.np, "savez", full_disk)
    tokenized, hit = token_cache.cached_tokenize(tokenizer, split, 32, key, tmp_path)  # still tokenised
    assert not hit and same(tokenized, tokenize_split(tokenizer, split, 32))
    assert list((tmp_path / "tokenized").iterdir()) == []
    with pytest.raises(OSError, match="No space left"):
        token_cache._save(tokenized, tmp_path / "tokenized" / "x.npz")
    assert list((tmp_path / "tokenized").iterdir()) == []
