"""Numeric precision: bf16 compute with fp32 master weights, where the hardware does bf16 well.

Trainable parameters always stay fp32 (they are the master weights the optimiser updates).
Under ``bf16``, frozen base weights are stored in bf16 too: they are never updated, so an fp32
copy only costs memory and a cast per matmul. The same policy is applied to the trained model
and to the reloaded one, so the reload check compares like with like.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from peftbench.errors import PeftbenchError
from peftbench.settings import PRECISIONS, Precision  # noqa: F401  (declared with the settings)


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on GPUs and CPUs with native bf16 matmuls, else ``fp32``."""
    if requested not in PRECISIONS:
        raise PeftbenchError(f"unknown precision '{requested}': use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        if requested == "bf16" and not bf16_supported(device):
            raise PeftbenchError(f"bf16 was asked for but {device} has no bf16 support: use --precision fp32")
        return requested
    return "bf16" if bf16_supported(device) else "fp32"


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:  # AVX512-BF16 or AMX: bf16 matmuls run natively instead of being emulated
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def apply_precision(model: nn.Module, precision: str, keep_fp32: set[str] | None = None) -> nn.Module:
    """Under ``bf16``, store frozen parameters in bf16; those named in ``keep_fp32`` (default: the
    trainable ones) stay fp32 master weights, and so do their siblings in the same module, since
    ops such as layer norm need one dtype for weight and bias (BitFit trains only the bias)."""
    if precision != "bf16":
        return model
    for prefix, module in model.named_modules():
        own = list(module.named_parameters(prefix=prefix, recurse=False))
        kept = [
            parameter.requires_grad if keep_fp32 is None else name in keep_fp32 for name, parameter in own
        ]
        if any(kept):
            continue
        for _, parameter in own:
            if parameter.is_floating_point():
                parameter.data = parameter.data.to(torch.bfloat16)
    return model


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enable_tf32(device: torch.device) -> None:
    """fp32 matmuls on tensor cores (TF32) for whatever still runs in fp32 on a GPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
