"""peftbench's engine and Hugging Face ``Trainer`` on the same model, data, method and settings.

Both sides start from the same freshly prepared peft model (same seed), see the same training
split for the same number of epochs with the same batch size, learning rate, warmup, weight decay
and clipping, and are scored by the same peftbench evaluator on the same test split. Evaluation
cost is timed separately: each engine predicts the test split its own way (batch 128), untimed
warm-up aside.

Trainer set-ups:
  notebook  as a typical notebook does it: ``padding="max_length"``, default ``Trainer``;
  best      dynamic padding (``DataCollatorWithPadding``) + length-grouped batches (+ bf16 on GPUs).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
import transformers

from peftbench.batching import TokenizedSplit, tokenize_split
from peftbench.costs import model_flops_utilisation, peak_memory_mb, reset_peak_memory
from peftbench.data import DatasetSpec, TextSplit, load_splits
from peftbench.environment import pick_device
from peftbench.evaluation import evaluate_model
from peftbench.methods.base import TaskInfo
from peftbench.models import load_model, load_tokenizer, resolve_model
from peftbench.plugins import collect_methods
from peftbench.precision import apply_precision, enable_tf32, resolve_precision
from peftbench.settings import TrainConfig
from peftbench.train import train


@dataclass
class BenchSetup:
    model: str = "minilm"
    dataset: str = "rotten_tomatoes"
    method: str = "lora"
    epochs: float = 1.0
    batch_size: int = 32
    max_length: int = 128
    train_samples: int | None = None  # None: the whole training split
    seed: int = 0
    device: str | None = None
    precision: str = "auto"  # peftbench's side; Trainer's follows its set-up
    compile: bool = False  # peftbench's side: torch.compile (static shape buckets)
    hp: dict = field(default_factory=dict)


@dataclass
class BenchResult:
    engine: str
    train_seconds: float
    samples_per_second: float
    tokens_per_second: float
    accuracy: float
    peak_memory_mb: float
    mfu: float | None
    eval_seconds: float  # predicting the test split the engine's own way


class BenchData:
    """Data, tokenizer and method loaded once and shared by every engine."""

    def __init__(self, setup: BenchSetup) -> None:
        self.setup = setup
        self.device = pick_device(setup.device)
        enable_tf32(self.device)
        self.splits = load_splits(DatasetSpec(setup.dataset))
        if setup.train_samples:
            keep = np.random.default_rng(setup.seed).permutation(len(self.splits.train))[
                : setup.train_samples
            ]
            train = self.splits.train
            self.splits.train = TextSplit([train.texts[i] for i in keep], train.labels[keep])
        self.spec = resolve_model(setup.model)
        self.tokenizer = load_tokenizer(self.spec)
        self.train = tokenize_split(self.tokenizer, self.splits.train, setup.max_length)
        self.test = tokenize_split(self.tokenizer, self.splits.test, setup.max_length)
        self.method = collect_methods().get(setup.method).method
        self.hp = self.method.hyperparameters(setup.hp)
        counts = np.bincount(self.splits.train.labels, minlength=self.splits.num_labels)
        self.task = TaskInfo(self.splits.num_labels, self.splits.label_names, tuple(int(c) for c in counts))

    def fresh_prepared_model(self) -> torch.nn.Module:
        base = load_model(self.spec, self.splits.label_names, self.setup.seed, self.tokenizer.pad_token_id)
        return self.method.prepare(base, self.task, self.hp)

    def evaluate(self, model: torch.nn.Module, precision: str):
        pad = self.tokenizer.pad_token_id
        splits = self.splits
        return evaluate_model(
            model, self.test, splits.task, splits.label_names, 128, self.device, pad, precision
        )

    def result(
        self, engine: str, seconds: float, model: torch.nn.Module, accuracy: float, eval_seconds: float
    ) -> BenchResult:
        samples = len(self.train) * self.setup.epochs
        tokens = float(self.train.lengths.sum()) * self.setup.epochs
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return BenchResult(
            engine=engine,
            train_seconds=seconds,
            samples_per_second=samples / seconds,
            tokens_per_second=tokens / seconds,
            accuracy=accuracy,
            peak_memory_mb=peak_memory_mb(self.device),
            mfu=model_flops_utilisation(tokens / seconds, total, trainable, self.device),
            eval_seconds=eval_seconds,
        )


def run_peftbench(data: BenchData) -> BenchResult:
    setup = data.setup
    precision = resolve_precision(setup.precision, data.device)
    model = apply_precision(data.fresh_prepared_model(), precision).to(data.device)
    config = TrainConfig(
        epochs=setup.epochs, batch_size=setup.batch_size, max_length=setup.max_length, precision=precision,
        compile=setup.compile,
    )  # fmt: skip
    reset_peak_memory(data.device)
    stats = train(
        model, data.train, data.hp, config, setup.seed, data.device, data.tokenizer.pad_token_id, False
    )
    name = f"peftbench ({precision}{', compiled' if setup.compile else ''})"
    scored = data.evaluate(model, precision)  # also the warm-up of the timed evaluation
    timed = data.evaluate(model, precision)
    return data.result(name, stats.seconds, model, scored.scores["accuracy"], timed.seconds)


def run_trainer(data: BenchData, style: str) -> BenchResult:
    """``style`` is "notebook" (padding to max length) or "best" (dynamic padding, grouped)."""
    setup, tokenizer = data.setup, data.tokenizer
    bf16 = style == "best" and data.device.type == "cuda"
    model = data.fresh_prepared_model().to(data.device)
    if style == "notebook":
        encoded = tokenizer(
            data.splits.train.texts, truncation=True, max_length=setup.max_length, padding="max_length"
        )
        train_set = datasets.Dataset.from_dict({**encoded, "labels": data.splits.train.labels.tolist()})
        encoded = tokenizer(
            data.splits.test.texts, truncation=True, max_length=setup.max_length, padding="max_length"
        )
        test_set = datasets.Dataset.from_dict({**encoded, "labels": data.splits.test.labels.tolist()})
        collator = None
    else:
        train_set, test_set = _dynamic_dataset(data.train), _dynamic_dataset(data.test)
        collator = transformers.DataCollatorWithPadding(tokenizer)
    with tempfile.TemporaryDirectory() as output_dir:
        args = transformers.TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=setup.batch_size,
            per_device_eval_batch_size=128,
            num_train_epochs=setup.epochs,
            learning_rate=data.hp["learning_rate"],
            weight_decay=data.hp["weight_decay"],
            warmup_steps=data.hp["warmup_ratio"],
            max_grad_norm=1.0,
            lr_scheduler_type="linear",
            seed=setup.seed,
            save_strategy="no",
            report_to="none",
            logging_steps=50,
            disable_tqdm=True,
            use_cpu=data.device.type == "cpu",
            bf16=bf16,
            train_sampling_strategy="group_by_length" if style == "best" else "random",
        )
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=train_set, data_collator=collator
        )
        reset_peak_memory(data.device)
        start = time.perf_counter()
        trainer.train()
        if data.device.type == "cuda":
            torch.cuda.synchronize(data.device)
        seconds = time.perf_counter() - start
        trainer.predict(test_set)  # warm-up
        start = time.perf_counter()
        trainer.predict(test_set)
        eval_seconds = time.perf_counter() - start
    precision = "bf16" if bf16 else "fp32"
    accuracy = data.evaluate(model, precision).scores["accuracy"]
    return data.result(f"Trainer {style}", seconds, model, accuracy, eval_seconds)


def _dynamic_dataset(split: TokenizedSplit) -> datasets.Dataset:
    ids = [row.tolist() for row in split.input_ids]
    return datasets.Dataset.from_dict(
        {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids], "labels": split.labels.tolist()}
    )


RESULTS: dict = {}  # filled by the benchmark tests, printed by conftest at the end of the session

ENGINES = {
    "peftbench": run_peftbench,
    "trainer_notebook": lambda data: run_trainer(data, "notebook"),
    "trainer_best": lambda data: run_trainer(data, "best"),
}


def comparison_table(setup: BenchSetup, results: dict[str, BenchResult], device: str) -> str:
    """Markdown: throughput, accuracy, memory and MFU per engine, with ratios against Trainer."""
    ours = results.get("peftbench")
    lines = [
        f"{setup.model} x {setup.dataset} x {setup.method}, {setup.epochs:g} epoch(s), "
        f"batch {setup.batch_size}, {device}",
        "",
        "| engine | train s | samples/s | tokens/s | test accuracy % | peak MB | MFU | peftbench speed-up "
        "| eval s (test) | peftbench eval speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results.values():
        ratio = f"{ours.samples_per_second / result.samples_per_second:.2f}x" if ours else ""
        eval_ratio = f"{result.eval_seconds / ours.eval_seconds:.2f}x" if ours else ""
        mfu = "" if result.mfu is None else f"{100 * result.mfu:.1f}%"
        lines.append(
            f"| {result.engine} | {result.train_seconds:.1f} | {result.samples_per_second:.1f} | "
            f"{result.tokens_per_second:.0f} | {100 * result.accuracy:.2f} | {result.peak_memory_mb:.0f} | "
            f"{mfu} | {ratio} | {result.eval_seconds:.2f} | {eval_ratio} |"
        )
    return "\n".join(lines)
