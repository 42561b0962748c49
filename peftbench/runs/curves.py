"""Validation during training: one set of evaluations serves the learning curve and the choice of
the checkpoint a run keeps.

``checkpoints`` evaluations, evenly spaced over the plan's maximum with the last at its end, are the
candidates for the kept model: the best on validation (``peftbench.runs.selection``) is restored
before the run is tested, saved and reloaded, and ``patience`` ends a run after that many
checkpoints without improvement. ``curve_points`` adds evaluations for the curve alone. The
evaluations go through the same evaluator as any other and do not change the training (see
``Checkpoints``), so the extra curve points never change a run's result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from peftbench.evaluation import EvalResult
from peftbench.records import LAST_STANDARD_ERROR
from peftbench.runs.context import SweepContext
from peftbench.runs.selection import Criterion, Score, best
from peftbench.train import Checkpoints, TrainStats, checkpoint_steps

#: The series a record's ``curves`` may hold, each a list of ``[step, value]`` pairs:
#: ``validation_<metric>`` is named by the task's primary metric (``validation_accuracy``, ...).
CURVES = ("train_loss", "validation_<metric>", "validation_loss")


@dataclass(frozen=True)
class Evaluation:
    """The validation split scored at one step: every metric of the task, the primary first."""

    step: int
    scores: dict[str, float]
    loss: float
    selects: bool  # a checkpoint (may be kept), not a curve point only
    metric: str = "accuracy"  # the primary
    higher_is_better: bool = True
    #: The bootstrap standard error of the primary metric here (``Metric.standard_error``), taken at
    #: the plan's last step only: what the ``still improving`` rule compares a last rise with.
    standard_error: float | None = None

    @property
    def score(self) -> Score:
        return Criterion(self.metric, self.higher_is_better).score(self.metrics())

    def metrics(self) -> dict[str, float]:
        """As the record's ``metrics`` name them: ``validation_<metric>`` and ``validation_loss``."""
        scores = {f"validation_{name}": value for name, value in self.scores.items()}
        return {**scores, "validation_loss": self.loss}


@dataclass
class ValidationCheckpoints:
    """The validation evaluations of one run while it trains, and the checkpoint it keeps."""

    total: int  # the plan's maximum: optimiser steps
    checkpoints: int  # how many compete to be kept, the last at ``total``
    patience: int | None = None
    curve_points: int = 0
    criterion: Criterion = field(default_factory=Criterion)  # the task's primary metric, its direction
    evaluations: list[Evaluation] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] | None = None  # of the best checkpoint, unless at ``total``
    not_finite: bool = False  # an evaluation had NaN or infinite logits: the run diverged

    @property
    def selecting_steps(self) -> list[int]:
        return checkpoint_steps(self.total, self.checkpoints)

    @property
    def kept(self) -> Evaluation | None:
        """The best checkpoint so far (ties: the earlier); where no checkpoint has a score (a
        correlation of constant predictions is undefined), the last one."""
        selecting = [e for e in self.evaluations if e.selects]
        return _best(selecting) or (selecting[-1] if selecting else None)

    def hook(self, ctx: SweepContext, model: torch.nn.Module) -> Checkpoints:
        """What the training loop calls: evaluate, keep the best checkpoint's weights, say when to stop."""
        selecting = set(self.selecting_steps)
        steps = selecting | set(checkpoint_steps(self.total, self.curve_points))

        def evaluate(step: int) -> bool:
            result = ctx.evaluate(model, ctx.validation)
            last = step >= self.total
            error = (
                ctx.kind.primary.standard_error(result.predictions, ctx.validation.labels) if last else None
            )
            self.look(step, result, step in selecting, model, error)
            return self.not_finite or self.out_of_patience()

        return Checkpoints(frozenset(steps), evaluate)

    def look(
        self, step: int, result: EvalResult, selects: bool, model: torch.nn.Module | None,
        standard_error: float | None = None,
    ) -> None:  # fmt: skip
        """Record one evaluation; a new best checkpoint's trainable weights are copied (unless it is
        the plan's last step, where the model itself stays as it is)."""
        if not np.isfinite(result.logits).all():
            self.not_finite = True
        before = self.kept
        criterion = self.criterion
        evaluation = Evaluation(step, dict(result.scores), result.loss, selects, criterion.metric,
                                criterion.higher_is_better, standard_error)  # fmt: skip
        self.evaluations.append(evaluation)
        if selects and model is not None and evaluation.score.beats(before and before.score):
            self.best_weights = None if step >= self.total else trainable_weights(model)

    def out_of_patience(self) -> bool:
        kept = self.kept
        if self.patience is None or kept is None:
            return False
        since = [e for e in self.evaluations if e.selects and e.step > kept.step]
        return len(since) >= self.patience

    def restore_kept(self, model: torch.nn.Module, trained_to: int) -> None:
        """Put the kept checkpoint's weights back into ``model`` (trained to step ``trained_to``)."""
        kept = self.kept
        if kept is None or kept.step == trained_to:
            return
        if self.best_weights is None:
            raise RuntimeError(f"the weights of checkpoint {kept.step} were not kept")
        model.load_state_dict(self.best_weights, strict=False)

    def curves(self, stats: TrainStats) -> dict[str, list[list[float]]]:
        """The record's ``curves``; empty for a run that trained nothing."""
        if not stats.steps:
            return {}
        curves = {"train_loss": [[step, loss] for step, loss in stats.loss_history]}
        if self.evaluations:
            curves[self.criterion.key] = [[e.step, e.scores[self.criterion.metric]] for e in self.evaluations]
            curves["validation_loss"] = [[e.step, e.loss] for e in self.evaluations]
        return curves

    def last_standard_error(self) -> dict[str, float]:
        """``{"validation_standard_error": ...}`` where the last evaluation has one (a run trained to
        the plan's maximum), for the record's ``metrics``; else empty."""
        error = self.evaluations[-1].standard_error if self.evaluations else None
        return {} if error is None else {LAST_STANDARD_ERROR: error}

    def to_state(self, step: int) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
        """What a training state saved at ``step`` keeps of this: the evaluations, and the kept
        checkpoint's weights unless they are the weights at ``step`` (saved anyway)."""
        kept = self.kept
        best = self.best_weights if kept is not None and kept.step != step else None
        return [asdict(e) for e in self.evaluations], dict(best or {})

    def restore_state(
        self, evaluations: list[dict[str, Any]], best: dict[str, torch.Tensor], step: int,
        weights: dict[str, torch.Tensor],
    ) -> None:  # fmt: skip
        """The inverse of ``to_state``, with the weights the state holds at ``step``."""
        self.evaluations = [Evaluation(**e) for e in evaluations]
        kept = self.kept
        at_step = kept is not None and kept.step == step and step < self.total
        self.best_weights = dict(weights) if at_step else (best or None)


def trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy, on the CPU, of every parameter that trains."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def _best(evaluations: list[Evaluation]) -> Evaluation | None:
    return best(evaluations, lambda e: e.score)
