"""LoRA: low-rank adapters on the attention projections (Hu et al., 2021)."""

from __future__ import annotations

from typing import Any

import peft

from peftbench.hookspecs import hookimpl
from peftbench.methods.base import PeftMethod, TaskInfo, has_conv1d_projections


class Lora(PeftMethod):
    name = "lora"
    description = "Low-rank adapters on the attention projections (Hu et al., 2021)."
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    defaults = {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.1,
        "target_modules": None,
        "learning_rate": 1e-3,
    }
    bounds = {"r": (1, None), "lora_alpha": (1e-12, None), "lora_dropout": (0.0, 0.99)}

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
