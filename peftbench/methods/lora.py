"""LoRA: low-rank adapters on the attention projections (Hu et al., 2021)."""

from __future__ import annotations

from typing import Any

import peft
from pydantic import Field

from peftbench.hookspecs import hookimpl
from peftbench.methods.base import PeftMethod, TaskInfo, has_conv1d_projections
from peftbench.methods.hyperparameters import ModuleNames, TrainingHyperparameters, learning_rate_field


class Lora(PeftMethod):
    name = "lora"
    description = "Low-rank adapters on the attention projections (Hu et al., 2021)."
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    size_key = "r"

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        r: int = Field(8, ge=1, description="rank of the low-rank update of each adapted weight")
        lora_alpha: int = Field(16, ge=1, description="the update is scaled by lora_alpha / r")
        lora_dropout: float = Field(0.1, ge=0.0, le=0.99, description="dropout on the adapter's input")
        target_modules: ModuleNames = Field(
            None, description="modules to adapt, e.g. query,value (default: peft's for the architecture)"
        )

    def peft_config(self, model, task: TaskInfo, **hp: Any) -> peft.PeftConfig:
        return peft.LoraConfig(
            task_type=peft.TaskType.SEQ_CLS,
            r=hp["r"],
            lora_alpha=hp["lora_alpha"],
            lora_dropout=hp["lora_dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )


@hookimpl
def register_methods(register):
    register(Lora())
