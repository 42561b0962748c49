"""A sweep: every requested method x seed, plus the reference rows, on one model and each dataset.

Everything that can be checked is checked before any training starts (settings, method names,
hyper-parameters, output folder, every dataset, model and its position limit), so a typo costs
seconds, not a night. Datasets run in turn, each with its own context (data tokenised once),
all into the same results folder: records name their dataset, and the leaderboard has a table
per (model, dataset). Runs whose complete record already exists are skipped unless ``force``.

The sweep plans and decides; an executor only runs batches of independent runs and the results
store keeps what they produce. With a parallel executor, every method's tuning candidates form
one batch and every final run a second one, so a cluster gets all the parallelism the
dependency between them allows.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import PeftbenchError
from peftbench.formatting import hp_text
from peftbench.plugins import MethodRegistry, RegisteredMethod, collect_methods
from peftbench.records import RunRecord
from peftbench.runs.context import Placement, SweepContext, build_context, load_datasets
from peftbench.runs.executors import Executor, get_executor
from peftbench.runs.sizing import budget_line, refuse_conflicts, size_methods
from peftbench.runs.spec import RunSpec, make_spec
from peftbench.runs.store import ResultStore
from peftbench.settings import SweepConfig
from peftbench.tasks.base import Task
from peftbench.tasks.metrics import BUILTIN_METRICS, display_metric
from peftbench.tuning import candidates, select_configuration, tuning_grid

Plan = list[tuple[RegisteredMethod, dict[str, Any]]]


@dataclass
class SweepOutcome:
    """What a sweep did, over all its datasets: its final runs, and those that did not complete."""

    out: Path
    datasets: list[str] = field(default_factory=list)  # as records name them, in the order they ran
    final_run_ids: list[str] = field(default_factory=list)
    #: This sweep's final runs that failed or diverged, even where the store kept an earlier
    #: complete record of the same run (a failed ``--force`` rerun): the sweep is judged by these.
    incomplete: list[RunRecord] = field(default_factory=list)
    #: Where the setup time went ("load data", "load model", "tokenise"), summed over datasets;
    #: each run's own phases are in its record (``train_seconds``, ``evaluate_seconds``, ...).
    seconds: dict[str, float] = field(default_factory=dict)
    runs_per_device: int = 1  # how many runs shared each device


def plan_runs(config: SweepConfig, registry: MethodRegistry) -> Plan:
    """The (method, resolved hyper-parameters) pairs of the sweep; raises on any bad input."""
    entries = [registry.get(name) for name in config.methods]
    if config.references:
        asked = set(config.methods)
        always = [e for e in registry.entries() if e.method.always_run and e.method.name not in asked]
        entries = always + entries
    for method in config.hp:
        if method not in {e.method.name for e in entries}:
            registry.get(method)  # unknown names get the list of known ones
            raise PeftbenchError(f"hyper-parameters given for '{method}', which is not in --methods")
    refuse_conflicts(config.budget, entries, config.hp)
    plan = [(e, e.method.hyperparameters(config.hp.get(e.method.name))) for e in entries]
    for entry, _ in plan if config.tune else ():  # every candidate checked now, rules between keys too
        overrides = config.hp.get(entry.method.name, {})
        for combo in candidates(tuning_grid(entry.method, overrides)):
            entry.method.hyperparameters({**overrides, **combo})
    return plan


def run_sweep(config: SweepConfig, registry: MethodRegistry | None = None) -> SweepOutcome:
    """Run the sweep on each dataset in turn; every record and adapter ends up under ``config.out``."""
    plan = plan_runs(config, registry or collect_methods())
    store = ResultStore(config.out)
    started = time.perf_counter()
    datasets = load_datasets(config)  # all of them, before the executor starts or anything trains
    for name, data in datasets.items():
        refuse_inapplicable(plan, config.methods, data.task, name)
    loaded = time.perf_counter() - started
    executor = get_executor(config.executor, config.ray_address, config.runs_per_device)
    try:
        placement = executor.start(config.device, config.train.precision)
        sweep = _Sweep(config, store, executor, several=len(datasets) > 1)
        sweep.outcome.seconds["load data"] = loaded
        for name, data in datasets.items():
            ctx = build_context(config, placement, name, data)
            sized = sweep.start_dataset(ctx, plan, placement, len(datasets))
            # One method at a time in this process; every method at once on a parallel executor.
            for group in [sized] if executor.parallel else [[item] for item in sized]:
                sweep.run_group(group)
            sweep.outcome.datasets.append(sweep.ctx.dataset_name)
        return sweep.outcome
    finally:
        executor.close()


class _Sweep:
    """The state of one sweep while it runs: what is planned, done, and reported."""

    def __init__(self, config: SweepConfig, store: ResultStore, executor: Executor, several: bool):
        self.config, self.store, self.executor = config, store, executor
        self.ctx: SweepContext  # the dataset whose turn it is
        self.several = several  # progress lines then name the dataset of each run
        self.budgets: dict[str, dict[str, Any]] = {}  # method -> its size on this dataset (--budget)
        self.seeds = list(config.seeds)
        self.outcome = SweepOutcome(store.out)
        self.done = 0
        self.planned = 0

    def start_dataset(self, ctx: SweepContext, plan: Plan, placement: Placement, datasets: int) -> Plan:
        """Make ``ctx``'s dataset the current one, size the methods for it (``--budget``) and say
        what runs; returns the plan at those sizes."""
        self.ctx, config, data = ctx, self.config, ctx.data
        for step, seconds in ctx.seconds.items():
            self.outcome.seconds[step] = self.outcome.seconds.get(step, 0.0) + seconds
        plan = [(entry, hp) for entry, hp in plan if entry.method.applies_to(ctx.kind)]
        total, self.budgets = size_methods(ctx, plan, config.budget, config.hp) if config.budget else (0, {})
        sized = self.sized(plan)
        sharing = self.executor.share_devices(ctx)  # before ``parallel`` is read for this dataset
        self.outcome.runs_per_device = self.executor.runs
        if not self.planned:  # the first dataset: the model is loaded, checked and sized now
            self.planned = self.total(sized) * datasets
            self.say(
                f"peftbench: {config.model} on {', '.join(config.dataset)}: {self.planned} runs "
                f"on {placement.device} ({placement.precision})"
            )
            for line in (placement.description, sharing):
                if line:
                    self.say(line)
        where = "" if data.source == ctx.dataset_name else f" ({data.source})"
        self.say(f"{ctx.dataset_name}{where}:")
        for note in data.notes:
            self.say(f"  note: {note}")
        self.say(f"  tokens: {'read from the cache' if ctx.tokens_from_cache else 'tokenised and cached'}")
        if config.budget:
            target = config.budget.target(total)
            self.say(f"  budget {config.budget}: {target:,} trainable parameters (the model has {total:,})")
        for method, budget in self.budgets.items():
            self.say(budget_line(method, budget))
        return sized

    def overrides(self, name: str) -> dict[str, Any]:
        """The method's ``--hp`` values, and the size ``--budget`` fixed (never tuned)."""
        budget = self.budgets.get(name) or {}
        fixed = {budget["key"]: budget["value"]} if budget.get("value") is not None else {}
        return {**self.config.hp.get(name, {}), **fixed}

    def sized(self, plan: Plan) -> Plan:
        """The plan with each sized method's hyper-parameters at its budget's size."""
        sized = {name for name, budget in self.budgets.items() if budget.get("value") is not None}
        return [(e, e.method.hyperparameters(self.overrides(e.method.name))) if e.method.name in sized
                else (e, hp) for e, hp in plan]  # fmt: skip

    def grid(self, entry: RegisteredMethod) -> dict[str, list[Any]]:
        name = entry.method.name
        return tuning_grid(entry.method, self.overrides(name)) if self.config.tune else {}

    def total(self, plan: Plan) -> int:
        """Runs per dataset: every seed of every method, plus its tuning candidates."""
        return sum(len(self.seeds) + len(candidates(self.grid(entry))) for entry, _ in plan)

    def on(self, text: str) -> str:
        """``text``, naming the dataset when the sweep has several."""
        return f"{text} on {self.ctx.dataset_name}" if self.several else text

    def run_group(self, group: Plan) -> None:
        """Tuning candidates of every method in ``group`` (first seed), then each choice with every seed."""
        grids = {entry.method.name: self.grid(entry) for entry, _ in group}
        tuning_runs = {
            entry.method.name: self._candidates(entry, grids[entry.method.name]) for entry, _ in group
        }
        tried = self._execute([spec for specs in tuning_runs.values() for spec in specs])
        finals = []
        for entry, hp in group:
            name, tuning = entry.method.name, None
            if grids[name]:
                tuning = select_configuration([tried[s.run_id] for s in tuning_runs[name]], grids[name])
                hp = entry.method.hyperparameters({**self.overrides(name), **tuning["chosen"]})
                chosen, metric = tuning["chosen"], display_metric(self.ctx.kind.primary_metric)
                self.say(
                    f"  {self.on(name)}: "
                    + (f"chose {hp_text(chosen)} on validation {metric.title}" if chosen else tuning["note"])
                )
            finals += [
                make_spec(
                    self.ctx,
                    entry,
                    hp,
                    seed,
                    "final",
                    tuning,
                    self.on(f"{name} seed {seed}"),
                    self.budgets.get(name),
                )  # fmt: skip
                for seed in self.seeds
            ]
        self._execute(finals)
        self.outcome.final_run_ids += [spec.run_id for spec in finals]

    def _candidates(self, entry: RegisteredMethod, grid: dict[str, list[Any]]) -> list[RunSpec]:
        """One tuning run per combination of the method's search space, in the grid's order."""
        name, overrides = entry.method.name, self.overrides(entry.method.name)
        return [
            make_spec(
                self.ctx,
                entry,
                entry.method.hyperparameters({**overrides, **combo}),
                self.seeds[0],
                "tune",
                label=self.on(f"{name} tuning {hp_text(combo)}"),
                budget=self.budgets.get(name),
            )
            for combo in candidates(grid)
        ]

    def _execute(self, specs: list[RunSpec]) -> dict[str, RunRecord]:
        """Skip what is complete, hand the rest to the executor, keep each result as it arrives.

        A sequential executor gets one run at a time, so progress lines keep the plan's order.
        """
        records: dict[str, RunRecord] = {}
        for batch in [specs] if self.executor.parallel else [[spec] for spec in specs]:
            todo = []
            for spec in batch:
                existing = None if self.config.force else self.store.complete(spec.run_id)
                if existing is None:
                    todo.append(spec)
                    continue
                if spec.stage == "final" and (existing.tuning, existing.budget) != (spec.tuning, spec.budget):
                    # The same run, now reached through tuning or a budget (or afresh): say so in its record.
                    existing.tuning, existing.budget = spec.tuning, spec.budget
                    self.store.write(existing)
                records[spec.run_id] = existing
                self._report(spec, f"skipped, complete record exists ({spec.run_id}.json)")
            for spec, record, staged in self.executor.run(self.ctx, todo, self.store):
                kept = self.store.settle(record, staged)
                records[spec.run_id] = kept
                if spec.stage == "final" and record.status != "complete":
                    self.outcome.incomplete.append(record)
                note = "" if kept is record else "; the earlier complete record and adapter are kept"
                self._report(spec, _summary(record) + note)
        return records

    def _report(self, spec: RunSpec, message: str) -> None:
        """``[k/total] label: what happened``, numbered in the order runs finish."""
        self.done += 1
        self.say(f"[{self.done}/{self.planned}] {spec.label}: {message}")

    def say(self, message: str) -> None:
        if self.config.progress:
            print(message, file=sys.stderr, flush=True)


def refuse_inapplicable(plan: Plan, asked: tuple[str, ...], task: Task, dataset: str) -> None:
    """A method asked for by name that does not apply to a dataset's kind of task is one line
    before any training (a reference row that does not apply is simply left out there)."""
    for entry, _ in plan:
        if entry.method.name in asked and not entry.method.applies_to(task):
            raise PeftbenchError(
                f"method '{entry.method.name}' does not apply to {task.name} (dataset '{dataset}'); "
                "leave it out of --methods for this dataset"
            )


def _summary(record: RunRecord) -> str:
    """The progress line of a finished run: its primary metric (and the others), time, reload."""
    if record.status != "complete":
        return f"{record.status.upper()}: {record.error}"
    c, metric = record.costs, display_metric(record.metric)
    if record.stage == "tune":
        score = metric.text(record.primary_score("validation"))
        return f"validation {metric.title} {score}, {c['train_seconds']:.0f} s training"
    reload = "reload identical" if record.reload.get("predictions_identical") else "RELOAD DIFFERS"
    others = [
        f"{display_metric(name).title} {display_metric(name).text(value)}"
        for name, value in record.metrics.items()
        if name in BUILTIN_METRICS and name != record.metric
    ]
    scores = ", ".join([f"{metric.title} {metric.text(record.primary_score())}", *others])
    return f"{scores}, {c['train_seconds']:.0f} s training, {reload}"
