"""Prefix tuning: trained key/value prefixes prepended at every layer (Li & Liang, 2021)."""

from __future__ import annotations

from typing import Any

import peft
from pydantic import Field

from peftbench.hookspecs import hookimpl
from peftbench.methods.base import PeftMethod, TaskInfo
from peftbench.methods.hyperparameters import TrainingHyperparameters, learning_rate_field


class PrefixTuning(PeftMethod):
    name = "prefix_tuning"
    description = "Trained key/value prefixes prepended at every attention layer (Li & Liang, 2021)."
    search_space = {"learning_rate": [3e-3, 1e-2, 3e-2, 1e-1]}
    size_key = "num_virtual_tokens"

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-2)
        num_virtual_tokens: int = Field(20, ge=1, description="prefix length: virtual tokens at every layer")

    def peft_config(self, model, task: TaskInfo, **hp: Any) -> peft.PeftConfig:
        return peft.PrefixTuningConfig(
            task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=hp["num_virtual_tokens"]
        )


@hookimpl
def register_methods(register):
    register(PrefixTuning())
