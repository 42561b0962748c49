"""How many runs share one device: as asked (``--runs-per-device``), else chosen here.

One small run leaves a GPU mostly idle (it waits on kernel launches and the host), so several
runs at once finish a sweep sooner, as long as they fit in the GPU's memory. On the CPU the runs
would only split the same cores between them, so the automatic choice there is always one.

The estimate of one run's GPU memory is deliberately generous, since a run that does not fit
fails (out of memory) while one run too few only costs time. Per parameter of the base model:

- 8 bytes of weights: fp32 (bf16 keeps trained weights in fp32), twice, since a final run loads
  a fresh base model to reload its adapter and the caching allocator keeps what it freed;
- 3 bytes of training state: fp32 gradients and AdamW's two moments (12 bytes) for a trained
  share of a quarter (PEFT methods train under 1%; head-only and wider plugin methods fit too);
- activations: ``ACTIVATION_BYTES`` per parameter and training token of a batch (GPT-2 small
  keeps about 0.005 in fp32 without checkpointing; larger models less, so large models get one
  run, which is what they would have anyway);

plus ``CONTEXT_BYTES`` for each process's CUDA context and workspaces. Runs take at most
``MEMORY_SHARE`` of the free memory, and there are never more than ``MAX_RUNS_PER_DEVICE``.
"""

from __future__ import annotations

import os

import torch

from peftbench.runs.context import SweepContext

MAX_RUNS_PER_DEVICE = 8
WEIGHT_BYTES = 8
TRAINING_STATE_BYTES = 12 * 0.25
ACTIVATION_BYTES = 0.006
CONTEXT_BYTES = 512 * 2**20
MEMORY_SHARE = 0.9  # what fragmentation and other processes leave usable


def run_memory_bytes(parameters: int, tokens_per_batch: int) -> int:
    """A generous estimate of one run's peak GPU memory (see the module's docstring)."""
    per_parameter = WEIGHT_BYTES + TRAINING_STATE_BYTES + ACTIVATION_BYTES * tokens_per_batch
    return int(parameters * per_parameter + CONTEXT_BYTES)


def automatic_runs_per_device(
    device_type: str, free_bytes: int | None, parameters: int, tokens_per_batch: int
) -> int:
    """How many runs fit at once in ``free_bytes`` of a ``device_type`` device; 1 on the CPU."""
    if device_type != "cuda" or not free_bytes:
        return 1
    fitting = int(free_bytes * MEMORY_SHARE // run_memory_bytes(parameters, tokens_per_batch))
    return max(1, min(MAX_RUNS_PER_DEVICE, fitting))


def free_memory(device: torch.device) -> int | None:
    """The device's free memory in bytes (``None`` where there is no such number: the CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def runs_per_device(asked: int | None, ctx: SweepContext, free_bytes: int | None) -> int:
    """``asked`` if given, else the automatic choice for the sweep's model and batch size, with
    ``free_bytes`` measured where the runs execute."""
    if asked is not None:
        return asked
    tokens = ctx.train_config.batch_size * ctx.train_config.max_length
    return automatic_runs_per_device(ctx.device.type, free_bytes, ctx.parameter_count, tokens)


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_run(runs: int, cpus: int | None = None) -> int:
    """Runs on one machine split its CPUs (``cpus``, default all available): torch processes that
    each use every core slow each other down many times over (their OpenMP threads spin while they wait)."""
    return max(1, (cpus or available_cpus()) // runs)


def describe_sharing(runs: int, where: str) -> str:
    """The progress line, e.g. ``2 runs at a time on cuda:0``."""
    return f"  {runs} run{'s' if runs != 1 else ''} at a time on {where}"
