"""A sweep: every requested method x seed, plus the reference rows, on one model and each dataset.

Everything that can be checked is checked before any training starts (settings, method names,
hyper-parameters, output folder, every dataset, model and its position limit), so a typo costs
seconds, not a night. Datasets run in turn, each with its own context (data tokenised once),
all into the same results folder: records name their dataset, and the leaderboard has a table
per (model, dataset). Runs whose complete record already exists are skipped unless ``force``; a
sweep writing the same folder at the same time runs each run once with this one (the store decides,
run by run, whether this sweep runs it, uses its record, or waits for the sweep running it).

The sweep plans; a search (``peftbench.runs.search``, ``--search``) decides what tuning runs and
which hyper-parameters win; an executor only runs batches of independent runs and the results
store keeps what they produce. With a parallel executor, every method's tuning runs of a round
form one batch and every final run a last one, so a cluster gets all the parallelism the
dependencies between them allow. A final run of the chosen values continues the tuning run that
trained the same thing (same seed, to the maximum) from its saved state instead of training again.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.formatting import hp_text
from peftbench.methods.support import refuse_unsupported
from peftbench.plugins import MethodRegistry, RegisteredMethod, collect_methods
from peftbench.records import RunRecord
from peftbench.runs.context import Placement, SweepContext, build_context, load_datasets
from peftbench.runs.cores import HostCores
from peftbench.runs.executors import Executor, get_executor
from peftbench.runs.features import computable_here, compute_features
from peftbench.runs.plan import Plan, plan_runs, refuse_inapplicable
from peftbench.runs.search import Search, SearchSetup, Together, make_search
from peftbench.runs.search.base import search_space
from peftbench.runs.sizing import budget_line, size_methods
from peftbench.runs.spec import RunSpec, make_spec
from peftbench.runs.store import ResultStore, Turn
from peftbench.settings import SweepConfig
from peftbench.tasks.metrics import BUILTIN_METRICS, display_metric
from peftbench.train import checkpoint_steps


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


def run_sweep(config: SweepConfig, registry: MethodRegistry | None = None) -> SweepOutcome:
    """Run the sweep on each dataset in turn; every record and adapter ends up under ``config.out``,
    shared with any other sweep writing there at the same time (each run is run by one of them)."""
    plan = plan_runs(config, registry or collect_methods())
    executor = get_executor(config.executor, config.ray_address, config.runs_per_device)
    with ResultStore(config.out, config.claim_timeout) as store:
        # Refuses at once where sweeps on this host could not share its cores.
        cores = HostCores(store.claims, executor, config.progress)
        started = time.perf_counter()
        datasets = load_datasets(config)  # all of them, before the executor starts or anything trains
        for name, data in datasets.items():
            refuse_inapplicable(plan, config.methods, data.task, name)
        loaded = time.perf_counter() - started
        try:
            placement = executor.start(config.device, config.train.precision)
            sweep = _Sweep(config, store, executor, cores, several=len(datasets) > 1)
            sweep.outcome.seconds["load data"] = loaded
            for name, data in datasets.items():
                ctx = build_context(config, placement, name, data)
                sized = sweep.start_dataset(ctx, plan, placement, len(datasets))
                # One method at a time in this process; every method at once on a parallel executor.
                for group in [sized] if executor.parallel else [[item] for item in sized]:
                    sweep.run_group(group)
                sweep.outcome.datasets.append(sweep.ctx.dataset_name)
            sweep.say_shared()
            return sweep.outcome
        finally:
            executor.close()


class _Sweep:
    """The state of one sweep while it runs: what is planned, done, and reported."""

    def __init__(
        self, config: SweepConfig, store: ResultStore, executor: Executor, cores: HostCores, several: bool
    ):
        self.config, self.store, self.executor, self.cores = config, store, executor, cores
        self.ctx: SweepContext  # the dataset whose turn it is
        self.several = several  # progress lines then name the dataset of each run
        self.budgets: dict[str, dict[str, Any]] = {}  # method -> its size on this dataset (--budget)
        self.seeds = list(config.seeds)
        self.outcome = SweepOutcome(store.out)
        self.done = 0
        self.planned = 0
        self.ran = 0  # runs this sweep executed
        self.elsewhere: dict[str, int] = {}  # runs other sweeps into the same folder ran, by sweep
        self._waiting: set[str] = set()  # runs said to be waited for
        for line in store.repairs:
            self.say(f"peftbench: repaired {config.out}: {line}")

    def start_dataset(self, ctx: SweepContext, plan: Plan, placement: Placement, datasets: int) -> Plan:
        """Make ``ctx``'s dataset the current one, size the methods for it (``--budget``) and say
        what runs; returns the plan at those sizes."""
        self.ctx, config, data = ctx, self.config, ctx.data
        # A method that cannot train this model's family is refused now, before anything trains.
        refuse_unsupported([entry.method for entry, _ in plan], ctx.base_model, config.model)
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

    def search(self, entry: RegisteredMethod) -> Search | None:
        """The search of ``entry``'s hyper-parameters on the current dataset (None: not tuned)."""
        name, method, config = entry.method.name, entry.method, self.config
        overrides, budget = self.overrides(name), self.budgets.get(name)
        grid = search_space(method, overrides) if config.tune else {}
        if not grid:
            return None
        keep = not method.defines("after_step")  # such a method restarts rather than continues

        def spawn(values: dict[str, Any], seed: int, until: int | None, resume: str | None) -> RunSpec:
            label = f"{name} tuning {hp_text(values)} seed {seed}" + (f" to step {until}" if until else "")
            hp = method.hyperparameters({**overrides, **values})
            return make_spec(
                self.ctx, entry, hp, seed, "tune", None, self.on(label), budget, until, resume, keep
            )

        steps = checkpoint_steps(self.ctx.task.plan.total_steps, config.train.checkpoints)
        setup = SearchSetup(
            name, grid, method.hyperparameter_model().model_fields,
            lambda values: method.hyperparameters({**overrides, **values}), spawn,
            tune_seeds(self.seeds, config.tune_seeds), tuple(steps), config.eta, config.first_share,
            config.extension_limit, self.ctx.criterion,
        )  # fmt: skip
        return make_search(config.search, setup)

    def total(self, plan: Plan) -> int:
        """Runs per dataset as planned: every seed of every method, plus its tuning runs."""
        searches = [self.search(entry) for entry, _ in plan]
        return sum(len(self.seeds) + (s.expected_runs() if s else 0) for s in searches)

    def on(self, text: str) -> str:
        """``text``, naming the dataset when the sweep has several."""
        return f"{text} on {self.ctx.dataset_name}" if self.several else text

    def run_group(self, group: Plan) -> None:
        """Search the hyper-parameters of every method in ``group``, then run each choice with every seed."""
        searches = {entry.method.name: s for entry, _ in group if (s := self.search(entry)) is not None}
        expected = sum(s.expected_runs() for s in searches.values())
        together = Together(searches)
        while batch := together.ask():
            together.tell(self._execute(batch))
            for search in searches.values():
                for note in search.notes():
                    self.say(f"  {self.on(note)}")
                self.store.drop_states(search.released())  # nothing will continue these
            now = sum(s.expected_runs() for s in searches.values())
            self.planned, expected = self.planned + now - expected, now  # extensions add runs
        finals = []
        for entry, hp in group:
            name, search = entry.method.name, searches.get(entry.method.name)
            tuning = search.result() if search is not None else None
            if tuning is not None:
                chosen = tuning["chosen"]
                hp = entry.method.hyperparameters({**self.overrides(name), **chosen})
                seeds, score = len(tuning["settings"]["tune_seeds"]), self.ctx.criterion.name
                self.say(
                    f"  {self.on(name)}: "
                    + (f"chose {hp_text(chosen)} on {score} (mean over {seeds} seeds)" if chosen
                       else tuning["note"])
                )  # fmt: skip
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
                    resume=search.continues(seed) if search else None,
                )  # fmt: skip
                for seed in self.seeds
            ]
        self._execute(finals)
        self.outcome.final_run_ids += [spec.run_id for spec in finals]
        for search in searches.values():  # the final runs continued what they needed
            self.store.drop_states(search.run_ids())

    def _execute(self, specs: list[RunSpec]) -> dict[str, RunRecord]:
        """Run what the store gives this sweep, one run at a time or as one batch, keeping each result
        as it arrives; use the records of runs already complete or run by another sweep into the same
        folder, waiting for those it is running.

        A sequential executor gets one run at a time, so progress lines keep the plan's order.
        """
        records: dict[str, RunRecord] = {}
        pending = specs
        while pending:
            held = []  # by another sweep: asked about again once this pass is done
            for batch in [pending] if self.executor.parallel else [[spec] for spec in pending]:
                todo = []
                for spec in batch:
                    turn = self.store.take(spec.run_id, self.config.force)
                    if turn.mine:
                        todo.append(spec)
                    elif turn.holder is not None:
                        held.append(spec)
                        self._wait_for(spec, turn.holder)
                    else:
                        records[spec.run_id] = self._reuse(spec, turn)
                if todo:
                    self._share_features(todo)
                    self.cores.share()
                for spec, record, staged in self.executor.run(self.ctx, todo, self.store):
                    kept = self.store.settle(record, staged)
                    records[spec.run_id] = kept
                    self.ran += 1
                    if spec.stage == "final" and record.status != "complete":
                        self.outcome.incomplete.append(record)
                    note = "" if kept is record else "; the earlier complete record and adapter are kept"
                    self._report(spec, _summary(record) + note)
            pending = held
            if pending:
                self.store.pause()
        return records

    def _reuse(self, spec: RunSpec, turn: Turn) -> RunRecord:
        """A run this sweep does not run: its complete record, or what another sweep made of it."""
        existing = turn.record
        if spec.stage == "final" and (existing.tuning, existing.budget) != (spec.tuning, spec.budget):
            # The same run, now reached through tuning or a budget (or afresh): say so in its record.
            existing.tuning, existing.budget = spec.tuning, spec.budget
            self.store.write(existing)
        if turn.by is None:
            self._report(spec, f"skipped, complete record exists ({spec.run_id}.json)")
            return existing
        self.elsewhere[turn.by] = self.elsewhere.get(turn.by, 0) + 1
        if spec.stage == "final" and existing.status != "complete":
            self.outcome.incomplete.append(existing)
        self._report(spec, f"run by {turn.by}: {_summary(existing)}")
        return existing

    def _wait_for(self, spec: RunSpec, holder: str) -> None:
        if spec.run_id not in self._waiting:
            self._waiting.add(spec.run_id)
            self.say(f"  {spec.label}: {holder} is running it; waiting for its record")

    def say_shared(self) -> None:
        """At the end, when other sweeps ran some of this sweep's runs: how the work was shared."""
        if self.elsewhere:
            others = ", ".join(f"{count} by {who}" for who, count in self.elsewhere.items())
            self.say(f"peftbench: of {self.planned} runs, {self.ran} ran here and {others}")

    def _share_features(self, todo: list[RunSpec]) -> None:
        """Before the first run that trains on the frozen model's features, compute them once for
        this dataset, here where the device is (a Ray driver without it leaves each run to compute
        them), into a new context: executors hand the changed context to their workers."""
        wanted = any(spec.method.trains_on_features for spec in todo)
        if self.ctx.features is not None or not wanted or not computable_here(self.ctx.device):
            return
        features = compute_features(self.ctx)
        self.ctx = dataclasses.replace(self.ctx, features=features)
        seconds = self.outcome.seconds
        seconds["frozen features"] = seconds.get("frozen features", 0.0) + features.seconds
        said = features.unavailable or f"computed in {features.seconds:.1f} s for the runs that train on them"
        self.say(f"  {self.on('frozen features')}: {said}")

    def _report(self, spec: RunSpec, message: str) -> None:
        """``[k/total] label: what happened``, numbered in the order runs finish."""
        self.done += 1
        self.say(f"[{self.done}/{self.planned}] {spec.label}: {message}")

    def say(self, message: str) -> None:
        if self.config.progress:
            print(message, file=sys.stderr, flush=True)


def tune_seeds(seeds: list[int], count: int) -> tuple[int, ...]:
    """The first ``count`` of the sweep's seeds, then the smallest seeds not among them: a
    candidate's score is its mean over these."""
    extra = (seed for seed in itertools.count() if seed not in seeds)
    return tuple(seeds[:count]) + tuple(itertools.islice(extra, max(0, count - len(seeds))))


def _summary(record: RunRecord) -> str:
    """The progress line of a finished run: its primary metric (and the others), time, reload."""
    if record.status != "complete":
        return f"{record.status.upper()}: {record.error}"
    seconds = f"{record.costs['train_seconds']:.0f} s training"
    if record.stage == "tune":
        return f"validation {_score(record.metric, record.primary_score('validation'))}, {seconds}"
    reload = "reload identical" if record.reload.get("predictions_identical") else "RELOAD DIFFERS"
    others = [_score(name, value) for name, value in record.metrics.items()
              if name in BUILTIN_METRICS and name != record.metric]  # fmt: skip
    scores = ", ".join([_score(record.metric, record.primary_score()), *others])
    return f"{scores}, {seconds}, {reload}"


def _score(name: str, value: float | None) -> str:
    """``accuracy 80.00%``; ``Spearman ρ undefined`` where the metric is (constant predictions)."""
    metric = display_metric(name)
    return f"{metric.title} {metric.text(value) or 'undefined'}"
