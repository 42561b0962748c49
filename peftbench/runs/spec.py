"""What a run is: a method with resolved hyper-parameters, a seed and a stage, named by a run id.

The run id hashes everything that decides the run's result (model, data and its fingerprint,
method and where it came from, hyper-parameters, training settings, seed, stage, the step a
tuning run stops at, peftbench version, and the kind of task and primary metric where they are not
single-text classification by accuracy), so a run that exists complete is never repeated unless
asked to. Where a run continues from (``resume``) is not part of it: continuing a saved training
state gives exactly what training from the start gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftbench.methods.base import Method
from peftbench.plugins import RegisteredMethod
from peftbench.records import DEFAULT_METRIC, DEFAULT_TASK, RunRecord, now, run_key, task_identity
from peftbench.runs.context import SweepContext
from peftbench.settings import train_identity
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
    until: int | None = None  # a tuning run that stops after this step (None: the plan's end)
    resume: str | None = None  # the run whose saved training state this one continues, if it still exists
    keep_state: bool = False  # save the training state at the end (``states/<run id>``) for others
    training_key: str = ""  # what is trained, stage and stop aside: a saved state continues only this

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
    until: int | None = None,
    resume: str | None = None,
    keep_state: bool = False,
) -> RunSpec:
    """The run of ``entry`` with ``hp`` and ``seed`` (a tuning run stops after step ``until``)."""
    if until is not None and until >= ctx.task.plan.total_steps:
        until = None  # the plan's end
    parts = training_parts(ctx, entry, hp, seed)
    key = run_key({**parts, "stage": stage, **({"until": until} if until is not None else {})})
    prefix = "" if stage == "final" else f"{stage}-"
    run_id = f"{entry.method.name}-{prefix}seed{seed}-{key}"
    return RunSpec(
        entry, dict(hp), seed, run_id, stage, tuning, label or run_id, budget, until, resume, keep_state,
        run_key(parts),
    )  # fmt: skip


def training_parts(
    ctx: SweepContext, entry: RegisteredMethod, hp: dict[str, Any], seed: int
) -> dict[str, Any]:
    """What decides what a run trains, as its run id hashes it (with the stage and ``until``)."""
    return run_parts(
        ctx.model_spec.name, ctx.dataset_name, ctx.dataset_fingerprint, entry.method.name, entry.source, hp,
        train_settings(ctx, entry.method), seed, task=ctx.kind.name, metric=ctx.kind.primary_metric,
    )  # fmt: skip


def run_parts(
    model: str, dataset: str, fingerprint: str, method: str, source: str, hp: dict[str, Any],
    train: dict[str, Any], seed: int, version: str = __version__, task: str = DEFAULT_TASK,
    metric: str = DEFAULT_METRIC,
) -> dict[str, Any]:  # fmt: skip
    """The run id's parts from plain values (a record's own fields give its run id back)."""
    return {
        "model": model,
        "dataset": dataset,
        "fingerprint": fingerprint,
        "method": method,
        "source": source,
        "hp": hp,
        "train": train_identity(train),
        "seed": seed,
        "peftbench": version,
        **task_identity(task, metric),
    }


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
        train_subset=ctx.data.train_subset,
        label_names=list(ctx.data.label_names),
        task=ctx.kind.name,
        metric=ctx.kind.primary_metric,
        higher_is_better=ctx.kind.higher_is_better,
        hyperparameters=dict(spec.hp),
        train_config=train_settings(ctx, spec.method),
        environment=ctx.environment,
        notes=list(ctx.data.notes),
        started_at=now(),
    )


def lost_record(ctx: SweepContext, spec: RunSpec, message: str, phase: str) -> RunRecord:
    """A ``failed`` record for a run that could not report one itself (its worker died)."""
    return new_record(ctx, spec).fail("failed", message, phase)
