"""Options for the engine-vs-Trainer benchmarks; the comparison table prints at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from offline import use_local_mirror  # noqa: E402

use_local_mirror()

from engines import RESULTS, BenchData, BenchSetup, comparison_table  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("peftbench benchmarks")
    group.addoption("--bench-model", default="minilm")
    group.addoption("--bench-dataset", default="rotten_tomatoes")
    group.addoption("--bench-method", default="lora")
    group.addoption("--bench-epochs", type=float, default=1.0)
    group.addoption("--bench-train-samples", type=int, default=None, help="subsample train (smoke runs)")
    group.addoption("--bench-precision", default="auto", help="peftbench's precision: auto, fp32 or bf16")
    group.addoption("--bench-compile", action="store_true", help="peftbench compiles its model")


@pytest.fixture(scope="session")
def bench_data(request) -> BenchData:
    option = request.config.getoption
    setup = BenchSetup(
        model=option("--bench-model"),
        dataset=option("--bench-dataset"),
        method=option("--bench-method"),
        epochs=option("--bench-epochs"),
        train_samples=option("--bench-train-samples"),
        precision=option("--bench-precision"),
        compile=option("--bench-compile"),
    )
    return BenchData(setup)


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        data = RESULTS.pop("_data")
        terminalreporter.write_line("")
        terminalreporter.write_line(comparison_table(data.setup, RESULTS, str(data.device)))
