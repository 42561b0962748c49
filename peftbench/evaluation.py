"""Evaluate a model on one split: predictions, logits, mean loss, metrics. Never trains."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from peftbench.batching import TokenizedSplit, collate, eval_batches
from peftbench.metrics import compute_metrics
from peftbench.precision import autocast
from peftbench.train import to_device


@dataclass
class EvalResult:
    predictions: np.ndarray
    logits: np.ndarray
    loss: float
    accuracy: float
    macro_f1: float
    seconds: float


def evaluate_model(
    model: nn.Module,
    split: TokenizedSplit,
    num_labels: int,
    batch_size: int,
    device: torch.device,
    pad_id: int,
    precision: str = "fp32",
) -> EvalResult:
    """The same evaluator for the baseline and every method: length-sorted batches, no grad."""
    model.eval()
    logits = np.zeros((len(split), num_labels), dtype=np.float32)
    start = time.perf_counter()
    chunks = []
    with torch.inference_mode(), autocast(device, precision):
        for indices in eval_batches(split, batch_size):
            batch = to_device(collate(split, indices, pad_id), device)
            batch.pop("labels")
            chunks.append((indices, model(**batch).logits.float()))
    for indices, chunk in chunks:  # one device-to-host copy per batch, after all batches are queued
        logits[indices] = chunk.cpu().numpy()
    seconds = time.perf_counter() - start
    predictions = logits.argmax(axis=1)
    loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(split.labels)))
    scores = compute_metrics(predictions, split.labels, num_labels)
    return EvalResult(predictions, logits, loss, scores["accuracy"], scores["macro_f1"], seconds)
