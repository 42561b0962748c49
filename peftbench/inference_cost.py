"""What a trained model costs to serve: latency at batch 1 and throughput at batch 64, as loaded
and, where the method can merge its adapter into the base weights, merged.

Every run of a sweep is timed on the same inputs: a fixed sample of the test split (drawn with
its own seed, never the run's), padded by the evaluation collate path, under the run's precision
and ``torch.inference_mode``. Inputs are on the device before the clock starts, so the figures
are the model's forward pass alone; a median over repeats after warm-up calls keeps a stray
slow call (another process, a page fault) out of them. A model without parameters (the majority
class: a constant) has nothing to time, so its figures are absent, never zero.

What ``adapter_load_seconds`` (timed by the runner) covers: ``Method.load`` onto a base model
already in memory, on the CPU: reading the adapter and attaching it. Reading the base model and
moving the whole model to the device cost the same for every method and are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from peftbench.batching import TokenizedSplit, collate
from peftbench.precision import autocast
from peftbench.train import to_device

# Untimed calls come first (the allocator, kernel selection and caches settle), then the timed
# ones. A batch of 64 costs as much as dozens of single examples, so it is timed fewer times: the
# whole measurement stays at a few seconds per model for a MiniLM-sized model on a CPU.
LATENCY_WARMUP = 3
LATENCY_REPEATS = 20  # timed batch-1 calls, each on the next example of the sample
THROUGHPUT_WARMUP = 1
THROUGHPUT_REPEATS = 5  # timed calls on the whole batch
THROUGHPUT_BATCH = 64  # examples per call for the throughput figure (the sample's size)
SAMPLE_SEED = 0  # the sample depends on the split only: every run of a sweep sees the same inputs


def inference_sample(split: TokenizedSplit, size: int = THROUGHPUT_BATCH) -> np.ndarray:
    """``size`` indices of ``split``, the same for the same split; a split smaller than ``size``
    repeats its examples, so the batch is always ``size`` examples."""
    picked = np.random.default_rng(SAMPLE_SEED).permutation(len(split))[:size]
    return np.resize(picked, size)


def time_forward(
    model: nn.Module, split: TokenizedSplit, device: torch.device, pad_id: int, precision: str = "fp32"
) -> tuple[float, float]:
    """(latency at batch 1 in milliseconds, throughput at batch ``THROUGHPUT_BATCH`` in examples
    per second) of ``model`` on the fixed sample of ``split``."""
    sample = inference_sample(split)
    single = [_inputs(split, sample[[i % len(sample)]], pad_id, device) for i in range(LATENCY_REPEATS)]
    batch = _inputs(split, sample, pad_id, device)
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        latency = _median_seconds(model, single, LATENCY_WARMUP, device)
        batch_seconds = _median_seconds(model, [batch] * THROUGHPUT_REPEATS, THROUGHPUT_WARMUP, device)
    return 1000.0 * latency, len(sample) / batch_seconds


def inference_costs(
    model: nn.Module,
    merge: Callable[[nn.Module], nn.Module | None],
    split: TokenizedSplit,
    device: torch.device,
    pad_id: int,
    precision: str = "fp32",
) -> dict[str, float]:
    """The cost entries of a record: ``latency_ms`` and ``throughput`` of ``model`` as it is, then
    ``merged_latency_ms`` and ``merged_throughput`` of ``merge(model)`` unless that is ``None``.

    ``merge`` may change ``model`` in place (peft's ``merge_and_unload`` does), so ``model`` is
    not to be used afterwards; a model without parameters gives no entries.
    """
    if next(model.parameters(), None) is None:
        return {}
    latency, throughput = time_forward(model, split, device, pad_id, precision)
    costs = {"latency_ms": latency, "throughput": throughput}
    merged = merge(model)
    if merged is not None:
        latency, throughput = time_forward(merged.to(device), split, device, pad_id, precision)
        costs.update(merged_latency_ms=latency, merged_throughput=throughput)
    del merged
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return costs


def _inputs(split: TokenizedSplit, indices: np.ndarray, pad_id: int, device: torch.device) -> dict:
    batch = collate(split, indices, pad_id)
    batch.pop("labels")
    return to_device(batch, device)


def _median_seconds(model: nn.Module, inputs: list[dict], warmup: int, device: torch.device) -> float:
    for item in inputs[:warmup]:
        model(**item)
    _synchronise(device)
    seconds = []
    for item in inputs:
        start = time.perf_counter()
        model(**item)
        _synchronise(device)  # CUDA runs asynchronously: wait for the work before reading the clock
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
