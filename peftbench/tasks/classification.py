"""Classification of one text or of a text pair into one of a fixed set of classes.

Labels may be a ``ClassLabel``, integers or strings (sorted into classes), as long as the training
split has at least two classes. The head has one output per class, trained with cross-entropy;
the prediction is the class with the largest output. Scored by accuracy (the default), macro-F1,
F1 of the positive class (two classes) and Matthews correlation; the constant reference row is the
majority class (its logits are the training prior).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from peftbench.errors import PeftbenchError
from peftbench.hookspecs import hookimpl
from peftbench.tasks.base import PAD_LABEL, Encoder, Task, refuse
from peftbench.tasks.metrics import ACCURACY, F1, MACRO_F1, MCC, Metric


def whole_numbers(values: list[Any]) -> bool:
    """Integers, or floats without a fractional part (a CSV's ``1.0``); ``None`` is ignored."""
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, (int, np.integer))
        and not isinstance(v, bool)
        or isinstance(v, (float, np.floating))
        and math.isfinite(v)
        and float(v).is_integer()
        for v in present
    )


class Classification(Task):
    name = "classification"
    description = "One text -> one of a fixed set of classes."
    inputs = (1,)
    metrics = (ACCURACY, MACRO_F1, F1, MCC)
    default_metric = "accuracy"

    def detects(self, feature: Any, values: list[Any], inputs: int) -> bool:
        if inputs not in self.inputs:
            return False
        import datasets

        if isinstance(feature, datasets.ClassLabel):
            return True
        return bool(values) and (all(isinstance(v, str) for v in values) or whole_numbers(values))

    def label_encoding(self, feature: Any, values: list[Any], column: str) -> tuple[tuple[str, ...], Encoder]:
        import datasets

        if isinstance(feature, datasets.ClassLabel):
            return tuple(feature.names), lambda split: np.asarray(split, dtype=np.int64)
        if values and all(isinstance(v, str) for v in values):
            names = tuple(sorted(set(values)))
            index = {name: i for i, name in enumerate(names)}
            # Unseen strings map to -2 so the range check reports them instead of guessing.
            return names, lambda split: np.asarray([index.get(v, -2) for v in split], dtype=np.int64)
        try:  # the classes are those of train; other splits are checked against them
            largest = int(max(values, default=0))
        except (TypeError, ValueError) as error:
            raise PeftbenchError(f"label column '{column}' must hold integers or strings: {error}") from error
        return tuple(str(i) for i in range(largest + 1)), lambda split: np.asarray(split, dtype=np.int64)

    def unlabelled(self, labels: np.ndarray) -> bool:
        return len(labels) > 0 and bool((labels < 0).all())  # GLUE's hidden test labels are -1

    def check_split(self, split: str, labels: np.ndarray, label_names: tuple[str, ...], dataset: str) -> None:
        bad = labels[(labels < 0) | (labels >= len(label_names))]
        if len(bad):
            raise refuse(
                dataset,
                f"the {split} split has {len(bad)} labels outside 0..{len(label_names) - 1} "
                f"(first: {int(bad[0])}); fix the labels or the label column",
            )

    def check_train(self, labels: np.ndarray, label_names: tuple[str, ...], dataset: str) -> None:
        """A classifier needs two classes to tell apart; with one, every method "wins" by default."""
        present = np.unique(labels)
        if len(present) < 2:
            only = label_names[int(present[0])] if len(present) else "none"
            raise refuse(
                dataset,
                f"the train split has only one class ({only!r}); a classifier needs at least two: "
                "check the label column (--label-column) or the data",
            )

    def metrics_for(self, label_names: tuple[str, ...]) -> dict[str, Metric]:
        metrics = super().metrics_for(label_names)
        if len(label_names) != 2:
            del metrics["f1"]  # the positive class exists with two classes only
        return metrics

    def loss(self, logits, labels):
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), labels.long(), ignore_index=PAD_LABEL)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return logits.argmax(axis=1)

    def label_counts(self, train_labels: np.ndarray, label_names: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(int(c) for c in np.bincount(train_labels, minlength=len(label_names)))

    def constant_outputs(self, train_labels: np.ndarray, label_names: tuple[str, ...]) -> tuple[float, ...]:
        """The log of the training prior, add-one smoothed so that the loss stays finite for a
        class absent from training: its largest entry is the majority class."""
        counts = self.label_counts(train_labels, label_names)
        total = sum(counts)
        return tuple(math.log((c + 1) / (total + len(label_names))) for c in counts)


class PairClassification(Classification):
    name = "pair_classification"
    description = "A pair of texts (premise and hypothesis, two questions) -> one of a fixed set of classes."
    inputs = (2,)


@hookimpl
def register_tasks(register):
    register(Classification())
    register(PairClassification())
