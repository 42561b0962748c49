"""Multi-label classification for peftbench: one text -> any subset of a set of tags.

A new kind of task, written as a third-party package would write it: this module and a
``register_tasks`` hook (and, in a package, one entry point) are all it takes. Each example's tags
travel through peftbench as one integer, a bitmask (bit k: tag k), so splitting, caching,
batching and records need nothing new.
"""

from __future__ import annotations

import math

import numpy as np

from peftbench import Metric, PeftbenchError, Task, hookimpl


def bits(masks: np.ndarray, tags: int | None = None) -> np.ndarray:
    """(examples x tags) 0/1 from bitmasks."""
    masks = np.asarray(masks, dtype=np.int64)
    tags = tags or max(1, int(masks.max(initial=0)).bit_length())
    return (masks[:, None] >> np.arange(tags)) & 1


def _subset_accuracy(predictions, references) -> float:
    from sklearn.metrics import accuracy_score

    predicted, true = _tags(predictions, references)
    return accuracy_score(true, predicted)  # every tag right


def _micro_f1(predictions, references) -> float:
    from sklearn.metrics import f1_score

    predicted, true = _tags(predictions, references)
    return f1_score(true, predicted, average="micro", zero_division=0)


def _tags(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    tags = max(1, int(max(predictions.max(initial=0), references.max(initial=0))).bit_length())
    return bits(predictions, tags), bits(references, tags)


def _exact(predictions, references) -> np.ndarray:
    return predictions == references  # per example: every tag right (the bootstrap sums these)


def _micro_f1_resampled(predictions, references, counts) -> np.ndarray:
    """Micro-F1 of every bootstrap resample at once, from each example's true and false positives
    and false negatives (summed with the draw counts)."""
    predicted, true = _tags(predictions, references)
    hits = (
        (predicted & true).sum(axis=1),
        (predicted & ~true & 1).sum(axis=1),
        (~predicted & true & 1).sum(axis=1),
    )
    tp, fp, fn = (counts @ np.stack(hits, axis=1)).T
    return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


SUBSET_ACCURACY = Metric(
    "subset_accuracy", "subset accuracy", _subset_accuracy, percent=True, per_example=_exact
)
MICRO_F1 = Metric(
    "micro_f1", "micro-F1", _micro_f1, percent=True, resampled=_micro_f1_resampled,
    description="F1 over every (example, tag) pair",
)  # fmt: skip


class MultiLabel(Task):
    name = "multi_label"
    description = "One text -> any subset of a set of tags."
    metrics = (MICRO_F1, SUBSET_ACCURACY)
    default_metric = "micro_f1"

    def detects(self, feature, values, inputs):
        return inputs == 1 and bool(values) and all(isinstance(v, list) for v in values)

    def label_encoding(self, feature, values, column):
        names = tuple(sorted({tag for tags in values for tag in tags}))
        index = {name: i for i, name in enumerate(names)}
        return names, lambda split: np.asarray(
            [sum(1 << index[t] if t in index else -(1 << 62) for t in tags) for tags in split], dtype=np.int64
        )  # an unseen tag makes the mask negative: check_split refuses it

    def check_split(self, split, labels, label_names, dataset):
        if (labels < 0).any():
            raise PeftbenchError(f"dataset '{dataset}': the {split} split has tags the train split lacks")

    def loss(self, logits, labels):
        import torch
        import torch.nn.functional as F

        kept = labels >= 0  # filler rows of a static-shape batch are PAD_LABEL (-100)
        targets = ((labels.clamp(min=0)[:, None] >> torch.arange(logits.shape[1])) & 1).float()
        per_row = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").mean(dim=1)
        return (per_row * kept).sum() / kept.sum().clamp(min=1)

    def predict(self, logits):
        return (logits > 0).astype(np.int64) @ (1 << np.arange(logits.shape[1]))  # the tags over 0.5

    def label_counts(self, train_labels, label_names):
        return tuple(int(c) for c in bits(train_labels, len(label_names)).sum(axis=0))

    def constant_outputs(self, train_labels, label_names):
        counts, total = self.label_counts(train_labels, label_names), len(train_labels)
        return tuple(math.log((c + 1) / (total - c + 1)) for c in counts)  # each tag's log-odds


@hookimpl
def register_tasks(register):
    register(MultiLabel())
