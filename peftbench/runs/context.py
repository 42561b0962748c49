"""What the runs of one sweep share: the data (tokenised once) and its kind of task, the base model
(read once), the device and precision.

Built once per dataset of a sweep, when its turn comes, and handed to every run on it (to a Ray
worker through the object store), so no run re-reads or re-tokenises anything: each run trains a
copy of the base model the context holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from peftbench.batching import TokenizedSplit
from peftbench.data import DatasetSpec, LabelledSplits, dataset_label, load_splits
from peftbench.errors import PeftbenchError
from peftbench.evaluation import EvalResult, evaluate_model
from peftbench.methods.base import TaskInfo, TrainingPlan
from peftbench.models import (
    ModelSpec,
    load_base_model,
    load_tokenizer,
    position_limit,
    resolve_model,
    seeded_copy,
)
from peftbench.precision import apply_precision
from peftbench.runs.features import FrozenFeatures, compute_features
from peftbench.runs.selection import Criterion
from peftbench.settings import SweepConfig, TrainConfig
from peftbench.tasks.base import Task
from peftbench.tasks.registry import collect_tasks
from peftbench.token_cache import cached_tokenize, tokenizer_fingerprint
from peftbench.train import steps_per_epoch, total_steps


@dataclass(frozen=True)
class Placement:
    """Where runs execute, resolved before the run ids are (the precision is part of them)."""

    device: torch.device
    precision: str  # resolved: "fp32" or "bf16"
    environment: dict[str, Any] = field(default_factory=dict)
    description: str | None = None  # a progress line saying where runs go; None for local


@dataclass
class SweepContext:
    """Everything shared by the runs of one sweep on one dataset, loaded and tokenised once."""

    model_name: str
    model_spec: ModelSpec
    dataset_name: str
    data: LabelledSplits
    dataset_fingerprint: str  # of every text and label: hashed once, named in every record and run id
    train: TokenizedSplit
    validation: TokenizedSplit
    test: TokenizedSplit
    task: TaskInfo
    pad_id: int
    base_model: torch.nn.Module = field(repr=False)  # fp32, on the CPU; never handed out, only copies
    device: torch.device
    train_config: TrainConfig  # its precision resolved: "fp32" or "bf16"
    environment: dict[str, Any]
    tokens_from_cache: bool = False
    trust_remote_code: bool = False
    progress: bool = True
    curve_points: int = 0  # validation evaluations per run for its learning curve (SweepConfig's)
    measure_inference: bool = True  # time final runs at inference (peftbench.inference_cost)
    seconds: dict[str, float] = field(default_factory=dict)  # building it: "load model", "tokenise"
    parameter_count: int = 0  # the base model's, before any method adds to it
    #: The frozen model's features for methods that train on them (``runs.features``), once computed.
    features: FrozenFeatures | None = field(default=None, repr=False)

    @property
    def precision(self) -> str:
        return self.train_config.precision

    @property
    def kind(self) -> Task:
        """The kind of task, its primary metric chosen: ``kind.primary_metric``,
        ``kind.higher_is_better``, ``kind.loss`` (what training minimises)."""
        return self.data.task

    @property
    def criterion(self) -> Criterion:
        """What a choice on validation scores by: the task's primary metric, in its direction."""
        return Criterion(self.kind.primary_metric, self.kind.higher_is_better)

    def fresh_model(self, seed: int) -> torch.nn.Module:
        """What ``load_model`` returns for ``seed``, copied from the base read once per sweep."""
        return seeded_copy(self.base_model, seed)

    def frozen_features(self, computed_by: str) -> FrozenFeatures:
        """The features methods that train on the frozen model's features share: the sweep's, or
        else computed now (``computed_by`` names who pays for them) and kept for later runs."""
        if self.features is None:
            self.features = compute_features(self, computed_by)
        return self.features

    def evaluate(self, model: torch.nn.Module, split: TokenizedSplit) -> EvalResult:
        return evaluate_model(
            model,
            split,
            self.kind,
            self.data.label_names,
            self.train_config.eval_batch_size,
            self.device,
            self.pad_id,
            self.precision,
        )

    def place(self, model: torch.nn.Module, trained: set[str]) -> torch.nn.Module:
        """Apply the precision policy and move to the device, the same for trained and reloaded.

        ``trained`` names the parameters that train (and stay fp32); a reloaded model is often
        fully frozen, so the names come from the model that was trained.
        """
        return apply_precision(model, self.precision, keep_fp32=trained).to(self.device)


def _load_base(spec: ModelSpec, data: LabelledSplits, pad_id: int, config: SweepConfig) -> torch.nn.Module:
    """Load the model once, before anything is tokenised: a model that cannot load, or cannot
    take ``max_length`` tokens, is one clear error now instead of one failed record per run."""
    model = load_base_model(spec, data.label_names, pad_id, config.trust_remote_code, data.num_labels)
    limit, asked = position_limit(model), config.train.max_length
    if limit is not None and asked > limit:
        raise PeftbenchError(
            f"--max-length {asked} is more than model '{config.model}' takes: it has {limit} "
            f"positions; use --max-length {limit} or less"
        )
    return model


def load_datasets(config: SweepConfig) -> dict[str, LabelledSplits]:
    """Every dataset of the sweep, loaded and checked in order before anything trains (its kind of
    task and ``--metric`` too), so a typo in the last one costs seconds, not the training of the
    ones before it."""
    tasks = collect_tasks()
    return {name: _load(config, name, tasks) for name in config.dataset}


def _load(config: SweepConfig, name: str, tasks=None) -> LabelledSplits:
    spec = DatasetSpec(
        name, config.dataset_config, config.text_column, config.label_column, task=config.task,
        metric=config.metric, train_examples=config.train_examples,
    )  # fmt: skip
    return load_splits(spec, tasks)


def build_context(
    config: SweepConfig, placement: Placement, dataset: str | None = None, data: LabelledSplits | None = None
) -> SweepContext:
    """Load the tokenizer, tokenise every split of ``dataset`` (default: the sweep's first; its
    splits loaded unless given as ``data``) or read the cache, once."""
    dataset = dataset or config.dataset[0]
    data = data or _load(config, dataset)
    started = time.perf_counter()
    spec = resolve_model(config.model)
    tokenizer = load_tokenizer(spec, config.trust_remote_code)
    base_model = _load_base(spec, data, tokenizer.pad_token_id, config)
    loaded = time.perf_counter()
    parameter_count = sum(p.numel() for p in base_model.parameters())
    tokenizer_key = tokenizer_fingerprint(tokenizer)
    tokenized, hits = {}, {}
    for name in ("train", "validation", "test"):
        tokenized[name], hits[name] = cached_tokenize(
            tokenizer, getattr(data, name), config.train.max_length, tokenizer_key
        )
    seconds = {"load model": loaded - started, "tokenise": time.perf_counter() - loaded}
    counts = data.task.label_counts(data.train.labels, data.label_names)
    train_config = config.train.model_copy(update={"precision": placement.precision})
    plan = TrainingPlan(
        total_steps=total_steps(len(tokenized["train"]), train_config),
        steps_per_epoch=steps_per_epoch(len(tokenized["train"]), train_config),
        epochs=train_config.epochs,
        batch_size=train_config.batch_size,
        device=str(placement.device),
    )
    return SweepContext(
        model_name=config.model,
        model_spec=spec,
        dataset_name=dataset_label(dataset, config.dataset_config, config.train_examples),
        data=data,
        dataset_fingerprint=data.fingerprint(),
        train=tokenized["train"],
        validation=tokenized["validation"],
        test=tokenized["test"],
        task=TaskInfo(
            data.num_labels,
            data.label_names,
            counts,
            plan,
            data.task.name,
            data.task.constant_outputs(data.train.labels, data.label_names),
        ),  # fmt: skip
        pad_id=tokenizer.pad_token_id,
        base_model=base_model,
        device=placement.device,
        train_config=train_config,
        environment=placement.environment,
        tokens_from_cache=all(hits.values()),
        trust_remote_code=config.trust_remote_code,
        progress=config.progress,
        curve_points=config.curve_points,
        measure_inference=config.measure_inference,
        seconds=seconds,
        parameter_count=parameter_count,
    )
