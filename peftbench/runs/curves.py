"""A run's learning curves: training loss at every logged step, and the validation score (the
task's primary metric) and loss at a few evenly spaced steps, the last being the run's own
validation evaluation (not repeated).

The evaluations during training go through the same evaluator as the final one and do not change
the training (see ``Checkpoints``), so a run gives the same result whatever ``curve_points`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from peftbench.evaluation import EvalResult
from peftbench.runs.context import SweepContext
from peftbench.train import Checkpoints, TrainStats, checkpoint_steps

#: The series a record's ``curves`` may hold, each a list of ``[step, value]`` pairs:
#: ``validation_<metric>`` is named by the task's primary metric (``validation_accuracy``, ...).
CURVES = ("train_loss", "validation_<metric>", "validation_loss")


@dataclass
class ValidationCurve:
    """Collects the validation points of one run while it trains."""

    points: int  # how many were asked for, the final evaluation included (0: none)
    seen: list[tuple[int, float, float]] = field(default_factory=list)  # (step, score, loss)

    def checkpoints(self, ctx: SweepContext, model: torch.nn.Module) -> Checkpoints:
        """The training loop's checkpoints: every curve step but the last, which is the run's end."""
        steps = checkpoint_steps(ctx.task.plan.total_steps, self.points)[:-1]

        def evaluate(step: int) -> None:
            result = ctx.evaluate(model, ctx.validation)
            self.seen.append((step, result.score, result.loss))

        return Checkpoints(frozenset(steps), evaluate) if steps else Checkpoints()

    def curves(self, stats: TrainStats, validation: EvalResult) -> dict[str, list[list[float]]]:
        """The record's ``curves``; empty for a run that trained nothing."""
        if not stats.steps:
            return {}
        curves = {"train_loss": [[step, loss] for step, loss in stats.loss_history]}
        if self.points:
            seen = [*self.seen, (stats.steps, validation.score, validation.loss)]
            curves[f"validation_{validation.metric}"] = [[step, score] for step, score, _ in seen]
            curves["validation_loss"] = [[step, loss] for step, _, loss in seen]
        return curves
