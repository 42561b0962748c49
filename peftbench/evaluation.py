"""Evaluate a model on one split: predictions, raw outputs, mean loss, metrics. Never trains.

The task decides what the outputs mean (``Task.predict``), the loss and the metrics; the primary
one is ``EvalResult.score``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from peftbench.batching import TokenizedSplit, collate, eval_batches
from peftbench.precision import autocast
from peftbench.tasks.base import Task
from peftbench.train import to_device


@dataclass
class EvalResult:
    predictions: np.ndarray  # one per example, as the labels are encoded (a class id, a value)
    logits: np.ndarray  # the head's outputs: (examples x outputs)
    loss: float
    scores: dict[str, float]  # every metric of the task, the primary first
    seconds: float
    metric: str  # the primary metric's name

    @property
    def score(self) -> float:
        """The task's primary metric on this split."""
        return self.scores[self.metric]


def evaluate_model(
    model: nn.Module,
    split: TokenizedSplit,
    task: Task,
    label_names: tuple[str, ...],
    batch_size: int,
    device: torch.device,
    pad_id: int,
    precision: str = "fp32",
) -> EvalResult:
    """The same evaluator for the baseline and every method: length-sorted batches, no grad."""
    model.eval()
    logits = np.zeros((len(split), task.outputs(label_names)), dtype=np.float32)
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
    predictions = task.predict(logits)
    loss = float(task.loss(torch.from_numpy(logits), torch.from_numpy(split.labels)))
    scores = task.scores(predictions, split.labels, label_names)
    return EvalResult(predictions, logits, loss, scores, seconds, task.primary_metric)
