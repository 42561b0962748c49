"""A sweep: every requested method x seed, plus the reference rows, on one model and dataset.

Everything that can be checked is checked before any training starts (method names,
hyper-parameters, seeds, output folder, dataset, model), so a typo costs seconds, not a night.
Runs whose complete record already exists are skipped unless ``force`` is set.

The sweep plans and decides; an executor (``peftbench.executors``) only runs batches of
independent runs. With a parallel executor, every method's tuning candidates form one batch and
every final run a second one, so a cluster gets all the parallelism the dependency allows.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftbench import __version__
from peftbench.data import DatasetSpec, load_splits
from peftbench.errors import PeftbenchError
from peftbench.executors import Executor, Placement, RunSpec, get_executor
from peftbench.leaderboard import Leaderboard
from peftbench.methods.base import TaskInfo
from peftbench.models import load_tokenizer, resolve_model
from peftbench.plugins import MethodRegistry, RegisteredMethod, collect_methods
from peftbench.records import (
    ADAPTERS_DIR,
    RecordWarning,
    RunRecord,
    read_record,
    record_path,
    run_key,
    write_record,
)
from peftbench.runner import SweepContext
from peftbench.token_cache import cached_tokenize, tokenizer_fingerprint
from peftbench.train import TrainConfig
from peftbench.tuning import candidates, select_configuration, tuning_grid


@dataclass
class SweepConfig:
    model: str = "gpt2"
    dataset: str = "rotten_tomatoes"
    dataset_config: str | None = None
    methods: list[str] = field(default_factory=lambda: ["lora"])
    seeds: list[int] = field(default_factory=lambda: [0])
    out: Path = Path("runs")
    hp: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    text_column: str | None = None
    label_column: str | None = None
    device: str | None = None
    force: bool = False
    references: bool = True
    trust_remote_code: bool = False
    progress: bool = True
    tune: bool = False  # choose each method's hyper-parameters on validation, then test every seed
    executor: str = "local"  # or "ray": see peftbench.executors
    ray_address: str | None = None  # a Ray cluster to join (else $RAY_ADDRESS, else a local one)


def parse_hp_overrides(items: Iterable[str] | Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict]:
    """``["lora.r=16", "ia3.learning_rate=0.01"]`` (or an already nested dict) -> nested dict."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {method: dict(values) for method, values in items.items()}
    nested: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        method, dot, key = target.strip().partition(".")
        if not (sep and dot and method and key):
            raise PeftbenchError(
                f"bad hyper-parameter override '{item}': write METHOD.KEY=VALUE, e.g. lora.r=16"
            )
        nested.setdefault(method, {})[key.strip()] = value.strip()
    return nested


def plan_runs(config: SweepConfig, registry: MethodRegistry) -> list[tuple[RegisteredMethod, dict]]:
    """The (method, resolved hyper-parameters) pairs of the sweep; raises on any bad input."""
    if not config.methods:
        raise PeftbenchError("no methods given: pass at least one, e.g. --methods lora")
    names = list(dict.fromkeys(config.methods))
    entries = [registry.get(name) for name in names]
    if config.references:
        asked = set(names)
        always = [e for e in registry.entries() if e.method.always_run and e.method.name not in asked]
        entries = always + entries
    for method in config.hp:
        if method not in {e.method.name for e in entries}:
            registry.get(method)  # unknown names get the list of known ones
            raise PeftbenchError(f"hyper-parameters given for '{method}', which is not in --methods")
    return [(e, e.method.hyperparameters(config.hp.get(e.method.name))) for e in entries]


def check_seeds(seeds: Iterable[Any]) -> list[int]:
    checked = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise PeftbenchError(f"seed {seed!r} is not a non-negative integer")
        if seed >= 2**32:  # torch, numpy and CUDA generators all take a 32-bit seed
            raise PeftbenchError(f"seed {seed} is too large: use one below 2**32 (4294967296)")
        checked.append(int(seed))
    if not checked:
        raise PeftbenchError("no seeds given: pass at least one, e.g. --seeds 0")
    return list(dict.fromkeys(checked))


def check_output_dir(out: Path) -> Path:
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise PeftbenchError(f"output path '{out}' is a file: pass a folder for --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".peftbench-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise PeftbenchError(f"output folder '{out}' is not writable: {error.strerror}") from error
    return out


def run_sweep(config: SweepConfig, registry: MethodRegistry | None = None) -> Leaderboard:
    """Run the sweep and return the leaderboard of its output folder."""
    registry = registry or collect_methods()
    plan = plan_runs(config, registry)
    seeds = check_seeds(config.seeds)
    out = check_output_dir(config.out)
    executor = get_executor(config.executor, config.ray_address)
    try:
        placement = executor.start(config.device, config.train.precision)
        ctx = _build_context(config, out, placement)
        ctx.fresh_model(seeds[0])  # a model that cannot load is an error now, not one failed record per run
        finals = _run_plan(config, ctx, plan, seeds, executor, placement)
    finally:
        executor.close()
    return Leaderboard.from_dir(out, sweep_run_ids=finals)


def _run_plan(config, ctx, plan, seeds, executor: Executor, placement: Placement) -> list[str]:
    """Runs the plan; returns the run ids of its final runs (what this sweep is judged by)."""
    say = _printer(config.progress)
    grids = {
        e.method.name: tuning_grid(e.method, config.hp.get(e.method.name)) if config.tune else {}
        for e, _ in plan
    }
    total = sum(len(seeds) + len(candidates(grids[e.method.name])) for e, _ in plan)
    say(
        f"peftbench: {config.model} on {config.dataset} ({ctx.data.source}), {total} runs on "
        f"{placement.device} ({ctx.precision})"
    )
    if placement.description:
        say(placement.description)
    for note in ctx.data.notes:
        say(f"  note: {note}")
    say(f"  tokens: {'read from the cache' if ctx.tokens_from_cache else 'tokenised and cached'}")
    progress = _Progress(total, say)
    # One method at a time in this process; every method at once on a parallel executor.
    groups = [plan] if executor.parallel else [[item] for item in plan]
    return [
        run_id
        for group in groups
        for run_id in _run_group(config, ctx, group, seeds, grids, executor, progress)
    ]


def _run_group(config, ctx, group, seeds, grids, executor: Executor, progress: _Progress) -> list[str]:
    """Tuning candidates of every method in ``group`` (first seed), then each choice with every seed."""
    tuning_runs = {
        entry.method.name: _candidate_specs(ctx, config, entry, grids[entry.method.name], seeds[0])
        for entry, _ in group
    }
    every_candidate = [spec for specs in tuning_runs.values() for spec in specs]
    tried = _execute(ctx, every_candidate, executor, progress, config)
    finals = []
    for entry, hp in group:
        name, tuning = entry.method.name, None
        if grids[name]:
            tuning = select_configuration([tried[s.run_id] for s in tuning_runs[name]], grids[name])
            hp = entry.method.hyperparameters({**config.hp.get(name, {}), **tuning["chosen"]})
            choice = (
                f"chose {_describe(tuning['chosen'])} on validation accuracy"
                if tuning["chosen"]
                else tuning["note"]
            )
            progress.say(f"  {name}: {choice}")
        finals += [_spec(ctx, entry, hp, seed, "final", f"{name} seed {seed}", tuning) for seed in seeds]
    _execute(ctx, finals, executor, progress, config)
    return [spec.run_id for spec in finals]


def _candidate_specs(ctx, config, entry, grid, seed) -> list[RunSpec]:
    """One tuning run per combination of the method's search space, in the grid's order."""
    name, overrides = entry.method.name, config.hp.get(entry.method.name, {})
    specs = []
    for combo in candidates(grid):
        hp = entry.method.hyperparameters({**overrides, **combo})
        specs.append(_spec(ctx, entry, hp, seed, "tune", f"{name} tuning {_describe(combo)}"))
    return specs


def _spec(ctx, entry, hp, seed, stage, label, tuning=None) -> RunSpec:
    return RunSpec(entry, hp, seed, _run_id(ctx, entry, hp, seed, stage), stage, tuning, label)


def _execute(ctx, specs, executor: Executor, progress: _Progress, config) -> dict[str, RunRecord]:
    """Skip what is complete, hand the rest to the executor, write each record as it arrives.

    A sequential executor gets one run at a time, so progress lines keep the plan's order.
    """
    records: dict[str, RunRecord] = {}
    for batch in [specs] if executor.parallel else [[spec] for spec in specs]:
        todo = []
        for spec in batch:
            path = record_path(ctx.out, spec.run_id)
            existing = None if config.force or not path.exists() else _complete_record(path)
            if existing is None:
                todo.append(spec)
            else:
                if spec.stage == "final" and existing.tuning != spec.tuning:
                    # The same run, now reached through tuning (or tuned afresh): say so in its record.
                    existing.tuning = spec.tuning
                    write_record(existing, ctx.out)
                records[spec.run_id] = existing
                progress.report(spec, f"skipped, complete record exists ({path.name})")
        for spec, record in executor.run(ctx, todo):
            kept = _settle(ctx, record)
            records[spec.run_id] = kept
            note = "" if kept is record else "; the earlier complete record and adapter are kept"
            progress.report(spec, _summary(record) + note)
    return records


@dataclass
class _Progress:
    """``[k/total] label: what happened`` lines, numbered in the order runs finish."""

    total: int
    say: Callable[[str], None]
    done: int = 0

    def report(self, spec: RunSpec, message: str) -> None:
        self.done += 1
        self.say(f"[{self.done}/{self.total}] {spec.label}: {message}")


def _describe(values: dict) -> str:
    return ", ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in values.items()
    )


def _build_context(config: SweepConfig, out: Path, placement: Placement) -> SweepContext:
    data = load_splits(
        DatasetSpec(config.dataset, config.dataset_config, config.text_column, config.label_column)
    )
    spec = resolve_model(config.model)
    tokenizer = load_tokenizer(spec, config.trust_remote_code)
    tokenizer_key = tokenizer_fingerprint(tokenizer)
    max_length = config.train.max_length
    tokenized, hits = {}, {}
    for name in ("train", "validation", "test"):
        tokenized[name], hits[name] = cached_tokenize(
            tokenizer, getattr(data, name), max_length, tokenizer_key
        )
    counts = np.bincount(data.train.labels, minlength=data.num_labels)
    return SweepContext(
        model_name=config.model,
        model_spec=spec,
        dataset_name=config.dataset + (f"/{config.dataset_config}" if config.dataset_config else ""),
        data=data,
        train=tokenized["train"],
        validation=tokenized["validation"],
        test=tokenized["test"],
        task=TaskInfo(data.num_labels, data.label_names, tuple(int(c) for c in counts)),
        pad_id=tokenizer.pad_token_id,
        device=placement.device,
        train_config=dataclasses.replace(config.train, precision=placement.precision),
        out=out,
        environment=placement.environment,
        precision=placement.precision,  # recorded in train_config too
        tokens_from_cache=all(hits.values()),
        trust_remote_code=config.trust_remote_code,
        progress=config.progress,
    )


def _run_id(ctx: SweepContext, entry: RegisteredMethod, hp: dict, seed: int, stage: str) -> str:
    key = run_key(
        {
            "model": ctx.model_spec.name,
            "dataset": ctx.dataset_name,
            "fingerprint": ctx.data.fingerprint(),
            "method": entry.method.name,
            "source": entry.source,
            "hp": hp,
            "train": ctx.train_config.__dict__,
            "seed": seed,
            "stage": stage,
            "peftbench": __version__,
        }
    )
    prefix = "" if stage == "final" else f"{stage}-"
    return f"{entry.method.name}-{prefix}seed{seed}-{key}"


def _settle(ctx: SweepContext, record: RunRecord) -> RunRecord:
    """Write ``record``; but a failed rerun (``--force``) of a complete run never erases it."""
    path = record_path(ctx.out, record.run_id)
    if record.status != "complete":
        previous = _complete_record(path) if path.exists() else None
        if previous is not None:
            warnings.warn(
                f"the rerun of {record.run_id} {record.status} ({record.error}); its earlier complete "
                "record and adapter are kept",
                RecordWarning,
                stacklevel=2,
            )
            return previous
        shutil.rmtree(ctx.out / ADAPTERS_DIR / record.run_id, ignore_errors=True)  # never usable
    write_record(record, ctx.out)
    return record


def _complete_record(path: Path) -> RunRecord | None:
    try:
        record = read_record(path)
    except (OSError, ValueError, TypeError):
        return None  # unreadable: run it again
    return record if record.status == "complete" else None


def _summary(record) -> str:
    if record.status != "complete":
        return f"{record.status.upper()}: {record.error}"
    m, c = record.metrics, record.costs
    if record.stage == "tune":
        return f"validation accuracy {m['validation_accuracy']:.2%}, {c['train_seconds']:.0f} s training"
    reload = "reload identical" if record.reload.get("predictions_identical") else "RELOAD DIFFERS"
    return (
        f"accuracy {m['accuracy']:.2%}, macro-F1 {m['macro_f1']:.3f}, "
        f"{c['train_seconds']:.0f} s training, {reload}"
    )


def _printer(enabled: bool):
    def say(message: str) -> None:
        if enabled:
            print(message, file=sys.stderr, flush=True)

    return say
