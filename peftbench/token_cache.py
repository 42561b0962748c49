"""Tokenise once: tokenised splits cached on disk, keyed by data, tokenizer and max length.

Every method and seed of a sweep, and every later sweep on the same data, reads the same cached
arrays instead of re-running the tokenizer. The key is a fingerprint of the split's texts (both
texts of a pair, in the order the columns were chosen) and labels, the tokenizer's full
serialised state, the maximum length and how the texts were encoded (one text, or a pair), so
any change misses.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from peftbench.atomic import write_atomically
from peftbench.batching import TokenizedSplit, tokenize_split
from peftbench.data import TextSplit

CACHE_ENV = "PEFTBENCH_CACHE"
#: The version of the pair encoding (``peftbench.tasks.inputs``): a change to it must miss.
PAIR_ENCODING = 1


def cache_dir() -> Path:
    """``$PEFTBENCH_CACHE``, else ``$XDG_CACHE_HOME/peftbench`` (``~/.cache/peftbench``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "peftbench"


def tokenizer_fingerprint(tokenizer) -> str:
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary and special tokens decide its output
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(repr(tokenizer.all_special_tokens).encode())
    return digest.hexdigest()[:16]


def split_fingerprint(split: TextSplit) -> str:
    digest = hashlib.sha256()
    split.fingerprint(digest)
    return digest.hexdigest()[:16]


def cache_path(directory: Path, split: TextSplit, tokenizer_key: str, max_length: int) -> Path:
    """Where a split's tokens are cached: single texts as they always were, pairs marked as such."""
    encoding = "" if split.second is None else f"-pair{PAIR_ENCODING}"
    return directory / "tokenized" / f"{split_fingerprint(split)}-{tokenizer_key}-{max_length}{encoding}.npz"


class CacheWarning(UserWarning):
    """A cached file could not be read; it is rebuilt, which only costs time."""


def cached_tokenize(
    tokenizer, split: TextSplit, max_length: int, tokenizer_key: str, directory: Path | None = None
) -> tuple[TokenizedSplit, bool]:
    """The tokenised split and whether it came from the cache.

    A cache entry that cannot be read (truncated, empty, not an ``.npz``, arrays that do not fit
    the split) is a miss: it is warned about by path, rebuilt and overwritten.
    """
    directory = cache_dir() if directory is None else directory
    path = cache_path(directory, split, tokenizer_key, max_length)
    corrupt = False
    if path.exists():
        try:
            return _load(path, split), True
        except Exception as error:  # any unreadable entry (BadZipFile, EOFError, ...) is a miss
            corrupt = True
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            warnings.warn(
                f"token cache entry {path} is unreadable ({reason}); tokenising again and rewriting it",
                CacheWarning,
                stacklevel=2,
            )
    tokenized = tokenize_split(tokenizer, split, max_length)
    try:
        _save(tokenized, path)
    except OSError:  # an unwritable cache only costs speed, but never keep a corrupt entry
        if corrupt:
            with contextlib.suppress(OSError):
                path.unlink()
    return tokenized, False


def _save(split: TokenizedSplit, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, flushed to disk, then renamed."""
    flat = np.concatenate(split.input_ids) if len(split) else np.zeros(0, dtype=np.int64)
    arrays = {"ids": flat.astype(np.int32), "lengths": split.lengths, "labels": split.labels}
    if split.token_type_ids is not None:
        arrays["types"] = np.concatenate(split.token_type_ids).astype(np.int8) if len(split) else flat
    write_atomically(path, lambda file: np.savez(file, **arrays))


def _load(path: Path, split: TextSplit | None = None) -> TokenizedSplit:
    """Read a cache entry; ``ValueError`` if its arrays do not describe ``split``."""
    with np.load(path, allow_pickle=False) as arrays:
        ids, lengths, labels = arrays["ids"].astype(np.int64), arrays["lengths"], arrays["labels"]
        types = arrays["types"].astype(np.int64) if "types" in arrays else None
    if types is not None and types.shape != ids.shape:
        raise ValueError("token type ids do not match the tokens")
    if ids.ndim != 1 or lengths.ndim != 1 or labels.ndim != 1 or len(lengths) != len(labels):
        raise ValueError("arrays of the wrong shape")
    if (lengths < 0).any() or int(lengths.sum()) != len(ids):
        raise ValueError("token lengths do not add up to the stored tokens")
    if split is not None and not np.array_equal(labels, split.labels, equal_nan=labels.dtype.kind == "f"):
        raise ValueError("labels differ from the split's")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = [slice(offsets[i], offsets[i + 1]) for i in range(len(lengths))]
    return TokenizedSplit([ids[r] for r in rows], labels, None if types is None else [types[r] for r in rows])
