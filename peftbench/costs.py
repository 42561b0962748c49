"""What a run costs beyond time: peak memory and, on GPUs, model FLOPs utilisation.

Peak memory is per run: on CUDA the allocator's peak since the run started; on Linux CPUs the
process's peak resident set, reset at the start of the run through ``/proc/self/clear_refs``
(elsewhere the process's lifetime peak, an upper bound).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import resource
import sys
import warnings
from pathlib import Path

import torch

PEAK_TFLOPS_ENV = "PEFTBENCH_PEAK_TFLOPS"
# Dense bf16 peak TFLOP/s by device-name fragment (vendor data sheets, without sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "V100": 125.0,  # fp16 tensor cores; V100 has no bf16
    "T4": 65.0,
}


class CostWarning(UserWarning):
    """A cost setting was ignored; the run goes on without it."""


def reset_peak_memory(device: torch.device) -> None:
    """Start a run's peak-memory window.

    On the CPU the peak is the process's RSS high-water mark, which would still hold memory that
    earlier runs freed but the allocator kept: collect and hand it back to the OS first, so a run
    late in a sweep is not charged for the ones before it.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):  # not Linux: the lifetime peak is reported instead
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def training_flops_per_token(total_params: int, trainable_params: int) -> float:
    """Forward (2N), backward through the frozen base to the adapters (2N), weight grads (2T).

    Embedding lookups cost no multiply-adds but are counted in N; for GPT-2 they are about a
    third of the parameters, so this overestimates FLOPs (and MFU) modestly for small models.
    """
    return 4.0 * total_params + 2.0 * trainable_params


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, from ``$PEFTBENCH_PEAK_TFLOPS`` or a known GPU.

    A value that is not a positive number is ignored with a warning (MFU is only a cost column,
    never worth failing a run for).
    """
    override = _peak_tflops_override(os.environ.get(PEAK_TFLOPS_ENV, ""))
    if override is not None:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, tflops in PEAK_BF16_TFLOPS.items():
        if fragment in name:
            return tflops * 1e12
    return None


def model_flops_utilisation(
    tokens_per_second: float, total_params: int, trainable_params: int, device: torch.device
) -> float | None:
    peak = peak_flops(device)
    if peak is None or not tokens_per_second:
        return None
    return tokens_per_second * training_flops_per_token(total_params, trainable_params) / peak


def _peak_tflops_override(value: str) -> float | None:
    """``$PEFTBENCH_PEAK_TFLOPS`` as a positive finite number, or ``None`` (unset or unusable)."""
    if not value.strip():
        return None
    try:
        tflops = float(value)
    except ValueError:
        tflops = math.nan
    if math.isfinite(tflops) and tflops > 0:
        return tflops
    warnings.warn(
        f"ignored {PEAK_TFLOPS_ENV}={value!r}: set it to the device's peak in TFLOP/s, e.g. 989, or unset it",
        CostWarning,
        stacklevel=3,
    )
    return None
