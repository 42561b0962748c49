"""Shared fixtures: the offline mirror, tiny datasets written on the fly, fake plugins registered
(and unregistered) in one place, and one finished sweep that tests may read but never change."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
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


def keyword_folder(
    folder: Path,
    train: int = 256,
    validation: int = 64,
    test: int = 64,
    labels: tuple[str, ...] = ("bad", "good"),
    scramble_test: bool = False,
) -> Path:
    """A parquet folder of the keyword task's splits (seeds 0, 1, 2); ``scramble_test`` shuffles
    the test labels, so a result that depends on them shows it."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train, 0), ("validation", validation, 1), ("test", test, 2)):
        frame = pd.DataFrame(keyword_rows(count, seed, labels))
        if split == "test" and scramble_test:
            frame["label"] = np.random.default_rng(5).permutation(frame["label"].to_numpy())
        frame.to_parquet(folder / f"{split}.parquet")
    return folder


@pytest.fixture
def keyword_dataset(tmp_path: Path) -> Path:
    """A local parquet folder with train/validation/test splits of the keyword task."""
    return keyword_folder(tmp_path / "keywords")


@contextlib.contextmanager
def registered(plugin: object, source: str = "peftbench-test 0.0", name: str | None = None) -> Iterator:
    """``plugin`` registered on the process-wide plugin manager, as an installed entry point would
    be, and unregistered (with its source) afterwards, whatever happens inside."""
    from peftbench.plugins import default_plugin_manager

    manager = default_plugin_manager()
    name = name or type(plugin).__name__
    manager.register_plugin(plugin, name=name, source=source)
    try:
        yield manager
    finally:
        manager.unregister(name=name)
        manager.sources.pop(name, None)


@pytest.fixture
def register_plugin():
    """Register fake plugins for one test: ``register_plugin(Plugin(), source=...)``; all of them
    are unregistered when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda plugin, source="peftbench-test 0.0", name=None: stack.enter_context(
            registered(plugin, source, name)
        )


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory) -> tuple[Path, Path]:
    """(data, results folder) of one finished tiny sweep; copy it before changing anything."""
    root = tmp_path_factory.mktemp("finished")
    data = keyword_folder(root / "data", train=96, validation=32, test=32)
    out = root / "runs"
    args = [
        "run",
        "--model",
        "tiny-gpt2",
        "--dataset",
        str(data),
        "--max-steps",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    return data, out


def record(method: str, seed: int, accuracy: float, status="complete", role="method", **extra):
    """A run record as a sweep writes it, without training (model "m", dataset "d")."""
    from peftbench.records import RunRecord

    return RunRecord(
        run_id=f"{method}-seed{seed}",
        status=status,
        model="m",
        dataset="d",
        method=method,
        seed=seed,
        role=role,
        metrics={} if status != "complete" else {"accuracy": accuracy, "macro_f1": accuracy, "loss": 0.5},
        costs={"trainable_params": 10, "total_params": 1000, "trainable_percent": 1.0, "train_seconds": 2.0},
        reload={"predictions_identical": True},
        **extra,
    )


def sharing_context(device: str, parameters: int = 124_000_000):
    """What deciding how many runs share a device reads from a sweep context (GPT-2 small's size)."""
    import torch

    from peftbench.settings import TrainConfig

    config = TrainConfig()
    return SimpleNamespace(device=torch.device(device), train_config=config, parameter_count=parameters)


def claimed(out: Path) -> list[str]:
    """The run ids whose claim is held (or was left by a killed sweep) in a results folder."""
    markers = [p.name for p in (out / "claims").glob("*.lock") if not p.name.startswith(".")]
    return sorted(name[: -len(".lock")] for name in markers)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every record file of a results folder, by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted((out / "records").glob("*.json"))}


ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, timeout: int = 600):
    """Run the installed CLI in a fresh interpreter, as a user would."""
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
