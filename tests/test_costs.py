"""What a run costs beyond time: peak memory, the MFU estimate and its settings."""

from __future__ import annotations

import os

import pytest
import torch

from peftbench.costs import CostWarning, model_flops_utilisation, peak_flops, training_flops_per_token


def test_mfu_estimate(monkeypatch):
    assert training_flops_per_token(100, 10) == 420
    assert model_flops_utilisation(1000.0, 100, 10, torch.device("cpu")) is None  # no known peak
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", "1e-6")  # 1 MFLOP/s
    assert model_flops_utilisation(1000.0, 100, 10, torch.device("cpu")) == pytest.approx(0.42)


@pytest.mark.parametrize("value", ["fast", "0", "-5", "nan", "inf", "1e400", "989 TFLOPS"])
def test_unusable_peak_tflops_is_ignored_with_one_warning(monkeypatch, value):
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", value)
    cpu = torch.device("cpu")
    with pytest.warns(CostWarning) as caught:
        assert model_flops_utilisation(1000.0, 100, 10, cpu) is None  # as if unset: no known peak
    message = str(caught[0].message)
    assert message == (
        f"ignored PEFTBENCH_PEAK_TFLOPS={value!r}: "
        "set it to the device's peak in TFLOP/s, e.g. 989, or unset it"
    )


def test_valid_and_blank_peak_tflops(monkeypatch, recwarn):
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", " 2 ")
    assert peak_flops(torch.device("cpu")) == 2e12
    monkeypatch.setenv("PEFTBENCH_PEAK_TFLOPS", "")
    assert peak_flops(torch.device("cpu")) is None
    assert not [w for w in recwarn if issubclass(w.category, CostWarning)]
    assert os.environ["PEFTBENCH_PEAK_TFLOPS"] == ""
