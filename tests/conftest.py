"""Shared fixtures: the offline mirror, tiny datasets written on the fly, a fake plugin helper."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PEFTBENCH_CACHE" not in os.environ:  # keep the tests' tokenised cache out of the user's
    import tempfile

    os.environ["PEFTBENCH_CACHE"] = tempfile.mkdtemp(prefix="peftbench-test-cache-")
_DEFAULT_MIRROR = Path(__file__).resolve().parents[1].parent / "shared"
if "PEFTBENCH_MIRROR" not in os.environ and _DEFAULT_MIRROR.is_dir():
    os.environ["PEFTBENCH_MIRROR"] = str(_DEFAULT_MIRROR)

WORDS_TEXT = "the a movie film plot actor scene story music light long short old new red blue"
WORDS = WORDS_TEXT.split()


def mirror() -> Path:
    value = os.environ.get("PEFTBENCH_MIRROR")
    if not value or not (Path(value) / "datasets").is_dir():
        pytest.fail("PEFTBENCH_MIRROR must point at the shared offline mirror (../shared)")
    return Path(value)


def keyword_rows(count: int, seed: int, labels=("bad", "good")) -> list[dict]:
    """Random word strings whose label is the last word: easy to learn even for a random GPT-2."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.randrange(len(labels))
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 12))]
        rows.append({"text": " ".join(words + [labels[label]]), "label": label})
    return rows


@pytest.fixture
def mirror_path() -> Path:
    return mirror()


@pytest.fixture
def keyword_dataset(tmp_path: Path) -> Path:
    """A local parquet folder with train/validation/test splits of the keyword task."""
    folder = tmp_path / "keywords"
    folder.mkdir()
    for split, count, seed in (("train", 256, 0), ("validation", 64, 1), ("test", 64, 2)):
        pd.DataFrame(keyword_rows(count, seed)).to_parquet(folder / f"{split}.parquet")
    return folder


ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, timeout: int = 600):
    """Run the installed CLI in a fresh interpreter, as a user would."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "peftbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def write_keyword_csv(path: Path, rows: int = 60) -> Path:
    pd.DataFrame(keyword_rows(rows, 0)).to_csv(path, index=False)
    return path
