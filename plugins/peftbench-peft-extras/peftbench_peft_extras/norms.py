"""LN tuning from peft: only the normalisation layers (and the head) train.

Learning rate: peft's comparison trains LN tuning at its default 1e-4 on Llama-3.2-3B; peftbench
uses ten times that, the factor between its LoRA default on a classifier (1e-3) and the
comparison's LoRA (1e-4); ``--tune`` tries a third of it to ten times it.
"""

from __future__ import annotations

import peft
from pydantic import Field

from peftbench import ModuleNames, PeftMethod, TrainingHyperparameters, learning_rate_field
from peftbench.methods.optim import is_normalisation
from peftbench_peft_extras._common import SEQ_CLS, comparison_rate


class LnTuning(PeftMethod):
    name = "ln_tuning"
    description = "Trains only the normalisation layers' scales and shifts, and the head (Zhao et al., 2024)."
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    search_space_source = comparison_rate("1e-4")
    size_key = None  # fixed by the model's normalisation layers

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        target_modules: ModuleNames = Field(
            None, description="normalisation layers to train (default: every LayerNorm/RMSNorm of the model)"
        )

    def peft_config(self, model, task, **hp):
        norms = [name for name, module in model.named_modules() if name and is_normalisation(module)]
        return peft.LNTuningConfig(task_type=SEQ_CLS, target_modules=hp["target_modules"] or norms)

    def merge(self, model):
        """peft's LN tuning merges the normalisation layers but leaves the trained head in its
        wrapper: unwrap it, so the merged model is the base model's own structure again."""
        merged = super().merge(model)
        for name, module in list(merged.named_modules()):
            if isinstance(module, peft.utils.other.ModulesToSaveWrapper):
                parent, _, child = name.rpartition(".")
                unwrapped = module.unload_and_optionally_merge_module(
                    merge=True, safe_merge=False, adapter_names=None
                )
                setattr(merged.get_submodule(parent), child, unwrapped)
        return merged


METHODS = (LnTuning,)
