"""What a run is: a method with resolved hyper-parameters, a seed and a stage, named by a run id.

The run id hashes everything that decides the run's result (model, data and its fingerprint,
method and where it came from, hyper-parameters, training settings, seed, stage, peftbench
version, and the kind of task and primary metric where they are not single-text classification
by accuracy), so a run that exists complete is never repeated unless asked to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftbench.plugins import RegisteredMethod
from peftbench.records import RunRecord, now, run_key, task_identity
from peftbench.runs.context import SweepContext
from peftbench.version import __version__

STAGES = ("tune", "final")  # tune: a candidate scored on validation only; final: on test too


@dataclass(frozen=True)
class RunSpec:
    """One run the sweep has decided on."""

    entry: RegisteredMethod
    hp: dict[str, Any]
    seed: int
    run_id: str
    stage: str = "final"
    tuning: dict[str, Any] | None = None  # final runs of a tuned sweep: the choice and its candidates
    label: str = ""  # what progress lines call it, e.g. "lora seed 1"
    budget: dict[str, Any] | None = None  # under --budget: the size the method was given, and how close

    @property
    def method(self):
        return self.entry.method


def make_spec(
    ctx: SweepContext,
    entry: RegisteredMethod,
    hp: dict[str, Any],
    seed: int,
    stage: str = "final",
    tuning: dict[str, Any] | None = None,
    label: str = "",
    budget: dict[str, Any] | None = None,
) -> RunSpec:
    key = run_key(
        {
            "model": ctx.model_spec.name,
            "dataset": ctx.dataset_name,
            "fingerprint": ctx.dataset_fingerprint,
            "method": entry.method.name,
            "source": entry.source,
            "hp": hp,
            "train": ctx.train_config.model_dump(),
            "seed": seed,
            "stage": stage,
            "peftbench": __version__,
            **task_identity(ctx.kind.name, ctx.kind.primary_metric),
        }
    )
    prefix = "" if stage == "final" else f"{stage}-"
    run_id = f"{entry.method.name}-{prefix}seed{seed}-{key}"
    return RunSpec(entry, dict(hp), seed, run_id, stage, tuning, label or run_id, budget)


def new_record(ctx: SweepContext, spec: RunSpec) -> RunRecord:
    """The record of a run before it has any result (status ``failed`` until it completes)."""
    return RunRecord(
        run_id=spec.run_id,
        status="failed",
        model=ctx.model_name,
        dataset=ctx.dataset_name,
        method=spec.method.name,
        seed=spec.seed,
        method_source=spec.entry.source,
        role=spec.method.role,
        stage=spec.stage,
        tuning=spec.tuning,
        budget=spec.budget,
        dataset_fingerprint=ctx.dataset_fingerprint,
        label_names=list(ctx.data.label_names),
        task=ctx.kind.name,
        metric=ctx.kind.primary_metric,
        higher_is_better=ctx.kind.higher_is_better,
        hyperparameters=dict(spec.hp),
        train_config=ctx.train_config.model_dump(),
        environment=ctx.environment,
        notes=list(ctx.data.notes),
        started_at=now(),
    )


def lost_record(ctx: SweepContext, spec: RunSpec, message: str, phase: str) -> RunRecord:
    """A ``failed`` record for a run that could not report one itself (its worker died)."""
    return new_record(ctx, spec).fail("failed", message, phase)
