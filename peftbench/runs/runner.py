"""One run, start to finish: prepare, train (keeping the best validation checkpoint), evaluate,
save, reload, check, time inference, record.

The same function runs the baseline, the built-ins and every plugin method; it only ever calls
the ``Method`` interface, and a run that breaks becomes a ``failed``/``diverged`` record instead
of ending the sweep. Where the saved adapter ends up is the results store's business: the run
only writes into the folder it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from peftbench.costs import model_flops_utilisation, peak_memory_mb, reset_peak_memory
from peftbench.environment import MachineLoad
from peftbench.errors import PeftbenchError, is_storage_error, storage_error
from peftbench.evaluation import EvalResult
from peftbench.inference_cost import inference_costs
from peftbench.methods.base import reported_metrics
from peftbench.records import RunRecord, now
from peftbench.runs.context import SweepContext
from peftbench.runs.curves import Evaluation, ValidationCheckpoints, trainable_weights
from peftbench.runs.features import FrozenFeatures, agreement, features_note, head_on_features
from peftbench.runs.spec import CACHED_FEATURES, RunSpec, new_record
from peftbench.runs.training_state import SavedState
from peftbench.train import StepHooks, TrainingDiverged, TrainStats, train

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def execute_run(
    ctx: SweepContext,
    spec: RunSpec,
    adapter_dir: Path,
    on_phase: Callable[[str], None] | None = None,
    resume: Path | None = None,
    state_dir: Path | None = None,
) -> RunRecord:
    """Run ``spec`` once; never raises for anything that goes wrong with the run (KeyboardInterrupt
    aside, and a ``StorageError`` when the disk refuses its adapter: full, read-only, permission).

    A ``tune`` run is scored on validation only and saves no adapter; a ``final`` run is scored on
    validation and test, saved into ``adapter_dir`` (created here), reloaded onto a fresh base
    model and checked, then timed at inference (unless the sweep says not to). Either keeps the
    best validation checkpoint (``ValidationCheckpoints``). ``resume`` is a saved training state to
    continue (ignored unless it is this run's training, or where the method acts after each step);
    ``state_dir`` is where to save this run's state for others to continue. ``on_phase`` hears each
    phase as it starts, so whoever watches a run that dies outright (its process killed) can still
    say in which phase. A complete record says how long each phase took (``<phase>_seconds`` in its
    costs; training's own figure is ``train_seconds``) and how busy the machine was meanwhile
    (``load_average_start``/``_end``, ``process_cpu_share``: ``MachineLoad``).
    """
    record = new_record(ctx, spec)
    load = MachineLoad()
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
        # What trains, and on what: the model itself, or its head on the frozen model's features.
        trainee, where, features = _trainee(ctx, spec, model, record)
        config = ctx.train_config
        checks = ValidationCheckpoints(ctx.task.plan.total_steps, config.checkpoints, config.patience,
                                       ctx.curve_points, ctx.criterion)  # fmt: skip
        saved = _continuable(spec, resume)
        if saved is not None:
            trainee.load_state_dict(saved.weights, strict=False)
            checks.restore_state(saved.evaluations, saved.best, saved.loop.step, saved.weights)
        reset_peak_memory(ctx.device)
        phases.enter("train")
        stats = train(
            trainee, where.train, spec.hp, where.train_config, spec.seed, ctx.device, ctx.pad_id,
            ctx.progress, _step_hooks(spec, model), checks.hook(where, trainee), resume=saved and saved.loop,
            until=spec.until, keep_state=state_dir is not None, objective=ctx.kind.loss,
        )  # fmt: skip
        # A continued run reports the peak of its whole training, not only of the part it did.
        stats.peak_memory_mb = max(stats.peak_memory_mb, peak_memory_mb(ctx.device))
        if stats.end is not None:
            stats.end.stats.peak_memory_mb = stats.peak_memory_mb
        if state_dir is not None and stats.end is not None:  # before the kept checkpoint is restored
            _save_state(state_dir, spec, stats, checks, trainee, ctx.task.plan.total_steps)
        phases.enter("evaluate")
        if checks.not_finite:
            raise TrainingDiverged("the model's validation logits are not finite (NaN or infinite)")
        checks.restore_kept(trainee, stats.steps)
        kept = checks.kept
        if kept is None:  # nothing trained (or no checkpoint reached): the model as it is
            result = _finite(where.evaluate(trainee, where.validation), "validation")
            checks.look(stats.steps, result, True, None)
            kept = checks.kept
        record.method_metrics = reported_metrics(spec.method, model)  # of the kept checkpoint
        if features is not None:  # the head on cached features must be the model's own head
            full = _finite(ctx.evaluate(model, ctx.validation), "validation")
            record.notes.append(agreement(where.evaluate(trainee, where.validation), full))
        # Tuning runs never touch test, so the choice among them cannot depend on it.
        test = _finite(ctx.evaluate(model, ctx.test), "test") if spec.stage == "final" else None
        record.metrics = {**_metrics(kept, test, stats), **checks.last_standard_error()}
        record.costs.update(_costs(stats, trainable, total, ctx.device, test, saved and saved.loop.stats))
        record.curves = checks.curves(stats)
        record.training = _training(stats, kept, ctx.task.plan.total_steps, spec, saved)
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
        if phases.current == "save" and is_storage_error(error):  # not the run's fault: stop the sweep
            raise storage_error(f"the adapter of {spec.run_id}", adapter_dir.parent, error) from error
        return record.fail("failed", f"{type(error).__name__}: {error}", phases.current)
    record.costs.update(phases.seconds())
    record.costs.update(load.costs())
    record.status = "complete"
    record.finished_at = now()
    return record


def _trainee(
    ctx: SweepContext, spec: RunSpec, model: torch.nn.Module, record: RunRecord
) -> tuple[torch.nn.Module, SweepContext, FrozenFeatures | None]:
    """``(model, ctx, None)``, or for a method that trains on the frozen model's features (where
    the model has them) its head on those features, the context of the feature splits, and the
    features, whose cost the record states."""
    if not spec.method.trains_on_features:
        return model, ctx, None
    features = ctx.frozen_features(spec.run_id)
    record.notes.append(features_note(features, spec.run_id))
    if features.unavailable:  # the record says what actually happened
        for key in CACHED_FEATURES:
            record.train_config.pop(key, None)
        return model, ctx, None
    record.costs["feature_seconds"] = features.seconds
    return *head_on_features(model, features, ctx, spec.method.name), features


def _save_state(
    folder: Path, spec: RunSpec, stats: TrainStats, checks: ValidationCheckpoints, model, total: int
) -> None:
    """Save where the run stands; one that will not train further needs no optimiser moments."""
    loop = stats.end
    if stats.steps >= total or stats.stopped_early:
        loop = replace(loop, optimizer={"state": {}, "param_groups": loop.optimizer["param_groups"]})
    evaluations, best = checks.to_state(stats.steps)
    SavedState(spec.training_key, loop, trainable_weights(model), best, evaluations).save(folder)


def _continuable(spec: RunSpec, resume: Path | None) -> SavedState | None:
    """The saved state to continue, where there is one for exactly this training. A method that
    acts after each step may keep state of its own that no saved state holds: it starts afresh
    (and gets the same result, only later)."""
    if resume is None or spec.method.defines("after_step"):
        return None
    try:
        saved = SavedState.load(resume)
    except (OSError, ValueError, KeyError):  # gone or unreadable: training from the start is the same
        return None
    return saved if saved.identity == spec.training_key else None


def _training(
    stats: TrainStats, kept: Evaluation, total: int, spec: RunSpec, saved: SavedState | None
) -> dict[str, object]:
    """What the record says about the run's length: the step kept, where training ended and why."""
    return {
        "kept_step": kept.step,
        "last_step": stats.steps,
        "max_steps": total,
        "stopped_early": stats.stopped_early,
        "until": spec.until,
        "continued_from": spec.resume if saved is not None else None,
        "from_step": saved.loop.step if saved is not None else 0,
    }


def _step_hooks(spec: RunSpec, model: torch.nn.Module) -> StepHooks:
    """The method's training hooks, bound to the model it trains; only those it defines."""
    method = spec.method
    return StepHooks(
        extra_loss=(lambda: method.extra_loss(model)) if method.defines("extra_loss") else None,
        after_step=(lambda step: method.after_step(model, step)) if method.defines("after_step") else None,
        optimizer=(lambda: method.optimizer(model, spec.hp)) if method.defines("optimizer") else None,
    )


def _metrics(kept: Evaluation, test: EvalResult | None, stats: TrainStats) -> dict[str, float]:
    """Every metric of the task on validation at the kept checkpoint (``validation_<name>``) and,
    for a final run, on test (``<name>``), with the loss on each and the last training loss."""
    metrics = {
        **kept.metrics(),
        "final_train_loss": stats.loss_history[-1][1] if stats.loss_history else float("nan"),
    }
    if test is not None:
        metrics.update(test.scores)
        metrics["loss"] = test.loss
    return metrics


def _costs(
    stats: TrainStats,
    trainable: int,
    total: int,
    device: torch.device,
    test: EvalResult | None,
    before: TrainStats | None,
) -> dict[str, float]:
    """The run's costs; training's are the whole training of its model (a continued part included),
    ``spent_*`` what this run itself spent (less, where it continued a saved state)."""
    before = before or TrainStats()
    costs = {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total if total else 0.0,
        "train_steps": stats.steps,
        "train_seconds": stats.seconds,
        "curve_eval_seconds": stats.checkpoint_seconds,
        "spent_train_steps": stats.steps - before.steps,
        "spent_train_seconds": stats.seconds - before.seconds,
        "spent_checkpoint_seconds": stats.checkpoint_seconds - before.checkpoint_seconds,
        "train_samples_per_second": stats.samples_per_second,
        "train_tokens_per_second": stats.tokens_per_second,
        "padding_efficiency": stats.padding_efficiency,
        "model_flops_utilisation": model_flops_utilisation(stats.tokens_per_second, total, trainable, device),
        "peak_memory_mb": max(stats.peak_memory_mb, peak_memory_mb(device)),
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
