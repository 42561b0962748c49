"""Classification metrics as an ``evaluate`` module that ships inside peftbench.

``evaluate.load("accuracy")`` fetches a script from the Hub and fails offline; subclassing
``evaluate.Metric`` keeps evaluate's API (``add_batch``/``compute``) with nothing to download.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np


class ClassificationMetrics(evaluate.Metric):
    """Accuracy and macro-F1 (see ``classification_scores`` for which classes macro-F1 averages)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Accuracy and macro-averaged F1 for single-label classification.",
            citation="",
            inputs_description="predictions and references: integer class ids; num_labels: int",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels: int | None = None) -> dict[str, float]:
        return classification_scores(np.asarray(predictions), np.asarray(references), num_labels)


def classification_scores(
    predictions: np.ndarray, references: np.ndarray, num_labels: int | None = None
) -> dict[str, float]:
    """Accuracy and macro-F1: the unweighted mean of per-class F1 over the classes that occur in
    the labels or the predictions (as scikit-learn's ``f1_score(average="macro")`` does). A class
    in the labels that is never predicted scores F1 = 0; a class absent from both says nothing
    about this split and is left out, so a small test split missing a rare class is not scored
    down for it."""
    if num_labels is None:
        num_labels = int(max(predictions.max(initial=0), references.max(initial=0))) + 1
    accuracy = float((predictions == references).mean()) if len(references) else float("nan")
    f1s = []
    for label in range(num_labels):
        true_pos = np.sum((predictions == label) & (references == label))
        predicted = np.sum(predictions == label)
        actual = np.sum(references == label)
        if predicted + actual == 0:
            continue  # a class absent from both sides says nothing about this split
        f1s.append(2 * true_pos / (predicted + actual))
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)) if f1s else float("nan")}


def compute_metrics(predictions: np.ndarray, references: np.ndarray, num_labels: int) -> dict[str, float]:
    """Run the shipped evaluate module (no Hub access) on one split's predictions."""
    metric = ClassificationMetrics()
    return metric.compute(predictions=predictions, references=references, num_labels=num_labels)
