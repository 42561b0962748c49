"""AdaLoRA from peft, written with peftbench's training hooks only (and its own numbers reported)."""

from __future__ import annotations

import warnings

import peft
import torch
from pydantic import Field, model_validator

from peftbench import ModuleNames, PeftbenchError, PeftMethod, TrainingHyperparameters, learning_rate_field
from peftbench.methods.base import has_conv1d_projections
from peftbench_peft_extras._common import SEQ_CLS

ADALORA_DEFAULT_TARGETS = peft.utils.TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING
# AdaLoRA saves its final ranks under "<module>.lora_E" keys; peft's generic LoRA check then warns
# that they match no module, although AdaLoRA's own loader resizes every module by them.
warnings.filterwarnings(
    "ignore", message="The following rank_pattern keys did not match", category=RuntimeWarning
)


class AdaLora(PeftMethod):
    """AdaLoRA: SVD-shaped LoRA whose rank budget moves to the matrices that matter during training.

    Written with peftbench's training hooks only: the planned number of steps sets the
    schedule (no user input), ``after_step`` re-allocates the ranks (with the gradients still
    there, as peft requires), and ``extra_loss`` adds the orthogonality regulariser that peft
    only adds when the model computes the loss itself.
    """

    name = "adalora"
    description = (
        "Adaptive-rank LoRA: the rank budget moves to the most important matrices (Zhang et al., 2023)."
    )

    # 1e-2 won on validation accuracy over 1e-3 and 3e-3 (MiniLM x rotten_tomatoes, one epoch): with
    # its singular values starting at zero, AdaLoRA needs a larger step than LoRA to move in an epoch.
    search_space = {"learning_rate": [3e-3, 1e-2, 3e-2, 1e-1]}
    search_space_source = "1e-2 won on validation over 1e-3 and 3e-3 (MiniLM x rotten_tomatoes, one epoch)"
    # Every matrix is built with init_r ranks (the cut to target_r masks them, it frees nothing),
    # so init_r sets the trainable parameters; it must stay above target_r (set that with --hp).
    size_key = "init_r"

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-2)
        init_r: int = Field(12, ge=1, description="rank each adapted matrix starts with")
        target_r: int = Field(8, ge=1, description="average rank the budget is cut down to")
        tinit: float = Field(0.1, ge=0.0, lt=1.0, description="share of the steps before ranks are cut")
        tfinal: float = Field(0.2, ge=0.0, lt=1.0, description="share of the last steps with the final ranks")
        delta_t: int = Field(1, ge=1, description="optimiser steps between two re-allocations")
        beta1: float = Field(0.85, ge=0.0, lt=1.0, description="smoothing of the importance estimate")
        beta2: float = Field(0.85, ge=0.0, lt=1.0, description="smoothing of its uncertainty")
        orth_reg_weight: float = Field(0.5, ge=0.0, description="weight of the orthogonality regulariser")
        lora_alpha: int = Field(8, description="the update is scaled by lora_alpha / r")
        lora_dropout: float = Field(0.1, ge=0.0, le=0.99, description="dropout on the adapter's input")
        target_modules: ModuleNames = Field(
            None, description="modules to adapt (default: peft's for the architecture)"
        )

        @model_validator(mode="after")
        def _a_budget_that_shrinks(self):
            if self.target_r >= self.init_r:
                raise ValueError(
                    f"target_r={self.target_r} must be below init_r={self.init_r}: the budget only shrinks"
                )
            if self.tinit + self.tfinal >= 1:
                raise ValueError(
                    f"tinit={self.tinit:g} + tfinal={self.tfinal:g} must be below 1: "
                    "no steps would be left to re-allocate ranks in"
                )
            return self

    def peft_config(self, model, task, **hp):
        if task.plan is None:
            raise PeftbenchError("adalora sets its schedule from the training plan: run it in a sweep")
        steps = task.plan.total_steps
        tinit, tfinal = (
            int(steps * hp["tinit"]),
            max(1, int(steps * hp["tfinal"])),
        )  # the final cut needs a step
        if steps - tfinal - tinit < 1:
            raise PeftbenchError(
                f"adalora needs steps to re-allocate ranks in, but this run has {steps} (of which "
                f"tinit={tinit} before and tfinal={tfinal} after): train longer (--epochs, --max-steps)"
            )
        model_type = getattr(model.config, "model_type", None)
        if hp["target_modules"] is None and model_type not in ADALORA_DEFAULT_TARGETS:
            raise PeftbenchError(
                f"adalora has no default modules to adapt in a {model_type} model: name them, e.g. "
                "--hp adalora.target_modules=q_proj,v_proj"
            )
        return peft.AdaLoraConfig(
            task_type=SEQ_CLS,
            init_r=hp["init_r"],
            target_r=hp["target_r"],
            total_step=steps,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=hp["delta_t"],
            beta1=hp["beta1"],
            beta2=hp["beta2"],
            orth_reg_weight=hp["orth_reg_weight"],
            lora_alpha=hp["lora_alpha"],
            lora_dropout=hp["lora_dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )

    def after_step(self, model, step):
        # peft counts steps from 0: importance is measured from the first step, the final cut
        # falls on step total_step - tfinal, which a run of total_step steps reaches.
        model.base_model.update_and_allocate(step - 1)

    def extra_loss(self, model):
        """peft's orthogonality regulariser: mean Frobenius distance of P P^T and Q^T Q from I."""
        weight = model.peft_config[model.active_adapter].orth_reg_weight
        distances = []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and ("lora_A" in name or "lora_B" in name):
                product = parameter @ parameter.T if "lora_A" in name else parameter.T @ parameter
                eye = torch.eye(len(product), device=product.device, dtype=product.dtype)
                distances.append(torch.linalg.matrix_norm(product - eye))
        return weight * torch.stack(distances).mean()

    def report(self, model):
        """The ranks the budget settled on: their mean, smallest and largest over adapted matrices."""
        config = model.peft_config[model.active_adapter]
        masks = config.rank_pattern or {}
        ranks = [sum(mask) for mask in masks.values()] or [config.init_r]
        return {
            "final_rank_mean": sum(ranks) / len(ranks),
            "final_rank_min": min(ranks),
            "final_rank_max": max(ranks),
        }
