"""What a run is: a method with resolved hyper-parameters, a seed and a stage, named by a run id.

The run id hashes everything that decides the run's result (model, data and its fingerprint,
method and where it came from, hyper-parameters, training settings, seed, stage, peftbench
version), so a run that exists complete is never repeated unless asked to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftbench.methods.base import Method
from peftbench.plugins import RegisteredMethod
from peftbench.records import RunRecord, now, run_key
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


#: In ``train_config`` of a run whose method trains on the frozen model's features
#: (``runs.features``): its head trained on cached features, without the body's dropout.
CACHED_FEATURES = {"features": "cached"}


def train_settings(ctx: SweepContext, method: Method) -> dict[str, Any]:
    """The training settings a run records and its id hashes: the sweep's, plus
    ``CACHED_FEATURES`` for a method that trains on the frozen model's features."""
    return {**ctx.train_config.model_dump(), **(CACHED_FEATURES if method.trains_on_features else {})}


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
            "train": train_settings(ctx, entry.method),
            "seed": seed,
            "stage": stage,
            "peftbench": __version__,
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
        hyperparameters=dict(spec.hp),
        train_config=train_settings(ctx, spec.method),
        environment=ctx.environment,
        notes=list(ctx.data.notes),
        started_at=now(),
    )


def lost_record(ctx: SweepContext, spec: RunSpec, message: str, phase: str) -> RunRecord:
    """A ``failed`` record for a run that could not report one itself (its worker died)."""
    return new_record(ctx, spec).fail("failed", message, phase)
