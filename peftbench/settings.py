"""Every sweep and training setting, declared once: its type, default, bounds and help.

``peftbench run``'s options, ``peftbench.run(**settings)``, their validation and what a record
stores as ``train_config`` are all derived from the two models below, so a new setting is one
field. ``TrainConfig`` holds what decides a run's result (recorded in every record and part of
its run id); ``SweepConfig`` says what to run, on what, and where the results go.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from peftbench.budget import Budget, parse_budget
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.setting_values import dataset_names, method_names, parse_hp_overrides, seed_list
from peftbench.validation import Real, Refusal, Whole, range_hint, refusal, type_words

#: More epochs than this is a typo (``--epochs 1e9`` would plan a billion epochs of batches).
MAX_EPOCHS = 1000
#: Numeric precision of a run (``peftbench.precision`` applies it): auto picks bf16 where native.
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def cli(
    flag: str | None = None, metavar: str | None = None, repeat: bool = False, help: str | None = None
) -> dict[str, Any]:
    """How a setting appears on the command line when not as ``--its-name VALUE``; a flag that
    turns a setting off (``--quiet``) has its own ``help``."""
    return {"cli": {"flag": flag, "metavar": metavar, "repeat": repeat, "help": help}}


class _Settings(BaseModel):
    """Settings refuse a bad value in one line for people (``PeftbenchError``), however built."""

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as error:
            raise PeftbenchError(_words(refusal(cls, error), cls is TrainConfig)) from None


class TrainConfig(_Settings):
    """Training settings shared by every run of a sweep, recorded in each record and its run id.

    Per-method settings (learning rate, rank, ...) are hyper-parameters, not training settings.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", allow_inf_nan=False)

    epochs: Real = Field(
        3.0,
        gt=0,
        le=MAX_EPOCHS,
        description="the most passes over the training split a run trains (a fraction trains part of one); "
        "the kept model is its best checkpoint on validation",
    )
    batch_size: Whole = Field(32, ge=1, description="training examples per optimiser step")
    eval_batch_size: Whole = Field(128, ge=1, description="examples per evaluation batch")
    max_length: Whole = Field(128, ge=2, description="tokens per example after truncation")
    max_grad_norm: Real = Field(1.0, gt=0, description="gradient-clipping norm")
    max_steps: Whole | None = Field(
        None, ge=1, description="cap on optimiser steps (with --epochs, the lower one is the maximum)"
    )
    checkpoints: Whole = Field(
        8,
        ge=1,
        description="validation evaluations per run, evenly spaced over the maximum, the last at its end: "
        "the kept model is the best of them (1: the end of training, as before 0.4)",
    )
    patience: Whole | None = Field(
        None, ge=1, description="stop a run after this many checkpoints without improvement (default: never)"
    )
    log_every: Whole = Field(10, ge=1, description="optimiser steps between loss readings (and NaN checks)")
    precision: Precision = Field("auto", description="auto: bf16 where the device runs it natively")
    compile: bool = Field(False, description="torch.compile the model (pays off on GPUs, for long runs)")


#: Training settings added after records existed, with the value that means what runs did before them:
#: left out of run ids and configuration keys at that value, so earlier run ids stay what they were.
NEUTRAL = {"checkpoints": 1, "patience": None}


def train_identity(train: dict[str, Any]) -> dict[str, Any]:
    """The training settings as run ids and configuration keys hash them (``NEUTRAL`` values left out)."""
    return {key: value for key, value in train.items() if key not in NEUTRAL or NEUTRAL[key] != value}


class SweepConfig(_Settings):
    """What a sweep runs (model, data, methods, seeds), how it is trained, and where results go."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = Field(
        "gpt2",
        description="Hub id, local folder or alias (minilm, tiny-gpt2, tiny-bert, tiny-llama, gpt2-random)",
    )
    dataset: Annotated[tuple[str, ...], BeforeValidator(dataset_names)] = Field(
        ("rotten_tomatoes",),
        description="Hub id, mirror name, folder or file; comma-separated for several, run in turn",
    )
    dataset_config: str | None = Field(
        None, description="dataset configuration, e.g. sst2 for glue (one dataset only)"
    )
    methods: Annotated[tuple[str, ...], BeforeValidator(method_names)] = Field(
        ("lora",), description="comma-separated method names"
    )
    seeds: Annotated[tuple[int, ...], BeforeValidator(seed_list)] = Field(
        (0,), description="comma-separated integer seeds"
    )
    num_seeds: Whole | None = Field(
        None, ge=1, strict=True, description="use seeds 0..N-1 (instead of --seeds)"
    )
    tune: bool = Field(False, description="pick hyper-parameters on validation, then test every seed")
    search: str = Field(
        "halving",
        description="how --tune searches: halving (successive halving: every candidate trains a first "
        "share of the maximum, the best 1/eta continue, until one remains) or grid (every candidate to the "
        "maximum)",
    )
    tune_seeds: Whole = Field(
        3,
        ge=1,
        strict=True,
        description="seeds a candidate's validation score is the mean over (halving: in the round that "
        "decides, earlier rounds use the first); the sweep's seeds first, then 0, 1, ... not among them",
    )
    eta: Whole = Field(
        2, ge=2, strict=True, description="successive halving keeps the best 1/eta each round (rounded down)"
    )
    first_share: Real = Field(
        0.25,
        gt=0,
        le=1,
        description="share of the maximum every candidate trains in successive halving's first round "
        "(rounded up to a checkpoint)",
    )
    extension_limit: Whole = Field(
        3,
        ge=0,
        strict=True,
        description="values --tune may add beyond each numeric key's search range when the best is at its "
        "edge (same spacing, within the key's bounds)",
    )
    hp: Annotated[dict[str, dict[str, Any]], BeforeValidator(parse_hp_overrides)] = Field(
        default_factory=dict,
        description="hyper-parameter override, repeatable, e.g. --hp lora.r=16",
        json_schema_extra=cli(metavar="METHOD.KEY=VALUE", repeat=True),
    )
    budget: Annotated[Budget | None, BeforeValidator(parse_budget)] = Field(
        None,
        description="size every method to this many trainable parameters: a count (70000, 70k, 1.2M) "
        "or a share of the model's (0.3%)",
    )
    text_column: str | None = Field(
        None,
        description="the text column of each dataset, or two for a text pair, e.g. premise,hypothesis "
        "(default: detected; sentence1/sentence2, premise/hypothesis, question/sentence and "
        "question1/question2 are pairs)",
    )
    label_column: str | None = Field(None, description="the label column of each dataset (default: detected)")
    train_examples: Whole | None = Field(
        None,
        ge=1,
        strict=True,
        description="train on a fixed random subset of this many training examples, drawn once with seed 0 "
        "(the same for every method and seed; validation and test untouched; the dataset is named "
        "NAME[train=N]), e.g. 2000 for the low-resource regime (default: the whole training split)",
    )
    task: str | None = Field(
        None,
        description="the kind of task: classification, pair_classification, regression or a plugin's "
        "(default: detected from the label column and the text columns; peftbench tasks lists them)",
    )
    metric: str | None = Field(
        None,
        description="the primary metric, which ranks, tunes and names every table: accuracy, macro_f1, "
        "f1, mcc for classification; spearman, pearson, mse for regression (default: the task's; "
        "accuracy, spearman)",
    )
    device: str | None = Field(None, description="cpu, cuda or cuda:N (default: cuda if present)")
    out: Path = Field(Path("runs"), description="results folder (records/ and adapters/)")
    force: bool = Field(False, description="rerun runs that already have a complete record")
    references: bool = Field(
        True,
        description="also run the reference rows (untuned baseline, majority class, head only)",
        json_schema_extra=cli(flag="--no-references", help="skip the reference rows"),
    )
    trust_remote_code: bool = Field(False, description="allow model code from the Hub")
    progress: bool = Field(
        True, description="print progress", json_schema_extra=cli(flag="--quiet", help="no progress output")
    )
    curve_points: Whole = Field(
        0,
        ge=0,
        strict=True,
        description="extra validation evaluations per run for its learning curve only, evenly spaced "
        "(the checkpoints' evaluations are always on it, and the training loss)",
    )
    measure_inference: bool = Field(
        True,
        description="time every final run at inference: latency at batch 1, throughput at batch 64, "
        "merged too where the method can merge (a few seconds per run; results do not change)",
        json_schema_extra=cli(flag="--no-inference-timing", help="skip timing final runs at inference"),
    )
    executor: str = Field("local", description="local (this process) or ray (a Ray task per run)")
    ray_address: str | None = Field(
        None, description="Ray cluster to join (default: $RAY_ADDRESS, else start one)"
    )
    runs_per_device: Whole | None = Field(
        None,
        ge=1,
        strict=True,
        description="runs that execute at the same time on each device (default: chosen from the "
        "model's size and the free memory; 1 on the CPU)",
    )
    claim_timeout: Real = Field(
        600.0,
        gt=0,
        description="seconds a run claimed by a sweep on another host may go without its heartbeat before "
        "another sweep takes it over (a sweep gone from this host is taken over at once); the same for "
        "every sweep writing one --out",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="the training settings")

    @model_validator(mode="before")
    @classmethod
    def _count_seeds(cls, data: Any) -> Any:
        """``num_seeds=N`` means seeds 0..N-1; giving both is a mistake, not a choice."""
        if not isinstance(data, dict) or data.get("num_seeds") is None:
            return data
        if "seeds" in data:
            raise PeftbenchError("--seeds and --num-seeds are mutually exclusive: pass one of them")
        count = data["num_seeds"]
        if isinstance(count, numbers.Integral) and not isinstance(count, bool) and count >= 1:
            data = {**data, "seeds": range(count)}
        return data

    @model_validator(mode="after")
    def _known_search(self) -> SweepConfig:
        from peftbench.runs.search import strategy_names

        if self.search not in strategy_names():
            raise UnknownNameError(
                f"unknown search '{self.search}'; known searches: {', '.join(strategy_names())}"
            )
        return self

    @model_validator(mode="after")
    def _one_dataset_config(self) -> SweepConfig:
        """A configuration names a variant of one dataset (glue's sst2), so it cannot apply to several."""
        if self.dataset_config is not None and len(self.dataset) > 1:
            raise PeftbenchError(
                f"--dataset-config applies to one dataset, not to {len(self.dataset)}: run a dataset "
                "that needs a configuration in its own sweep (into the same --out)"
            )
        return self


def setting_fields() -> dict[str, FieldInfo]:
    """Every setting by name, flat: the sweep's, then the training ones (as the CLI lists them)."""
    sweep = {name: field for name, field in SweepConfig.model_fields.items() if name != "train"}
    return {**sweep, **TrainConfig.model_fields}


def sweep_config(**settings: Any) -> SweepConfig:
    """A ``SweepConfig`` from flat settings, as ``peftbench.run`` and ``peftbench run`` take them."""
    known = setting_fields()
    for name in settings:
        if name not in known:
            raise UnknownNameError(f"unknown setting '{name}'; known settings: {', '.join(known)}")
    train = {name: value for name, value in settings.items() if name in TrainConfig.model_fields}
    sweep = {name: value for name, value in settings.items() if name not in train}
    return SweepConfig(**sweep, train=TrainConfig(**train))


def _words(refused: Refusal, training: bool) -> str:
    """One line saying which setting was refused, what it was given and what to give instead."""
    name, value, field = refused.name, refused.value, refused.field
    if refused.choices:
        known = ", ".join(str(choice) for choice in refused.choices)
        return f"unknown {name} {value!r}; known {name}s: {known}"
    shown = f"{'training setting' if training else 'setting'} {name}={value!r}"
    if refused.out_of_range or refused.not_finite:
        return f"{shown} is out of range: {range_hint(field)}"
    if refused.kind.startswith("bool"):
        return f"{shown} must be true or false"
    if refused.kind.endswith(("_type", "_parsing", "_from_float")):
        return f"{shown} must be {type_words(field)}: {range_hint(field)}"
    return f"{shown}: {refused.message}"
