"""Regression: one text or a text pair -> a number (STS-B's similarity score).

A label column of floats with a fractional part is a regression target (``--task regression``
makes integer scores one too). The head has one output, trained with mean squared error; the
prediction is that output. Labels that are not finite numbers are refused, naming the row; a
split whose labels are all missing is treated as unlabelled. The constant reference row predicts
the training mean.

Scored by Spearman's rank correlation (the default), Pearson's correlation and the mean squared
error. Spearman is the primary: it depends only on the order of the predictions, so a head whose
scale or offset is still off after a short training (or a few outlying pairs) does not decide a
comparison between methods, and it is the score the STS literature recommends (Reimers et al.,
2016) and sentence-transformers reports. ``--metric pearson`` gives GLUE's other STS-B number.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from peftbench.hookspecs import hookimpl
from peftbench.tasks.base import Encoder, Task, refuse
from peftbench.tasks.classification import whole_numbers
from peftbench.tasks.metrics import MSE, PEARSON, SPEARMAN


def _number(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


class Regression(Task):
    name = "regression"
    description = "One text or a text pair -> a number (a similarity score, a rating)."
    inputs = (1, 2)
    classes = False
    metrics = (SPEARMAN, PEARSON, MSE)
    default_metric = "spearman"

    def detects(self, feature: Any, values: list[Any], inputs: int) -> bool:
        present = [v for v in values if v is not None]
        return (
            inputs in self.inputs
            and bool(present)
            and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present)
            and not whole_numbers(present)
        )

    def label_encoding(self, feature: Any, values: list[Any], column: str) -> tuple[tuple[str, ...], Encoder]:
        return (column,), lambda split: np.asarray([_number(v) for v in split], dtype=np.float64)

    def unlabelled(self, labels: np.ndarray) -> bool:
        return len(labels) > 0 and bool(np.isnan(labels).all())

    def check_split(self, split: str, labels: np.ndarray, label_names: tuple[str, ...], dataset: str) -> None:
        bad = np.flatnonzero(~np.isfinite(labels))
        if len(bad):
            raise refuse(
                dataset,
                f"row {int(bad[0])} of the {split} split has label {labels[bad[0]]} (not a finite number; "
                f"{len(bad)} such rows): fix or drop them",
            )

    def check_train(self, labels: np.ndarray, label_names: tuple[str, ...], dataset: str) -> None:
        if len(np.unique(labels)) < 2:
            raise refuse(
                dataset,
                "every label of the train split is the same value; a regression needs them to vary: "
                "check the label column (--label-column) or the data",
            )

    def outputs(self, label_names: tuple[str, ...]) -> int:
        return 1

    def loss(self, logits, labels):
        import torch

        labels = labels.to(torch.float32)
        kept = ~torch.isnan(labels)
        error = torch.where(kept, logits.float()[:, 0] - torch.nan_to_num(labels), 0.0)
        return (error * error).sum() / kept.sum().clamp(min=1)  # no host sync: no boolean indexing

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return logits[:, 0].astype(np.float64)

    def constant_outputs(self, train_labels: np.ndarray, label_names: tuple[str, ...]) -> tuple[float, ...]:
        return (float(np.mean(train_labels)),)


@hookimpl
def register_tasks(register):
    register(Regression())
