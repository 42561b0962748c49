"""A sweep: every requested method x seed, plus the reference rows, on one model and dataset.

Everything that can be checked is checked before any training starts (method names,
hyper-parameters, seeds, output folder, dataset, model), so a typo costs seconds, not a night.
Runs whose complete record already exists are skipped unless ``force`` is set.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftbench import __version__
from peftbench.data import DatasetSpec, load_splits
from peftbench.environment import describe_environment, pick_device
from peftbench.errors import PeftbenchError
from peftbench.leaderboard import Leaderboard
from peftbench.methods.base import TaskInfo
from peftbench.models import load_tokenizer, resolve_model
from peftbench.plugins import MethodRegistry, RegisteredMethod, collect_methods
from peftbench.precision import enable_tf32, resolve_precision
from peftbench.records import RunRecord, read_record, record_path, run_key, write_record
from peftbench.runner import SweepContext, execute_run
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
    device = pick_device(config.device)
    enable_tf32(device)
    ctx = _build_context(config, out, device)
    ctx.fresh_model(seeds[0])  # a model that cannot load is an error now, not one failed record per run
    say = _printer(config.progress)
    grids = {
        e.method.name: tuning_grid(e.method, config.hp.get(e.method.name)) if config.tune else {}
        for e, _ in plan
    }
    total = sum(len(seeds) + len(candidates(grids[e.method.name])) for e, _ in plan)
    say(
        f"peftbench: {config.model} on {config.dataset} ({ctx.data.source}), {total} runs on {device} "
        f"({ctx.precision})"
    )
    for note in ctx.data.notes:
        say(f"  note: {note}")
    say(f"  tokens: {'read from the cache' if ctx.tokens_from_cache else 'tokenised and cached'}")
    counter = iter(range(1, total + 1))
    for entry, hp in plan:
        overrides = config.hp.get(entry.method.name, {})
        tuning = None
        if grids[entry.method.name]:
            tried = []
            for combo in candidates(grids[entry.method.name]):
                candidate = entry.method.hyperparameters({**overrides, **combo})
                label = f"[{next(counter)}/{total}] {entry.method.name} tuning {_describe(combo)}"
                tried.append(_run_or_skip(ctx, entry, candidate, seeds[0], "tune", label, say, config.force))
            tuning = select_configuration(tried, grids[entry.method.name])
            hp = entry.method.hyperparameters({**overrides, **tuning["chosen"]})
            choice = (
                f"chose {_describe(tuning['chosen'])} on validation accuracy"
                if tuning["chosen"]
                else tuning["note"]
            )
            say(f"  {entry.method.name}: {choice}")
        for seed in seeds:
            label = f"[{next(counter)}/{total}] {entry.method.name} seed {seed}"
            _run_or_skip(ctx, entry, hp, seed, "final", label, say, config.force, tuning)
    return Leaderboard.from_dir(out)


def _run_or_skip(ctx, entry, hp, seed, stage, label, say, force, tuning=None) -> RunRecord:
    run_id = _run_id(ctx, entry, hp, seed, stage)
    path = record_path(ctx.out, run_id)
    if not force and path.exists():
        existing = _complete_record(path)
        if existing is not None:
            say(f"{label}: skipped, complete record exists ({path.name})")
            return existing
    record = execute_run(ctx, entry, hp, seed, run_id, stage=stage, tuning=tuning)
    write_record(record, ctx.out)
    say(f"{label}: {_summary(record)}")
    return record


def _describe(values: dict) -> str:
    return ", ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in values.items()
    )


def _build_context(config: SweepConfig, out: Path, device) -> SweepContext:
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
        device=device,
        train_config=dataclasses.replace(
            config.train, precision=resolve_precision(config.train.precision, device)
        ),
        out=out,
        environment=describe_environment(device),
        precision=resolve_precision(config.train.precision, device),  # recorded in train_config too
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
