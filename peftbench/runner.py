"""One run, start to finish: prepare, train, evaluate, save, reload, check, record.

The same function runs the baseline, the built-ins and every plugin method; it only ever calls
the ``Method`` interface, and a run that breaks becomes a ``failed``/``diverged`` record instead
of ending the sweep.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peftbench.batching import TokenizedSplit
from peftbench.costs import model_flops_utilisation, peak_memory_mb, reset_peak_memory
from peftbench.data import LabelledSplits
from peftbench.errors import PeftbenchError
from peftbench.evaluation import EvalResult, evaluate_model
from peftbench.methods.base import TaskInfo
from peftbench.models import ModelSpec, load_model
from peftbench.plugins import RegisteredMethod
from peftbench.precision import apply_precision
from peftbench.records import ADAPTERS_DIR, RunRecord
from peftbench.train import TrainConfig, TrainingDiverged, train


@dataclass
class SweepContext:
    """Everything shared by the runs of one sweep, loaded and tokenised once."""

    model_name: str
    model_spec: ModelSpec
    dataset_name: str
    data: LabelledSplits
    train: TokenizedSplit
    validation: TokenizedSplit
    test: TokenizedSplit
    task: TaskInfo
    pad_id: int
    device: torch.device
    train_config: TrainConfig
    out: Path
    environment: dict[str, Any]
    precision: str = "fp32"  # resolved: "fp32" or "bf16"
    tokens_from_cache: bool = False
    trust_remote_code: bool = False
    progress: bool = True

    def fresh_model(self, seed: int) -> torch.nn.Module:
        return load_model(self.model_spec, self.data.label_names, seed, self.pad_id, self.trust_remote_code)

    def evaluate(self, model: torch.nn.Module, split: TokenizedSplit) -> EvalResult:
        cfg = self.train_config
        return evaluate_model(
            model, split, self.task.num_labels, cfg.eval_batch_size, self.device, self.pad_id, self.precision
        )

    def place(self, model: torch.nn.Module, trained: set[str]) -> torch.nn.Module:
        """Apply the precision policy and move to the device, the same for trained and reloaded.

        ``trained`` names the parameters that train (and stay fp32); a reloaded model is often
        fully frozen, so the names come from the model that was trained.
        """
        return apply_precision(model, self.precision, keep_fp32=trained).to(self.device)


def execute_run(
    ctx: SweepContext,
    entry: RegisteredMethod,
    hp: dict[str, Any],
    seed: int,
    run_id: str,
    stage: str = "final",
    tuning: dict[str, Any] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> RunRecord:
    """Run ``entry.method`` once; never raises for a failure inside the run (KeyboardInterrupt aside).

    A ``tune`` run is scored on validation only and keeps no adapter; a ``final`` run is scored on
    validation and test, saved, reloaded and checked. ``on_phase`` hears each phase as it starts,
    so whoever watches a run that dies outright (its process killed) can still say in which phase.
    """
    record = new_record(ctx, entry, hp, seed, run_id, stage, tuning)
    adapter_dir = ctx.out / ADAPTERS_DIR / run_id
    # Saved and reloaded here first, moved into place only once the run is complete: a run that
    # fails (or is killed) while saving never touches the adapter of an earlier complete run.
    staging = ctx.out / ADAPTERS_DIR / f".staging-{run_id}"
    test = again = None
    phase = _enter("prepare", on_phase)
    try:
        base = ctx.fresh_model(seed)
        # The base model is the same for every seed; what the method adds (LoRA's A, a prefix,
        # prompt embeddings) is initialised from the global generator, so it must follow the seed.
        torch.manual_seed(seed)
        model = entry.method.prepare(base, ctx.task, hp)
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        model = ctx.place(model, trained)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        reset_peak_memory(ctx.device)
        phase = _enter("train", on_phase)
        stats = train(
            model, ctx.train, hp, ctx.train_config, seed, ctx.device, ctx.pad_id, ctx.precision, ctx.progress
        )
        phase = _enter("evaluate", on_phase)
        validation = ctx.evaluate(model, ctx.validation)
        if stage == "final":  # tuning runs never touch test, so selection cannot depend on it
            test = ctx.evaluate(model, ctx.test)
        peak_memory = peak_memory_mb(ctx.device)
        if stage == "final":
            phase = _enter("save", on_phase)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            entry.method.save(model, staging)
            del model
            phase = _enter("reload", on_phase)
            refuse_pickles(staging)
            reloaded = ctx.place(entry.method.load(ctx.fresh_model(seed), staging, ctx.task, hp), trained)
            again = ctx.evaluate(reloaded, ctx.test)
    except TrainingDiverged as error:
        return _finish(record, "diverged", f"{error}", phase, staging)
    except Exception as error:  # isolate the failure: the sweep goes on with the other runs
        return _finish(record, "failed", f"{type(error).__name__}: {error}", phase, staging)
    record.metrics = {
        "validation_accuracy": validation.accuracy,
        "validation_macro_f1": validation.macro_f1,
        "validation_loss": validation.loss,
        "final_train_loss": stats.loss_history[-1][1] if stats.loss_history else float("nan"),
    }
    record.costs = {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total if total else 0.0,
        "train_steps": stats.steps,
        "train_seconds": stats.seconds,
        "train_samples_per_second": stats.samples_per_second,
        "train_tokens_per_second": stats.tokens_per_second,
        "padding_efficiency": stats.padding_efficiency,
        "model_flops_utilisation": model_flops_utilisation(
            stats.tokens_per_second, total, trainable, ctx.device
        ),
        "peak_memory_mb": peak_memory,
    }
    if test is not None:
        record.metrics.update(accuracy=test.accuracy, macro_f1=test.macro_f1, loss=test.loss)
        record.costs["eval_seconds"] = test.seconds
        record.costs["adapter_bytes"] = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        record.reload = {
            "predictions_identical": bool(np.array_equal(test.predictions, again.predictions)),
            "max_abs_logit_difference": float(np.abs(test.logits - again.logits).max()),
        }
        record.predictions = test.predictions.tolist()
        record.references = ctx.test.labels.tolist()
        record.adapter_path = str(adapter_dir.relative_to(ctx.out))
        shutil.rmtree(adapter_dir, ignore_errors=True)
        staging.rename(adapter_dir)
    record.status = "complete"
    record.finished_at = _now()
    return record


def new_record(
    ctx: SweepContext,
    entry: RegisteredMethod,
    hp: dict[str, Any],
    seed: int,
    run_id: str,
    stage: str = "final",
    tuning: dict[str, Any] | None = None,
) -> RunRecord:
    """The record of a run before it has any result (status ``failed`` until it completes)."""
    return RunRecord(
        run_id=run_id,
        status="failed",
        model=ctx.model_name,
        dataset=ctx.dataset_name,
        method=entry.method.name,
        seed=seed,
        method_source=entry.source,
        role=entry.method.role,
        stage=stage,
        tuning=tuning,
        dataset_fingerprint=ctx.data.fingerprint(),
        label_names=list(ctx.data.label_names),
        hyperparameters=dict(hp),
        train_config=asdict(ctx.train_config),
        environment=ctx.environment,
        notes=list(ctx.data.notes),
        started_at=_now(),
    )


def lost_record(
    ctx: SweepContext,
    entry: RegisteredMethod,
    hp: dict[str, Any],
    seed: int,
    run_id: str,
    stage: str,
    tuning: dict[str, Any] | None,
    message: str,
    phase: str,
) -> RunRecord:
    """A ``failed`` record made for a run that could not report one itself (its worker died)."""
    record = new_record(ctx, entry, hp, seed, run_id, stage, tuning)
    return _finish(record, "failed", message, phase, ctx.out / ADAPTERS_DIR / run_id)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickles(directory: Path) -> None:
    """Adapters are safetensors only: loading a pickle from a results folder can run code."""
    pickles = [p.name for p in directory.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise PeftbenchError(
            f"{directory} holds pickle files ({', '.join(sorted(pickles))}); peftbench loads safetensors only"
        )


def _finish(record: RunRecord, status: str, message: str, phase: str, staging: Path) -> RunRecord:
    record.status = status
    record.error = f"{message} (during {phase})"
    record.finished_at = _now()
    shutil.rmtree(staging, ignore_errors=True)  # a half-saved adapter must not look usable
    return record


def _enter(phase: str, on_phase: Callable[[str], None] | None) -> str:
    if on_phase is not None:
        on_phase(phase)
    return phase


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
