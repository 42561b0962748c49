"""The Task interface: what is predicted and how it is scored, in one place.

A task kind says which input columns it reads (one text, or a pair), how labels are read and
checked, how many outputs the head has, the training loss, how outputs become predictions, the
metrics with the primary one and its direction, and what the constant reference row predicts (the
training prior's majority class; for regression, the training mean). The harness only ever talks to
this interface: training calls ``loss``, evaluation ``predict`` and ``scores``, tuning and the
leaderboard read ``primary_metric`` and ``higher_is_better``. Built-in kinds are registered through
the ``register_tasks`` hook exactly as a plugin's are.

Labels travel through the harness as one number per example (a class id, a value; a plugin's kind
may pack more into an integer, as the multi-label example in the tests packs a bitmask), so
splitting, caching, batching and the records need to know nothing about a kind.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from peftbench.errors import PeftbenchError
from peftbench.tasks.metrics import Metric, pick_metric

if TYPE_CHECKING:
    import torch

#: The label of a row added to fill a static-shape batch: cross-entropy's default ignore_index.
#: Integer labels are filled with it, float labels with NaN; every task's loss ignores such rows.
PAD_LABEL = -100

Encoder = Callable[[list[Any]], np.ndarray]


class Task(ABC):
    """A kind of task. Subclass it, then register an instance through ``register_tasks``."""

    #: What ``--task`` and the records call this kind: a lower-case identifier.
    name: ClassVar[str]
    #: One sentence on what is predicted from what.
    description: ClassVar[str]
    #: How many text columns it reads: ``(1,)`` one text, ``(2,)`` a pair, ``(1, 2)`` either.
    inputs: ClassVar[tuple[int, ...]] = (1,)
    #: Whether it predicts classes of a label set (the majority class is then its constant
    #: reference row) rather than a value (the training mean is).
    classes: ClassVar[bool] = True
    #: Every metric it can be scored by; ``--metric`` picks the primary among them.
    metrics: ClassVar[tuple[Metric, ...]]
    #: The primary metric's name when ``--metric`` is not given.
    default_metric: ClassVar[str]

    def __init__(self) -> None:
        self.primary_metric: str = self.default_metric

    # --- the primary metric ------------------------------------------------------------------

    @property
    def primary(self) -> Metric:
        """The metric that ranks, tunes and names this task's tables."""
        return {m.name: m for m in self.metrics}[self.primary_metric]

    @property
    def higher_is_better(self) -> bool:
        return self.primary.higher_is_better

    def scored_by(self, metric: str | None, label_names: tuple[str, ...] = ()) -> Task:
        """This kind with ``metric`` as its primary (``None``: its default); one line listing the
        metrics it has for these labels when it has no such metric."""
        if metric is None:
            return self
        pick_metric(self.metrics_for(label_names), metric, self.name)
        chosen = copy.copy(self)
        chosen.primary_metric = metric
        return chosen

    def metrics_for(self, label_names: tuple[str, ...]) -> dict[str, Metric]:
        """The metrics that apply to a dataset with these label names (F1 of the positive class,
        for one, needs exactly two classes)."""
        return {m.name: m for m in self.metrics}

    def scores(
        self, predictions: np.ndarray, references: np.ndarray, label_names: tuple[str, ...]
    ) -> dict[str, float]:
        """Every metric that applies, on one split; the primary first."""
        metrics = self.metrics_for(label_names)
        ordered = [self.primary_metric, *(name for name in metrics if name != self.primary_metric)]
        return {name: metrics[name].score(predictions, references) for name in ordered}

    # --- the data ----------------------------------------------------------------------------

    @abstractmethod
    def detects(self, feature: Any, values: list[Any], inputs: int) -> bool:
        """Whether a dataset whose label column has this ``datasets`` feature and these training
        values, read with ``inputs`` text columns, is of this kind (without ``--task``)."""

    @abstractmethod
    def label_encoding(self, feature: Any, values: list[Any], column: str) -> tuple[tuple[str, ...], Encoder]:
        """The names of the head's outputs (class names; the target's name for a value) and a
        function from a split's raw label values to one number per example, from the training
        split's feature and values."""

    def unlabelled(self, labels: np.ndarray) -> bool:
        """Whether a split has no labels at all (GLUE keeps its test labels private): it is then
        left out and, like a missing split, replaced."""
        return False

    def check_split(self, split: str, labels: np.ndarray, label_names: tuple[str, ...], dataset: str) -> None:
        """Refuse labels this kind cannot use, in one line naming the split (and the row)."""
        return None

    def check_train(self, labels: np.ndarray, label_names: tuple[str, ...], dataset: str) -> None:
        """Refuse a training split nothing can be learnt from (a single class, a constant)."""
        return None

    # --- the model ---------------------------------------------------------------------------

    def outputs(self, label_names: tuple[str, ...]) -> int:
        """How many outputs the head has."""
        return len(label_names)

    @abstractmethod
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch (fp32), ignoring filler rows (``PAD_LABEL`` or NaN)."""

    @abstractmethod
    def predict(self, logits: np.ndarray) -> np.ndarray:
        """One prediction per example from the head's outputs, as the labels are encoded."""

    def label_counts(self, train_labels: np.ndarray, label_names: tuple[str, ...]) -> tuple[int, ...]:
        """How many training examples have each label (a method's ``task.train_label_counts``);
        empty where labels are values, not classes."""
        return ()

    @abstractmethod
    def constant_outputs(self, train_labels: np.ndarray, label_names: tuple[str, ...]) -> tuple[float, ...]:
        """What the constant reference row outputs for every input: the best a model that ignores
        its input can do on the training labels (the log prior; the mean)."""

    def explain(self) -> str:
        """One line for ``peftbench tasks``: inputs and metrics."""
        texts = " or ".join({1: "one text", 2: "a text pair"}.get(n, f"{n} texts") for n in self.inputs)
        metrics = ", ".join(
            m.name + (" (default)" if m.name == self.default_metric else "") for m in self.metrics
        )
        return f"reads {texts}; metrics: {metrics}"


def refuse(dataset: str, message: str) -> PeftbenchError:
    """A refusal about a dataset's labels, in the words every task uses."""
    return PeftbenchError(f"dataset '{dataset}': {message}")
