"""The training loop: AdamW, warmup + linear decay, gradient clipping, seeded, nothing hidden.

Only parameters with ``requires_grad`` are optimised, so the same loop serves every method: a
method decides what trains by what it leaves trainable. A method that must act during training
(AdaLoRA's rank re-allocation, a regulariser) does so through ``StepHooks``, which the loop calls
without knowing whose they are. The loss is read back from the device only at log intervals, so
a GPU never waits on the host between steps. ``Checkpoints`` lets the caller look at the model at
a few steps (a learning curve's validation points) without changing the training: the random
state is restored, the model goes back to train mode and the time is kept out of ``seconds``.

A compiled model sees static shapes (``StaticShapes``: every batch the same rows, its width one
of a few), so it compiles once per width and, on GPUs, replays CUDA graphs instead of launching
kernels one by one. The rows added to fill a batch are ignored by the loss, so losses and
gradients are those of the unpadded batch (only dropout differs: its masks are drawn per shape).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from peftbench.batching import StaticShapes, TokenizedSplit, collate, train_batches
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


@dataclass(frozen=True)
class Checkpoints:
    """Steps after which to call ``on_checkpoint(step)``: a look at the model, not part of training."""

    steps: frozenset[int] = frozenset()
    on_checkpoint: Callable[[int], None] | None = None


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
    objective: Loss | None = None,
) -> TrainStats:
    """Train ``model`` in place; returns what it cost. Trains nothing if nothing is trainable.

    ``config.precision`` must be resolved (``fp32`` or ``bf16``, see ``resolve_precision``).
    ``static_shapes`` (by default: when compiling) pads every batch to ``StaticShapes``.
    ``objective`` is the task's loss (default: classification's cross-entropy).
    """
    objective = objective or Classification().loss
    params = [p for p in model.parameters() if p.requires_grad]
    stats = TrainStats()
    if not params:
        return stats
    torch.manual_seed(seed)
    batches = plan_batches(split, config, seed)
    fused = device.type == "cuda"  # one kernel for the whole update on GPUs
    optimizer = torch.optim.AdamW(
        params, lr=hp["learning_rate"], weight_decay=hp["weight_decay"], fused=fused, foreach=not fused
    )
    warmup = int(hp["warmup_ratio"] * len(batches))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(warmup, len(batches)))
    model.train()
    static = config.compile if static_shapes is None else static_shapes
    shapes = StaticShapes.for_lengths(config.max_length, config.batch_size) if static else None
    forward = compile_model(model, device, shapes) if config.compile else model
    graphs = config.compile and uses_cuda_graphs(device, shapes)
    running = torch.zeros((), device=device)
    start = time.perf_counter()
    bar = tqdm(batches, desc="train", unit="step", disable=None if progress else True, leave=False)
    for step, indices in enumerate(bar, start=1):
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
        stats.samples += len(indices)
        stats.tokens += int(split.lengths[indices].sum())
        stats.padded_tokens += batch["input_ids"].numel()
        if step % config.log_every == 0 or step == len(batches):
            mean_loss = running.item() / (step - (stats.loss_history[-1][0] if stats.loss_history else 0))
            running.zero_()
            if not math.isfinite(mean_loss):
                raise TrainingDiverged(f"loss became {mean_loss} by step {step}")
            stats.loss_history.append((step, mean_loss))
            bar.set_postfix(loss=f"{mean_loss:.4f}")
        if step in checkpoints.steps and checkpoints.on_checkpoint is not None:
            paused = _synchronized(device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                checkpoints.on_checkpoint(step)
            model.train()
            stats.checkpoint_seconds += _synchronized(device) - paused
    stats.seconds = _synchronized(device) - start - stats.checkpoint_seconds
    stats.steps = len(batches)
    return stats


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
