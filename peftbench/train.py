"""The training loop: AdamW, warmup + linear decay, gradient clipping, seeded, nothing hidden.

Only parameters with ``requires_grad`` are optimised, so the same loop serves every method: a
method decides what trains by what it leaves trainable, and may say how through its parameter
groups or its own optimizer (``peftbench.methods.optim``). A method that must act during training
(AdaLoRA's rank re-allocation, a regulariser) does so through ``StepHooks``, which the loop calls
without knowing whose they are. The loss is read back from the device only at log intervals, so
a GPU never waits on the host between steps. ``Checkpoints`` lets the caller look at the model at
a few steps (validation checkpoints) without changing the training: the random state is restored,
the model goes back to train mode and the time is kept out of ``seconds``; a checkpoint may end
training early (patience). A run can stop after a given step (``until``) and hand back its
``LoopState``, from which another call continues exactly as if it had never stopped: the learning
rate schedule always spans the whole plan, so a continued run is the run trained straight through.

A compiled model sees static shapes (``StaticShapes``: every batch the same rows, its width one
of a few), so it compiles once per width and, on GPUs, replays CUDA graphs instead of launching
kernels one by one. The rows added to fill a batch are ignored by the loss, so losses and
gradients are those of the unpadded batch (only dropout differs: its masks are drawn per shape).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from peftbench.batching import StaticShapes, TokenizedSplit, collate, train_batches
from peftbench.methods.optim import build_optimizer
from peftbench.precision import autocast
from peftbench.settings import TrainConfig
from peftbench.tasks.classification import Classification

#: The loss of a batch: (logits, labels) -> a scalar; the task's (``Task.loss``).
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainStats:
    steps: int = 0
    samples: int = 0
    tokens: int = 0  # real tokens, not padding
    padded_tokens: int = 0  # what the model actually processed, padding included
    seconds: float = 0.0  # training only, checkpoints excluded
    checkpoint_seconds: float = 0.0  # spent in ``Checkpoints.on_checkpoint``
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    stopped_early: bool = False  # a checkpoint ended training before the plan's last step
    peak_memory_mb: float = 0.0  # the most memory training took so far (measured by the caller)
    end: LoopState | None = None  # where the loop stood when it returned (``keep_state``)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")

    @property
    def padding_efficiency(self) -> float:
        return self.tokens / self.padded_tokens if self.padded_tokens else float("nan")


@dataclass(frozen=True)
class StepHooks:
    """What may be added to each training step; ``None`` costs nothing."""

    #: A term added to the loss before ``backward`` (a regulariser on the trained parameters).
    extra_loss: Callable[[], torch.Tensor] | None = None
    #: Called with the number of optimiser steps done (from 1), before the gradients are cleared.
    after_step: Callable[[int], None] | None = None
    #: What to optimise how: parameter groups or a whole optimizer (``Method.optimizer``), asked
    #: once the model is on the device; ``None``: the default groups (``parameter_groups``).
    optimizer: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Checkpoints:
    """Steps after which to call ``on_checkpoint(step)``: a look at the model, not part of training.
    It returns True to end training there (patience ran out)."""

    steps: frozenset[int] = frozenset()
    on_checkpoint: Callable[[int], bool | None] | None = None


@dataclass
class LoopState:
    """Everything of a run's loop besides the model's weights that continuing it needs."""

    step: int  # optimiser steps done
    optimizer: dict[str, Any]  # the optimiser's state_dict (AdamW's moments)
    schedule: dict[str, Any]  # the learning-rate schedule's state_dict
    rng: torch.Tensor  # the CPU generator (dropout on the CPU)
    device_rng: torch.Tensor | None  # the CUDA generator of the run's device, where it has one
    running: torch.Tensor  # training loss summed since the last logged step
    stats: TrainStats


def checkpoint_steps(total: int, count: int) -> list[int]:
    """``count`` steps evenly spaced over ``total``, the last at ``total``; fewer if ``total`` is
    smaller (a step is never listed twice)."""
    return sorted({-(-total * i // count) for i in range(1, count + 1)}) if total > 0 else []


def steps_per_epoch(examples: int, config: TrainConfig) -> int:
    return math.ceil(examples / config.batch_size)


def total_steps(examples: int, config: TrainConfig) -> int:
    """Optimiser steps of a run: whole epochs, then a fraction of one, capped by ``max_steps``."""
    total = max(1, round(steps_per_epoch(examples, config) * config.epochs))
    return total if config.max_steps is None else min(total, config.max_steps)


def plan_batches(split: TokenizedSplit, config: TrainConfig, seed: int) -> list[np.ndarray]:
    """Every batch of the run in order: whole epochs, then a fraction of one, capped by max_steps."""
    rng = np.random.default_rng(seed)
    batches: list[np.ndarray] = []
    for _ in range(math.ceil(config.epochs)):
        batches.extend(train_batches(split, config.batch_size, rng))
    return batches[: total_steps(len(split), config)]


def train(
    model: nn.Module,
    split: TokenizedSplit,
    hp: dict[str, Any],
    config: TrainConfig,
    seed: int,
    device: torch.device,
    pad_id: int,
    progress: bool = True,
    hooks: StepHooks = StepHooks(),
    checkpoints: Checkpoints = Checkpoints(),
    static_shapes: bool | None = None,
    resume: LoopState | None = None,
    until: int | None = None,
    keep_state: bool = False,
    objective: Loss | None = None,
) -> TrainStats:
    """Train ``model`` in place; returns what it cost. Trains nothing if nothing is trainable.

    ``config.precision`` must be resolved (``fp32`` or ``bf16``, see ``resolve_precision``).
    ``static_shapes`` (by default: when compiling) pads every batch to ``StaticShapes``.
    ``resume`` continues from an earlier call's ``end`` (the model must hold the weights it had
    then); ``until`` stops after that step; ``keep_state`` puts the loop's state in ``stats.end``.
    The stats are the run's whole training so far, a resumed part included.
    ``objective`` is the task's loss (default: classification's cross-entropy).
    """
    objective = objective or Classification().loss
    params = [p for p in model.parameters() if p.requires_grad]
    stats = TrainStats()
    if not params:
        return stats
    torch.manual_seed(seed)
    batches = plan_batches(split, config, seed)
    optimizer = build_optimizer(model, hp, device, hooks.optimizer)
    warmup = int(hp["warmup_ratio"] * len(batches))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(warmup, len(batches)))
    running = torch.zeros((), device=device)
    if resume is not None:  # where an earlier call stopped: its optimiser, schedule, generators, stats
        stats, running = _restore(resume, optimizer, schedule, device)
    first = stats.steps
    last = first if stats.stopped_early else min(until or len(batches), len(batches))
    model.train()
    static = config.compile if static_shapes is None else static_shapes
    shapes = StaticShapes.for_lengths(config.max_length, config.batch_size) if static else None
    forward = compile_model(model, device, shapes) if config.compile and last > first else model
    graphs = config.compile and uses_cuda_graphs(device, shapes)
    start = time.perf_counter()
    paused_before = stats.checkpoint_seconds
    bar = tqdm(
        batches[first:last], desc="train", unit="step", disable=None if progress else True, leave=False
    )
    for step, indices in enumerate(bar, start=first + 1):
        batch = to_device(collate(split, indices, pad_id, shapes), device)
        labels = batch.pop("labels")
        if graphs:  # the previous step's graph outputs may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(device, config.precision):
            logits = forward(**batch).logits
        loss = objective(logits, labels)
        if hooks.extra_loss is not None:
            loss = loss + hooks.extra_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        schedule.step()
        if hooks.after_step is not None:
            hooks.after_step(step)
        optimizer.zero_grad(set_to_none=True)
        running += loss.detach()
        stats.steps = step
        stats.samples += len(indices)
        stats.tokens += int(split.lengths[indices].sum())
        stats.padded_tokens += batch["input_ids"].numel()
        if step % config.log_every == 0 or step == len(batches):
            _log_loss(stats, running, bar)
        if step in checkpoints.steps and checkpoints.on_checkpoint is not None:
            paused = _synchronized(device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                stop = checkpoints.on_checkpoint(step)
            model.train()
            stats.checkpoint_seconds += _synchronized(device) - paused
            if stop and step < len(batches):
                stats.stopped_early = True
                break
    if stats.stopped_early and (not stats.loss_history or stats.loss_history[-1][0] != stats.steps):
        _log_loss(stats, running, bar)  # the last stretch of a run that stopped early
    spent = _synchronized(device) - start - (stats.checkpoint_seconds - paused_before)
    stats.seconds += spent
    if keep_state:
        stats.end = LoopState(
            stats.steps, optimizer.state_dict(), schedule.state_dict(), torch.get_rng_state(),
            torch.cuda.get_rng_state(device) if device.type == "cuda" else None, running.clone(),
            replace(stats, loss_history=list(stats.loss_history), end=None),
        )  # fmt: skip
    return stats


def _log_loss(stats: TrainStats, running: torch.Tensor, bar: tqdm) -> None:
    """Log the mean loss since the last logged step (and stop a run whose loss is no longer finite)."""
    since = stats.steps - (stats.loss_history[-1][0] if stats.loss_history else 0)
    mean_loss = running.item() / since
    running.zero_()
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(f"loss became {mean_loss} by step {stats.steps}")
    stats.loss_history.append((stats.steps, mean_loss))
    bar.set_postfix(loss=f"{mean_loss:.4f}")


def _restore(
    state: LoopState, optimizer: torch.optim.Optimizer, schedule: Any, device: torch.device
) -> tuple[TrainStats, torch.Tensor]:
    """Put the optimiser, schedule and generators back where ``state`` left them."""
    optimizer.load_state_dict(state.optimizer)
    schedule.load_state_dict(state.schedule)
    torch.set_rng_state(state.rng)
    if device.type == "cuda" and state.device_rng is not None:
        torch.cuda.set_rng_state(state.device_rng, device)
    stats = replace(state.stats, loss_history=list(state.stats.loss_history), end=None)
    return stats, state.running.to(device).clone()


def _synchronized(device: torch.device) -> float:
    """The time once the device has finished what was queued (GPU kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def compile_model(model: nn.Module, device: torch.device, shapes: StaticShapes | None) -> Callable:
    """``model`` compiled for ``shapes``: one graph per width, on GPUs replayed as CUDA graphs
    (``reduce-overhead``); without ``shapes``, one graph for dynamic shapes.

    Compile caches are cleared first: the previous run's graphs (and CUDA graph memory) belong to
    a model that is gone, and would count against dynamo's recompile limit, which is raised to
    the number of widths so that no width falls back to eager.
    """
    torch.compiler.reset()
    if shapes is None:
        return torch.compile(model, dynamic=True)
    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, len(shapes.widths))
    options = {"mode": "reduce-overhead"} if uses_cuda_graphs(device, shapes) else {}
    return torch.compile(model, dynamic=False, **options)


def uses_cuda_graphs(device: torch.device, shapes: StaticShapes | None) -> bool:
    """CUDA graphs replay fixed shapes on a GPU; each step must then be marked as a new one."""
    return device.type == "cuda" and shapes is not None


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Pinned host memory and asynchronous copies on GPUs; a no-op on the CPU."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def _warmup_linear(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor
