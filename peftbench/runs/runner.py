"""One run, start to finish: prepare, train, evaluate, save, reload, check, time inference, record.

The same function runs the baseline, the built-ins and every plugin method; it only ever calls
the ``Method`` interface, and a run that breaks becomes a ``failed``/``diverged`` record instead
of ending the sweep. Where the saved adapter ends up is the results store's business: the run
only writes into the folder it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from peftbench.costs import model_flops_utilisation, peak_memory_mb, reset_peak_memory
from peftbench.errors import PeftbenchError
from peftbench.evaluation import EvalResult
from peftbench.inference_cost import inference_costs
from peftbench.records import RunRecord, now
from peftbench.runs.context import SweepContext
from peftbench.runs.curves import ValidationCurve
from peftbench.runs.spec import RunSpec, new_record
from peftbench.train import StepHooks, TrainingDiverged, TrainStats, train

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def execute_run(
    ctx: SweepContext,
    spec: RunSpec,
    adapter_dir: Path,
    on_phase: Callable[[str], None] | None = None,
) -> RunRecord:
    """Run ``spec`` once; never raises for anything that goes wrong (KeyboardInterrupt aside).

    A ``tune`` run is scored on validation only and saves nothing; a ``final`` run is scored on
    validation and test, saved into ``adapter_dir`` (created here), reloaded onto a fresh base
    model and checked, then timed at inference (unless the sweep says not to). ``on_phase``
    hears each phase as it starts, so whoever watches a run that dies outright (its process
    killed) can still say in which phase. A complete record says how long each phase took
    (``<phase>_seconds`` in its costs; training's own figure is ``train_seconds``).
    """
    record = new_record(ctx, spec)
    phases = Phases(on_phase)
    try:
        phases.enter("prepare")
        base = ctx.fresh_model(spec.seed)
        # The base model is the same for every seed; what the method adds (LoRA's A, a prefix,
        # prompt embeddings) is initialised from the global generator, so it must follow the seed.
        torch.manual_seed(spec.seed)
        model = spec.method.prepare(base, ctx.task, spec.hp)
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        model = ctx.place(model, trained)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        reset_peak_memory(ctx.device)
        phases.enter("train")
        hooks = _step_hooks(spec, model)
        config, seed, curve = ctx.train_config, spec.seed, ValidationCurve(ctx.curve_points)
        stats = train(
            model, ctx.train, spec.hp, config, seed, ctx.device, ctx.pad_id, ctx.progress, hooks,
            curve.checkpoints(ctx, model), objective=ctx.kind.loss,
        )  # fmt: skip
        phases.enter("evaluate")
        validation = _finite(ctx.evaluate(model, ctx.validation), "validation")
        # Tuning runs never touch test, so the choice among them cannot depend on it.
        test = _finite(ctx.evaluate(model, ctx.test), "test") if spec.stage == "final" else None
        record.metrics = _metrics(validation, test, stats)
        record.costs = _costs(stats, trainable, total, ctx.device, test)
        record.curves = curve.curves(stats, validation)
        if test is not None:
            phases.enter("save")
            adapter_dir.mkdir(parents=True)
            spec.method.save(model, adapter_dir)
            del model
            record.costs["adapter_bytes"] = sum(
                f.stat().st_size for f in adapter_dir.rglob("*") if f.is_file()
            )
            phases.enter("reload")
            refuse_pickles(adapter_dir)
            base = ctx.fresh_model(spec.seed)
            torch.manual_seed(spec.seed)  # as before prepare: anything load draws at random is the same
            start = time.perf_counter()  # the adapter onto a base model in memory, as inference_cost says
            reloaded = spec.method.load(base, adapter_dir, ctx.task, spec.hp)
            record.costs["adapter_load_seconds"] = time.perf_counter() - start
            reloaded = ctx.place(reloaded, trained)
            again = ctx.evaluate(reloaded, ctx.test)
            record.reload = {
                "predictions_identical": bool(np.array_equal(test.predictions, again.predictions)),
                "max_abs_logit_difference": float(np.abs(test.logits - again.logits).max()),
            }
            record.predictions = test.predictions.tolist()
            record.references = ctx.test.labels.tolist()
            if ctx.measure_inference:  # after the check: merging may change the reloaded model
                phases.enter("inference")
                merge = spec.method.merge
                record.costs.update(
                    inference_costs(reloaded, merge, ctx.test, ctx.device, ctx.pad_id, ctx.precision)
                )
            del reloaded
    except TrainingDiverged as error:
        return record.fail("diverged", str(error), phases.current)
    except Exception as error:  # isolate the failure: the sweep goes on with the other runs
        return record.fail("failed", f"{type(error).__name__}: {error}", phases.current)
    record.costs.update(phases.seconds())
    record.status = "complete"
    record.finished_at = now()
    return record


def _step_hooks(spec: RunSpec, model: torch.nn.Module) -> StepHooks:
    """The method's training hooks, bound to the model it trains; only those it defines."""
    method = spec.method
    return StepHooks(
        extra_loss=(lambda: method.extra_loss(model)) if method.defines("extra_loss") else None,
        after_step=(lambda step: method.after_step(model, step)) if method.defines("after_step") else None,
    )


def _metrics(validation: EvalResult, test: EvalResult | None, stats: TrainStats) -> dict[str, float]:
    """Every metric of the task on validation (``validation_<name>``) and, for a final run, on test
    (``<name>``), with the loss on each and the last training loss."""
    metrics = {f"validation_{name}": value for name, value in validation.scores.items()}
    metrics["validation_loss"] = validation.loss
    metrics["final_train_loss"] = stats.loss_history[-1][1] if stats.loss_history else float("nan")
    if test is not None:
        metrics.update(test.scores)
        metrics["loss"] = test.loss
    return metrics


def _costs(
    stats: TrainStats, trainable: int, total: int, device: torch.device, test: EvalResult | None
) -> dict[str, float]:
    costs = {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total if total else 0.0,
        "train_steps": stats.steps,
        "train_seconds": stats.seconds,
        "curve_eval_seconds": stats.checkpoint_seconds,
        "train_samples_per_second": stats.samples_per_second,
        "train_tokens_per_second": stats.tokens_per_second,
        "padding_efficiency": stats.padding_efficiency,
        "model_flops_utilisation": model_flops_utilisation(stats.tokens_per_second, total, trainable, device),
        "peak_memory_mb": peak_memory_mb(device),
    }
    if test is not None:
        costs["eval_seconds"] = test.seconds
    return costs


def refuse_pickles(directory: Path) -> None:
    """Adapters are safetensors only: loading a pickle from a results folder can run code."""
    pickles = [p.name for p in directory.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise PeftbenchError(
            f"{directory} holds pickle files ({', '.join(sorted(pickles))}); peftbench loads safetensors only"
        )


def _finite(result: EvalResult, split: str) -> EvalResult:
    """NaN or infinite logits at evaluation are a diverged model, whatever the loss said."""
    if not np.isfinite(result.logits).all():
        raise TrainingDiverged(f"the model's {split} logits are not finite (NaN or infinite)")
    return result


class Phases:
    """The phase a run is in, told to ``on_phase`` as each starts, and the wall time of each."""

    def __init__(self, on_phase: Callable[[str], None] | None = None) -> None:
        self.on_phase = on_phase
        self.current = "prepare"
        self._started = time.perf_counter()
        self._seconds: dict[str, float] = {}

    def enter(self, phase: str) -> None:
        self._close()
        self.current, self._started = phase, time.perf_counter()
        if self.on_phase is not None:
            self.on_phase(phase)

    def seconds(self) -> dict[str, float]:
        """``{"prepare_seconds": ..., "evaluate_seconds": ...}`` for every phase but training,
        whose time is ``train_seconds`` (learning-curve evaluations and the loop's end excluded)."""
        self._close()
        return {f"{phase}_seconds": value for phase, value in self._seconds.items() if phase != "train"}

    def _close(self) -> None:
        now = time.perf_counter()
        self._seconds[self.current] = self._seconds.get(self.current, 0.0) + now - self._started
        self._started = now
