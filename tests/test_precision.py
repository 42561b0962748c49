"""The precision policy: bf16 only where asked or native, fp32 master weights."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import PeftbenchError
from peftbench.precision import resolve_precision


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in {"fp32", "bf16"}
    with pytest.raises(PeftbenchError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", cpu)
