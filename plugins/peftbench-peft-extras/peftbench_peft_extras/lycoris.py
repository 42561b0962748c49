"""LyCORIS adapters from peft: low-rank Hadamard (LoHa) and Kronecker (LoKr) products."""

from __future__ import annotations

import peft
from pydantic import Field

from peftbench import PeftMethod, TrainingHyperparameters, learning_rate_field
from peftbench_peft_extras._common import SEQ_CLS, conv1d_reason, refuse_conv1d


class LycorisHyperparameters(TrainingHyperparameters):
    learning_rate: float = learning_rate_field(2e-3)
    r: int = Field(8, ge=1, description="rank of each low-rank factor")
    alpha: int = Field(8, description="the update is scaled by alpha / r")


class LoHa(PeftMethod):
    name = "loha"
    description = "Low-rank Hadamard-product adapters (Hyeon-Woo et al., 2022, LyCORIS)."
    size_key = "r"
    unsupported = {"gpt2": conv1d_reason("LoHa")}
    Hyperparameters = LycorisHyperparameters

    def peft_config(self, model, task, **hp):
        refuse_conv1d(self.name, "LoHa", model)
        return peft.LoHaConfig(task_type=SEQ_CLS, r=hp["r"], alpha=hp["alpha"])


class LoKr(PeftMethod):
    name = "lokr"
    description = "Low-rank Kronecker-product adapters (Yeh et al., 2023, LyCORIS)."
    size_key = "r"
    unsupported = {"gpt2": conv1d_reason("LoKr")}
    Hyperparameters = LycorisHyperparameters

    def peft_config(self, model, task, **hp):
        refuse_conv1d(self.name, "LoKr", model)
        return peft.LoKrConfig(task_type=SEQ_CLS, r=hp["r"], alpha=hp["alpha"])


METHODS = (LoHa, LoKr)
