"""IA3: learned rescaling of keys, values and feed-forward activations (Liu et al., 2022)."""

from __future__ import annotations

from typing import Any

import peft
from pydantic import Field

from peftbench.hookspecs import hookimpl
from peftbench.methods.base import PeftMethod, TaskInfo, has_conv1d_projections
from peftbench.methods.hyperparameters import ModuleNames, TrainingHyperparameters, learning_rate_field


class Ia3(PeftMethod):
    name = "ia3"
    description = "Learned vectors rescaling keys, values and feed-forward activations (Liu et al., 2022)."
    search_space = {"learning_rate": [3e-3, 8e-3, 2e-2, 5e-2]}
    size_key = None  # one vector per target module: its size is fixed by the modules it rescales

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(8e-3)
        target_modules: ModuleNames = Field(
            None, description="modules whose outputs are rescaled (default: peft's for the architecture)"
        )
        feedforward_modules: ModuleNames = Field(
            None, description="which of them are feed-forward layers, rescaled on their input instead"
        )

    def peft_config(self, model, task: TaskInfo, **hp: Any) -> peft.PeftConfig:
        return peft.IA3Config(
            task_type=peft.TaskType.SEQ_CLS,
            target_modules=hp["target_modules"],
            feedforward_modules=hp["feedforward_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )


@hookimpl
def register_methods(register):
    register(Ia3())
