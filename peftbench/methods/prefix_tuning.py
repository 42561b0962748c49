"""Prefix tuning: trained key/value prefixes prepended at every layer (Li & Liang, 2021)."""

from __future__ import annotations

from typing import Any

import peft

from peftbench.hookspecs import hookimpl
from peftbench.methods.base import PeftMethod, TaskInfo


class PrefixTuning(PeftMethod):
    name = "prefix_tuning"
    description = "Trained key/value prefixes prepended at every attention layer (Li & Liang, 2021)."
    search_space = {"learning_rate": [3e-3, 1e-2, 3e-2, 1e-1]}
    defaults = {"num_virtual_tokens": 20, "learning_rate": 1e-2}
    bounds = {"num_virtual_tokens": (1, None)}

    def peft_config(self, model, task: TaskInfo, **hp: Any) -> peft.PeftConfig:
        return peft.PrefixTuningConfig(
            task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=hp["num_virtual_tokens"]
        )


@hookimpl
def register_methods(register):
    register(PrefixTuning())
