"""Training throughput of peftbench's engine against HF Trainer, same model, data and settings.

Full comparison (minutes):   python -m pytest benchmarks
Smoke run, as CI does it:    python -m pytest benchmarks --benchmark-disable --bench-model tiny-gpt2
                             --bench-train-samples 256
"""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
from engines import ENGINES

from conftest import RESULTS


@pytest.mark.parametrize("engine", list(ENGINES))
def test_training_throughput(benchmark, bench_data, engine):
    result = benchmark.pedantic(ENGINES[engine], args=(bench_data,), rounds=1, iterations=1)
    benchmark.extra_info.update(asdict(result))
    RESULTS["_data"] = bench_data
    RESULTS[engine] = result
    assert result.samples_per_second > 0 and math.isfinite(result.tokens_per_second)
    assert 0.0 <= result.accuracy <= 1.0
