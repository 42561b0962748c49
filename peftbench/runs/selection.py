"""What "better" means when peftbench chooses on validation: which checkpoint of a run is kept,
when patience runs out, and which hyper-parameters a search picks.

The one place that says how a choice is scored: the task's primary metric on validation, in its
direction (``Criterion``: accuracy, higher is better, unless the task or ``--metric`` says
otherwise); a tie goes to the lower validation loss, and a missing loss never wins a tie. A
candidate's score over several seeds is the mean of theirs. Everything that compares runs or
checkpoints goes through ``Score`` and ``best``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from peftbench.tasks.metrics import Metric, display_metric

#: The record metric that breaks ties between equal scores.
LOSS_METRIC = "validation_loss"

T = TypeVar("T")


@dataclass(frozen=True)
class Criterion:
    """The metric a choice on validation reads, and its direction."""

    metric: str = "accuracy"
    higher_is_better: bool = True

    @property
    def key(self) -> str:
        """The record metric it reads: ``validation_accuracy``, ``validation_mse``, ..."""
        return f"validation_{self.metric}"

    @property
    def shown(self) -> Metric:
        """The metric as pages write it (its title, percent or not)."""
        return display_metric(self.metric, self.higher_is_better)

    @property
    def name(self) -> str:
        """How progress lines and pages call it: ``validation accuracy``, ``validation MSE``."""
        return f"validation {self.shown.title}"

    def score(self, metrics: dict[str, float | None]) -> Score:
        """The score of a run (or checkpoint) from its ``metrics``."""
        return Score(metrics.get(self.key), metrics.get(LOSS_METRIC), self.higher_is_better)


@dataclass(frozen=True)
class Score:
    """A validation score and loss; ``None`` or NaN where not measured."""

    value: float | None
    loss: float | None = None
    higher_is_better: bool = True

    @classmethod
    def mean(cls, scores: Sequence[Score]) -> Score:
        """The mean over seeds: the score is missing if any seed's is, the loss likewise."""
        higher = scores[0].higher_is_better if scores else True
        return cls(_mean([s.value for s in scores]), _mean([s.loss for s in scores]), higher)

    @property
    def usable(self) -> bool:
        return _known(self.value)

    def key(self) -> tuple[float, bool, float]:
        """Sorts better scores higher: the value in its direction, then having a loss, then a lower loss."""
        value = (self.value if self.higher_is_better else -self.value) if _known(self.value) else -math.inf
        return (value, _known(self.loss), -self.loss if _known(self.loss) else 0.0)

    def beats(self, other: Score | None) -> bool:
        """Strictly better than ``other`` (anything usable beats nothing)."""
        return self.usable and (other is None or self.key() > other.key())


def best(items: Iterable[T], score: Callable[[T], Score]) -> T | None:
    """The item with the best usable score; on a complete tie, the earliest. ``None`` if none is usable."""
    chosen, top = None, None
    for item in items:
        mine = score(item)
        if mine.beats(top):
            chosen, top = item, mine
    return chosen


def ranked(items: Sequence[T], score: Callable[[T], Score]) -> list[T]:
    """The items with a usable score, best first; complete ties keep their order."""
    usable = [item for item in items if score(item).usable]
    return sorted(usable, key=lambda item: score(item).key(), reverse=True)


def _known(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _mean(values: Sequence[float | None]) -> float | None:
    if not values or not all(_known(v) for v in values):
        return None
    return sum(values) / len(values)
